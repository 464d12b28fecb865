"""The ledger stage of a batch: engine results into PostgreSQL, in the batch's transaction.

The ingest stage (processors/intake/batch.py) decides which messages are accepted and in what
order; this stage loads the books those messages touch, runs them through the runner (the
same pure code the auditor's replay uses), appends the sealed records, and stores the new
partner states, program spend and refusals. Everything commits or rolls back with the
batch's inbox rows and consumer positions.

Orders (what each sale line earned, for exact clawbacks) are the bulk of a busy partner's
state, so they are stored apart, one row each in ``partner_orders``: a batch reads only the
orders its sales and reversals name and writes back only those. The engine treats an order
past the partner's pruning day as gone whether it is loaded or not
(``engine.state.visible_order``), so this gives the records a replay holding every order
in memory gives.

Concurrency: the partner rows are locked (in partner id order, so two writers cannot
deadlock on them) before they are read, so a second writer of the same partners waits and
then sees the first one's heads. A zombie whose view is stale still fails on the chain
head compare-and-set in ledger.store and rolls its whole batch back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import msgspec

import projections
from ledger import program_store
from ledger.store import append
from ledger.store import budgets as budget_store
from ledger.store import partners as partner_store
from ledger.store.budgets import GrantRow, LeaseRow, PoolRow
from processors.engine import (
    CompiledProgram,
    PartnerState,
    compile_program,
    decode_order,
    decode_state,
    encode_order,
    encode_state,
    next_due,
)
from processors.engine.leases import Grant, GrantRequest, Lane, Lease, Pool, ProgramKey, Spend
from processors.engine.runner import Books, Outcome, run
from processors.intake.batch import Accepted
from processors.outbox import projection_feed, refusals
from schemas.commands import ALL_PARTNER_COMMANDS, AdvanceClock, ClosePeriod
from schemas.events import SaleRecorded, SaleReversed
from schemas.streams import Message

log = logging.getLogger(__name__)

class Programs:
    """The compiled program versions, reloaded when a new version is published."""

    def __init__(self) -> None:
        self.compiled: list[CompiledProgram] = []
        self._seen: tuple[int, object] = (0, None)

    async def refresh(self, conn: asyncpg.Connection) -> list[CompiledProgram]:
        marker = await conn.fetchrow(
            "SELECT count(*) AS n, max(published_at) AS at FROM program_versions"
        )
        seen = (int(marker["n"]), marker["at"])
        if seen != self._seen:
            stored = await program_store.fetch_all(conn)
            self.compiled = [compile_program(s.load().program) for s in stored]
            self._seen = seen
            log.info("programs loaded: %s", [(c.program_id, c.version) for c in self.compiled])
        return self.compiled


def hook(
    on_appended: Callable[[int], None] | None = None,
) -> Callable[[asyncpg.Connection, list[Accepted]], Awaitable[list[Accepted]]]:
    """The ingest stage's apply hook: accepted events, in acceptance order, to the ledger.

    It answers with the accepted commands the rules refused, so that the worker knows,
    after the commit, from which partitions there are refusals to publish. The number of
    ledger records each call appended goes to ``on_appended`` (the worker's metrics; see
    ``processors.worker.telemetry.RecordTally``)."""
    programs = Programs()

    async def apply_accepted(conn: asyncpg.Connection, accepted: list[Accepted]) -> list[Accepted]:
        outcome = await write(conn, [a.message for a in accepted], await programs.refresh(conn),
                              accepted=accepted)
        if on_appended is not None:
            on_appended(len(outcome.records))
        refused = {r.message.event_id for r in outcome.refused}
        return [a for a in accepted if a.message.event_id in refused]

    return apply_accepted


async def write(
    conn: asyncpg.Connection,
    messages: Sequence[Message],
    programs: Sequence[CompiledProgram],
    *,
    accepted: Sequence[Accepted] = (),
) -> Outcome:
    """Apply accepted messages, in order, inside the caller's transaction; ``accepted``
    (the same messages with where they came from) gives each its lane, the budget lease
    it spends, and feeds the freshness projection. Without it, every message spends the
    programs' pools, whose rows are then locked."""
    assert conn.is_in_transaction(), "the ledger stage runs in the batch's transaction"
    if not messages:
        return Outcome()
    lanes: list[Lane | None] = (
        [(a.topic, a.partition) for a in accepted] if accepted else [None] * len(messages))
    seqs = [a.arrival_seq for a in accepted] if accepted else list(range(len(messages)))
    pools_locked = not accepted or any(isinstance(m, ALL_PARTNER_COMMANDS) for m in messages)
    asks: dict[tuple[int, ProgramKey, Lane], GrantRequest] = {}  # by (message index, key, lane)
    while True:
        books = await _load(conn, messages, lanes, lock_pools=pools_locked)
        before = _spend_rows(books.spend)
        inputs, input_lanes, index_of = _with_asks(messages, lanes, asks)
        outcome = run(inputs, books, programs, input_lanes)
        more = _more_asks(outcome, index_of, asks)
        if not more:
            break
        # A lease was short while something was unleased: grant from the pools, locked
        # (after the partner rows, like every batch that takes them), and run again.
        if not pools_locked:
            await budget_store.lock_pools(conn)
            pools_locked = True
        asks.update(more)
    await append(conn, outcome.records)
    await projections.apply(
        conn, projection_feed.batch(messages, outcome, books.states, programs, accepted))
    await _save(conn, books, outcome)
    await _save_spend(conn, books.spend, before, pools_locked,
                      [(seqs[index_of[i]], g) for i, g in outcome.grants])
    return outcome


def _with_asks(
    messages: Sequence[Message],
    lanes: Sequence[Lane | None],
    asks: dict[tuple[int, ProgramKey, Lane], GrantRequest],
) -> tuple[list[Message | GrantRequest], list[Lane | None], list[int]]:
    """The runner's inputs: the messages, each ask just before the message it is for; the
    lane of each input; and for each input the index of its message."""
    before: dict[int, list[GrantRequest]] = {}
    for (index, _, _), ask in sorted(asks.items()):
        before.setdefault(index, []).append(ask)
    inputs: list[Message | GrantRequest] = []
    input_lanes: list[Lane | None] = []
    index_of: list[int] = []
    for index, (message, lane) in enumerate(zip(messages, lanes, strict=True)):
        for ask in before.get(index, ()):
            inputs.append(ask)
            input_lanes.append((ask.topic, ask.partition))
            index_of.append(index)
        inputs.append(message)
        input_lanes.append(lane)
        index_of.append(index)
    return inputs, input_lanes, index_of


def _more_asks(
    outcome: Outcome,
    index_of: list[int],
    asks: dict[tuple[int, ProgramKey, Lane], GrantRequest],
) -> dict[tuple[int, ProgramKey, Lane], GrantRequest]:
    """Asks for the leases the run found short while something was unleased: before the
    first message each was short for, for what the batch's cut awards wanted from there,
    one round more if it was asked for there already."""
    more = {}
    for ((program_id, version), (topic, partition)), short in outcome.short.items():
        if short.unleased > 0:
            at = (index_of[short.at], (program_id, version), (topic, partition))
            more[at] = GrantRequest(
                program_id=program_id, version=version, topic=topic, partition=partition,
                round=asks[at].round + 1 if at in asks else 0, want=short.wanted)
    return more


async def _load(
    conn: asyncpg.Connection,
    messages: Sequence[Message],
    lanes: Sequence[Lane | None],
    *,
    lock_pools: bool,
) -> Books:
    """Lock and load what the messages concern: their partners; every partner for a period
    close; for a clock advance also every partner with work due by then; then the leases
    of their lanes (every lease for a period close, which takes back what they hold) and
    the programs' pools (``ledger.store.budgets``)."""
    partners = sorted({m.partner_id for m in messages if not isinstance(m, ALL_PARTNER_COMMANDS)})
    advances = [m.occurred_at for m in messages if isinstance(m, AdvanceClock)]
    closing = any(isinstance(m, ClosePeriod) for m in messages)
    locked = await partner_store.lock_partners(
        conn, partners, every_partner=closing, due_by=max(advances, default=None),
    )  # fmt: skip
    books = Books()
    for row in locked:
        pid = row.head.partner_id
        books.heads[pid] = row.head
        if row.state is not None:
            books.states[pid] = decode_state(row.state)
    # Orders are stored apart (partner_orders); only those the messages name are read.
    named = sorted(
        {(m.partner_id, m.order_id) for m in messages if isinstance(m, SaleRecorded | SaleReversed)}
    )
    for order in await partner_store.load_orders(conn, named):
        state = books.states.get(order.partner_id)
        if state is not None:  # an order is only ever written with its partner's state
            state.orders.setdefault(order.order_id, decode_order(order.state))
    pools, leases = await budget_store.load(
        conn, None if closing else [lane for lane in lanes if lane is not None],
        lock=lock_pools)  # fmt: skip
    books.spend.pools = {k: Pool(spent=r.spent, leased=r.leased) for k, r in pools.items()}
    books.spend.leases = {k: Lease(left=r.left, spent=r.spent) for k, r in leases.items()}
    return books


_SpendRows = tuple[dict[ProgramKey, PoolRow], dict[tuple[ProgramKey, Lane], LeaseRow]]


def _spend_rows(spend: Spend) -> _SpendRows:
    return ({k: PoolRow(p.spent, p.leased) for k, p in spend.pools.items()},
            {k: LeaseRow(lease.left, lease.spent) for k, lease in spend.leases.items()})


async def _save_spend(
    conn: asyncpg.Connection,
    spend: Spend,
    before: _SpendRows,
    pools_locked: bool,
    grants: list[tuple[int, Grant]],
) -> None:
    pools, leases = _spend_rows(spend)
    changed_pools = [(k, r) for k, r in pools.items() if before[0].get(k) != r]
    assert pools_locked or not changed_pools, "a pool changed without its row locked"
    await budget_store.save(
        conn, changed_pools, [(k, r) for k, r in leases.items() if before[1].get(k) != r],
        [GrantRow(seq, g.program_id, g.version, g.topic, g.partition, g.amount)
         for seq, g in grants],
    )  # fmt: skip


async def _save(conn: asyncpg.Connection, books: Books, outcome: Outcome) -> None:
    touched = sorted(outcome.touched)
    states = [books.states[p] for p in touched]
    # The orders the batch read or made (changed or not), then the state without them.
    await partner_store.save_orders(conn, [
        partner_store.StoredOrder(s.partner_id, o.order_id, o.keep_until, encode_order(o).decode())
        for s in states for _, o in sorted(s.orders.items())
    ])  # fmt: skip
    await partner_store.purge_orders(
        conn, [(s.partner_id, s.pruned_on) for s in states if s.pruned_on is not None]
    )
    await partner_store.save_states(
        conn,
        touched,
        [encode_state(msgspec.structs.replace(s, orders={})).decode() for s in states],
        [next_due(s) for s in states],
    )
    await refusals.record(conn, [
        refusals.Refusal(r.message.event_id, r.message.partner_id, type(r.message).__name__,
                         r.refusal.code.value, r.refusal.path, r.refusal.message,
                         r.message.occurred_at)
        for r in outcome.refused
    ])  # fmt: skip


async def stored_states(conn: asyncpg.Connection) -> list[PartnerState]:
    """Every stored partner state (without its orders, which live apart), in partner order:
    what ``incentives projections check|rebuild`` measures the engine's facts from."""
    return [decode_state(s) for s in await partner_store.stored_states(conn)]
