"""The writer's side tables, beside the chain heads: partner state and orders.

Every SQL statement on ``partner_state`` (besides the chain-head compare-and-set of
``ledger.store.write``, the same table's other columns) and ``partner_orders`` lives here
(program budgets: ``ledger.store.budgets``); the ledger stage of a batch
(processors/writer/ledger.py) calls these functions inside its transaction. None commits.

The engine's state and orders arrive and leave as their JSON text: this module stores what
the engine encodes and never looks inside it (the engine's storage shape is the engine's;
the read models get typed facts from processors/outbox/projection_feed.py instead).

Tables and privileges: ledger/migrations/0002_ledger.sql, 0005_processing.sql,
0009_partner_orders.sql, 0012_least_privilege.sql.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from ledger.core import GENESIS_HASH, ChainHead

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
_STORED_STATES = "SELECT state FROM partner_state WHERE state <> '{}'::jsonb ORDER BY partner_id"


@dataclass(frozen=True, slots=True)
class LockedPartner:
    """A partner row, locked: its chain head and its engine state (JSON, None when empty)."""

    head: ChainHead
    state: str | None


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """One row of ``partner_orders``: the engine's order, as JSON."""

    partner_id: str
    order_id: str
    keep_until: date | None
    state: str


async def lock_partners(
    conn: asyncpg.Connection,
    partner_ids: Sequence[str],
    *,
    every_partner: bool,
    due_by: datetime | None,
) -> list[LockedPartner]:
    """Create the missing rows of ``partner_ids`` (at the genesis head), then lock and read,
    in partner id order (so two writers cannot deadlock): every partner when
    ``every_partner``, else these partners and those with work due by ``due_by``."""
    await conn.execute(_ENSURE_ROWS, list(partner_ids), GENESIS_HASH)
    if every_partner:
        rows = await conn.fetch(_LOCK_ALL)
    else:
        rows = await conn.fetch(_LOCK_SOME, list(partner_ids), due_by)
    return [
        LockedPartner(
            ChainHead(r["partner_id"], r["head_seq"], r["head_hash"]),
            None if r["state"] in (None, "{}") else r["state"],
        )
        for r in rows
    ]


async def load_orders(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]
) -> list[StoredOrder]:
    """The stored orders of these (partner_id, order_id) keys (those that exist)."""
    if not keys:
        return []
    rows = await conn.fetch(_LOAD_ORDERS, [p for p, _ in keys], [o for _, o in keys])
    return [StoredOrder(r["partner_id"], r["order_id"], None, r["state"]) for r in rows]


async def save_orders(conn: asyncpg.Connection, orders: Sequence[StoredOrder]) -> None:
    """Insert or replace these orders."""
    if orders:
        await conn.execute(
            _SAVE_ORDERS,
            [o.partner_id for o in orders],
            [o.order_id for o in orders],
            [o.keep_until for o in orders],
            [o.state for o in orders],
        )


async def purge_orders(conn: asyncpg.Connection, pruned: Sequence[tuple[str, date]]) -> None:
    """Delete the orders kept until before each partner's pruning day."""
    if pruned:
        await conn.execute(_PURGE_ORDERS, [p for p, _ in pruned], [d for _, d in pruned])


async def save_states(
    conn: asyncpg.Connection,
    partner_ids: Sequence[str],
    states: Sequence[str],
    next_due: Sequence[datetime | None],
) -> None:
    """Store each partner's engine state (JSON, orders apart) and when it next has work due."""
    await conn.execute(_SAVE_STATES, list(partner_ids), list(states), list(next_due))


async def stored_states(conn: asyncpg.Connection) -> list[str]:
    """Every stored partner state that is not empty (JSON, without orders), in partner order."""
    return [r["state"] for r in await conn.fetch(_STORED_STATES)]
