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
from ledger.store import partners as partner_store
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
    (the same messages with where they came from) feeds the freshness projection."""
    assert conn.is_in_transaction(), "the ledger stage runs in the batch's transaction"
    if not messages:
        return Outcome()
    books = await _load(conn, messages)
    budgets_before = dict(books.budgets)
    outcome = run(messages, books, programs)
    await append(conn, outcome.records)
    await projections.apply(
        conn, projection_feed.batch(messages, outcome, books.states, programs, accepted))
    await _save(conn, books, outcome, budgets_before)
    return outcome


async def _load(conn: asyncpg.Connection, messages: Sequence[Message]) -> Books:
    """Lock and load what the messages concern: their partners; every partner for a period
    close; for a clock advance also every partner with work due by then; then the spend of
    every program version (``ledger.store.partners.lock_spend``)."""
    partners = sorted({m.partner_id for m in messages if not isinstance(m, ALL_PARTNER_COMMANDS)})
    advances = [m.occurred_at for m in messages if isinstance(m, AdvanceClock)]
    locked = await partner_store.lock_partners(
        conn, partners, every_partner=any(isinstance(m, ClosePeriod) for m in messages),
        due_by=max(advances, default=None),
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
    books.budgets.update(await partner_store.lock_spend(conn))
    return books


async def _save(
    conn: asyncpg.Connection,
    books: Books,
    outcome: Outcome,
    budgets_before: dict[tuple[str, int], int],
) -> None:
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
    # In key order, like every lock this stage takes, so two writers cannot deadlock.
    changed = sorted((k, v) for k, v in books.budgets.items() if budgets_before.get(k) != v)
    await partner_store.save_spend(conn, [(pid, v, spent) for (pid, v), spent in changed])
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
