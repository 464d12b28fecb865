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
from ledger.core import GENESIS_HASH, ChainHead
from ledger.store import append
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
from processors.intake.batch import Accepted
from processors.outbox import projection_feed
from processors.runner import Books, Outcome, run
from schemas.commands import ALL_PARTNER_COMMANDS, AdvanceClock, ClosePeriod
from schemas.events import SaleRecorded, SaleReversed
from schemas.streams import Message

log = logging.getLogger(__name__)

_ENSURE_ROWS = """
INSERT INTO partner_state (partner_id, head_seq, head_hash)
SELECT p, 0, $2::bytea FROM unnest($1::text[]) AS p
ON CONFLICT (partner_id) DO NOTHING
"""
_LOCK_SOME = """
SELECT partner_id, head_seq, head_hash, state FROM partner_state
WHERE partner_id = ANY($1::text[]) OR next_due_at <= $2
ORDER BY partner_id FOR UPDATE
"""
_LOCK_ALL = """
SELECT partner_id, head_seq, head_hash, state FROM partner_state
ORDER BY partner_id FOR UPDATE
"""
_LOAD_ORDERS = """
SELECT o.partner_id, o.order_id, o.state FROM partner_orders o
JOIN unnest($1::text[], $2::text[]) AS k(partner_id, order_id)
  ON o.partner_id = k.partner_id AND o.order_id = k.order_id
"""
_SAVE_ORDERS = """
INSERT INTO partner_orders (partner_id, order_id, keep_until, state)
SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::text[]::jsonb[])
ON CONFLICT (partner_id, order_id)
DO UPDATE SET keep_until = EXCLUDED.keep_until, state = EXCLUDED.state
"""
_PURGE_ORDERS = """
DELETE FROM partner_orders o USING unnest($1::text[], $2::date[]) AS u(partner_id, pruned_on)
WHERE o.partner_id = u.partner_id AND o.keep_until < u.pruned_on
"""
_SAVE_STATES = """
UPDATE partner_state s SET state = u.state::jsonb, next_due_at = u.next_due_at,
                           updated_at = now()
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(partner_id, state, next_due_at)
WHERE s.partner_id = u.partner_id
"""


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
    close; for a clock advance also every partner with work due by then."""
    partners = sorted({m.partner_id for m in messages if not isinstance(m, ALL_PARTNER_COMMANDS)})
    await conn.execute(_ENSURE_ROWS, partners, GENESIS_HASH)
    if any(isinstance(m, ClosePeriod) for m in messages):
        rows = await conn.fetch(_LOCK_ALL)
    else:
        advances = [m.occurred_at for m in messages if isinstance(m, AdvanceClock)]
        rows = await conn.fetch(_LOCK_SOME, partners, max(advances, default=None))
    books = Books()
    for row in rows:
        pid = row["partner_id"]
        books.heads[pid] = ChainHead(pid, row["head_seq"], row["head_hash"])
        if row["state"] not in (None, "{}"):
            books.states[pid] = decode_state(row["state"])
    # Orders are stored apart (partner_orders); only those the messages name are read.
    named = sorted(
        {(m.partner_id, m.order_id) for m in messages if isinstance(m, SaleRecorded | SaleReversed)}
    )
    if named:
        for row in await conn.fetch(_LOAD_ORDERS, [p for p, _ in named], [o for _, o in named]):
            state = books.states.get(row["partner_id"])
            if state is not None:  # an order is only ever written with its partner's state
                state.orders.setdefault(row["order_id"], decode_order(row["state"]))
    for row in await conn.fetch(
        "SELECT program_id, version, spent FROM program_spend ORDER BY 1, 2 FOR UPDATE"
    ):
        books.budgets[(row["program_id"], row["version"])] = int(row["spent"])  # numeric
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
    orders = [(s.partner_id, o) for s in states for _, o in sorted(s.orders.items())]
    if orders:
        await conn.execute(
            _SAVE_ORDERS,
            [p for p, _ in orders],
            [o.order_id for _, o in orders],
            [o.keep_until for _, o in orders],
            [encode_order(o).decode() for _, o in orders],
        )
    pruned = [s for s in states if s.pruned_on is not None]
    if pruned:
        await conn.execute(
            _PURGE_ORDERS, [s.partner_id for s in pruned], [s.pruned_on for s in pruned]
        )
    await conn.execute(
        _SAVE_STATES,
        touched,
        [encode_state(msgspec.structs.replace(s, orders={})).decode() for s in states],
        [next_due(s) for s in states],
    )
    # In key order, like every lock this stage takes, so two writers cannot deadlock.
    changed = sorted((k, v) for k, v in books.budgets.items() if budgets_before.get(k) != v)
    if changed:
        await conn.executemany(
            """INSERT INTO program_spend (program_id, version, spent) VALUES ($1, $2, $3)
               ON CONFLICT (program_id, version) DO UPDATE SET spent = EXCLUDED.spent""",
            [(pid, version, spent) for (pid, version), spent in changed],
        )
    if outcome.refused:
        await conn.executemany(
            """INSERT INTO command_refusals
                   (event_id, partner_id, event_type, code, path, message, occurred_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            [
                (
                    r.message.event_id,
                    r.message.partner_id,
                    type(r.message).__name__,
                    r.refusal.code.value,
                    r.refusal.path,
                    r.refusal.message,
                    r.message.occurred_at,
                )
                for r in outcome.refused
            ],
        )


async def stored_states(conn: asyncpg.Connection) -> list[PartnerState]:
    """Every stored partner state (without its orders, which live apart), in partner order:
    what ``incentives projections check|rebuild`` measures the engine's facts from."""
    rows = await conn.fetch(
        "SELECT state FROM partner_state WHERE state <> '{}'::jsonb ORDER BY partner_id")
    return [decode_state(r["state"]) for r in rows]
