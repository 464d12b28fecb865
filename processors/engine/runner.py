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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
from schemas.commands import AdvanceClock, ClosePeriod
from schemas.streams import Message


class Books(msgspec.Struct, kw_only=True):
    """What the runner reads and updates: partner states, chain heads and program spend.

    The caller loads the partners its inputs concern (every partner when a period close is
    among them; every partner with work due by then for an ``AdvanceClock``) and writes
    back those in ``touched``.
    """

    states: dict[str, PartnerState] = msgspec.field(default_factory=dict)
    heads: dict[str, ChainHead] = msgspec.field(default_factory=dict)
    budgets: dict[tuple[str, int], int] = msgspec.field(default_factory=dict)


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    message: Message
    refusal: Refusal


class Outcome(msgspec.Struct, kw_only=True):
    records: list[Record] = msgspec.field(default_factory=list)
    refused: list[Refused] = msgspec.field(default_factory=list)
    touched: set[str] = msgspec.field(default_factory=set)


def run(inputs: Iterable[Message], books: Books, programs: Sequence[CompiledProgram]) -> Outcome:
    outcome = Outcome()
    for message in inputs:
        if isinstance(message, ClosePeriod):
            _close(message, books, programs, outcome)
        elif isinstance(message, AdvanceClock):
            _advance(message, books, programs, outcome)
        else:
            _apply(message, books, programs, outcome)
    return outcome


def _apply(
    message: Message, books: Books, programs: Sequence[CompiledProgram], outcome: Outcome
) -> None:
    pid = message.partner_id
    state = books.states.get(pid) or new_state(pid)
    # The books hold the only reference to the state, so the engine may change it in place.
    timed = due(state, message.occurred_at, owned=True)
    result = apply(
        timed.state,
        message,  # type: ignore[arg-type]  # run() sends the all-partner commands elsewhere
        programs,
        budgets=books.budgets,
        owned=True,
    )
    if result.refusal is not None:
        outcome.refused.append(Refused(message=message, refusal=result.refusal))
    _post(pid, [*timed.drafts, *result.drafts], result.state, books, programs, outcome)


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
            _post(pid, timed.drafts, timed.state, books, programs, outcome)


def _close(
    message: ClosePeriod,
    books: Books,
    programs: Sequence[CompiledProgram],
    outcome: Outcome,
) -> None:
    for pid in sorted(books.states):
        timed = due(books.states[pid], message.occurred_at, owned=True)
        _post(pid, timed.drafts, timed.state, books, programs, outcome)
    for program in sorted(programs, key=lambda p: (p.program_id, p.version)):
        if message.program_id is not None and program.program_id != message.program_id:
            continue
        result = close_period(message.period, program, books.states, budgets=books.budgets,
                              owned=True)
        for pid in sorted(result.states):
            _post(pid, result.drafts.get(pid, []), result.states[pid], books, programs, outcome)


def _post(
    pid: str,
    drafts: list[Draft],
    state: PartnerState,
    books: Books,
    programs: Sequence[CompiledProgram],
    outcome: Outcome,
) -> None:
    books.states[pid] = state
    outcome.touched.add(pid)
    if not drafts:
        return
    for program in programs:
        spent = spend_of(drafts, program)
        if spent:
            key = (program.program_id, program.version)
            books.budgets[key] = books.budgets.get(key, 0) + spent
    records, books.heads[pid] = append(books.heads.get(pid) or empty_head(pid), drafts)
    outcome.records.extend(records)
