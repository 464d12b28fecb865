"""Run accepted inputs through the engine and into the partners' hash chains (pure).

This is the one code path from accepted events to sealed ledger records. The live worker
calls it inside each batch's transaction with the states it loaded from PostgreSQL; the
auditor's replay calls it over the stored events in their stored order; the fault suite's
reference ledger is computed by it offline. Same inputs in the same order, same records,
ids and hashes.

Time-driven work is driven by the inputs' time, so that it lands in the same place in
every chain whether the ledger is built live or replayed: before a partner's event is
applied, the holds that ended and the lots that lapsed by that event's ``occurred_at`` are
posted (``engine.due``); an ``AdvanceClock`` does the same for every partner with work due
by its time (``engine.next_due``), and a period close for every partner as of the close.

Budgets: a message of a lane (its source partition) spends its lane's budget lease, a
period close or clock advance the program's pool, and ``Grant`` inputs move budget into a
lease (``processors.engine.leases``). Without lanes every message spends the pool, which is
the whole budget spent in input order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat

import msgspec

from ledger.core import ChainHead, Draft, Record, append, empty_head
from processors.engine import (
    CompiledProgram,
    PartnerState,
    Refusal,
    apply,
    close_period,
    due,
    new_state,
    next_due,
    spend_of,
)
from processors.engine.leases import Grant, GrantRequest, Lane, ProgramKey, Spend
from schemas.commands import AdvanceClock, ClosePeriod
from schemas.streams import Message


class Books(msgspec.Struct, kw_only=True):
    """What the runner reads and updates: partner states, chain heads and program spend.

    The caller loads the partners its inputs concern (every partner when a period close is
    among them; every partner with work due by then for an ``AdvanceClock``) and the
    leases of its inputs' lanes (every lease when a period close is among them), and writes
    back those in ``touched`` and what changed of the spend.
    """

    states: dict[str, PartnerState] = msgspec.field(default_factory=dict)
    heads: dict[str, ChainHead] = msgspec.field(default_factory=dict)
    spend: Spend = msgspec.field(default_factory=Spend)

    @property
    def budgets(self) -> dict[ProgramKey, int]:
        """Spend so far per program version that spent: its pool's and leases' together."""
        return self.spend.totals()


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    message: Message
    refusal: Refusal


class Short(msgspec.Struct, kw_only=True):
    """A lane's lease of one program version was too short in a run: ``at`` is the index
    among the inputs of the first message whose award it cut, ``unleased`` what the pool had
    unleased then, and ``wanted`` how much the cut awards of that lane needed in all, from
    there to the end of the inputs (what a grant before ``at`` must hold for one more run
    to cut nothing)."""

    at: int
    unleased: int
    wanted: int = 0


class Outcome(msgspec.Struct, kw_only=True):
    records: list[Record] = msgspec.field(default_factory=list)
    refused: list[Refused] = msgspec.field(default_factory=list)
    touched: set[str] = msgspec.field(default_factory=set)
    # The leases that were too short, by (program version, lane).
    short: dict[tuple[ProgramKey, Lane], Short] = msgspec.field(default_factory=dict)
    # The grants the requests among the inputs got: (index of the request, grant).
    grants: list[tuple[int, Grant]] = msgspec.field(default_factory=list)


def run(
    inputs: Iterable[Message | Grant | GrantRequest],
    books: Books,
    programs: Sequence[CompiledProgram],
    lanes: Iterable[Lane | None] | None = None,
) -> Outcome:
    """Apply ``inputs`` in order; ``lanes`` (one per input, None: of no lane) says whose
    budget lease each spends. Without lanes, every input spends the pool."""
    outcome = Outcome()
    books.spend.know({p.key: p.program.budget for p in programs})
    paired = zip(inputs, repeat(None)) if lanes is None else zip(inputs, lanes, strict=True)
    for index, (message, lane) in enumerate(paired):
        if isinstance(message, Grant):
            books.spend.grant(message)
        elif isinstance(message, GrantRequest):
            grant = books.spend.answer(message)
            if grant is not None:
                outcome.grants.append((index, grant))
        elif isinstance(message, ClosePeriod):
            _close(message, books, programs, outcome)
        elif isinstance(message, AdvanceClock):
            _advance(message, books, programs, outcome)
        else:
            _apply(message, lane, index, books, programs, outcome)
    return outcome


def _apply(
    message: Message,
    lane: Lane | None,
    index: int,
    books: Books,
    programs: Sequence[CompiledProgram],
    outcome: Outcome,
) -> None:
    pid = message.partner_id
    state = books.states.get(pid) or new_state(pid)
    # The books hold the only reference to the state, so the engine may change it in place.
    timed = due(state, message.occurred_at, owned=True)
    result = apply(
        timed.state,
        message,  # type: ignore[arg-type]  # run() sends the all-partner commands elsewhere
        programs,
        budgets=books.spend.view(lane),
        owned=True,
    )
    if result.refusal is not None:
        outcome.refused.append(Refused(message=message, refusal=result.refusal))
    if lane is not None:
        for key, cut in result.short_of.items():
            short = outcome.short.get((key, lane))
            if short is None:
                short = outcome.short[key, lane] = Short(
                    at=index, unleased=books.spend.unleased(key) or 0)
            short.wanted += cut
    _post(pid, [*timed.drafts, *result.drafts], result.state, books, programs, outcome, lane)


def _advance(
    message: AdvanceClock,
    books: Books,
    programs: Sequence[CompiledProgram],
    outcome: Outcome,
) -> None:
    # Only partners with something due: the live worker loads just those, and a partner
    # left alone now is brought up to date by ``due`` before its next input anyway.
    for pid in sorted(books.states):
        when = next_due(books.states[pid])
        if when is not None and when <= message.occurred_at:
            timed = due(books.states[pid], message.occurred_at, owned=True)
            _post(pid, timed.drafts, timed.state, books, programs, outcome, None)


def _close(
    message: ClosePeriod,
    books: Books,
    programs: Sequence[CompiledProgram],
    outcome: Outcome,
) -> None:
    for pid in sorted(books.states):
        timed = due(books.states[pid], message.occurred_at, owned=True)
        _post(pid, timed.drafts, timed.state, books, programs, outcome, None)
    closing = sorted((p for p in programs
                      if message.program_id is None or p.program_id == message.program_id),
                     key=lambda p: p.key)  # fmt: skip
    # What the leases hold goes back, so the close's awards see the whole budget left.
    books.spend.reclaim(p.key for p in closing)
    for program in closing:
        result = close_period(message.period, program, books.states,
                              budgets=books.spend.view(None), owned=True)
        for pid in sorted(result.states):
            _post(pid, result.drafts.get(pid, []), result.states[pid], books, programs,
                  outcome, None)


def _post(
    pid: str,
    drafts: list[Draft],
    state: PartnerState,
    books: Books,
    programs: Sequence[CompiledProgram],
    outcome: Outcome,
    lane: Lane | None,
) -> None:
    books.states[pid] = state
    outcome.touched.add(pid)
    if not drafts:
        return
    for program in programs:
        spent = spend_of(drafts, program)
        if spent:
            books.spend.add(program.key, lane, spent)
    records, books.heads[pid] = append(books.heads.get(pid) or empty_head(pid), drafts)
    outcome.records.extend(records)
