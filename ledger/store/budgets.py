"""Program budgets: every SQL on ``program_spend`` (the pools), ``budget_leases`` and
``budget_grants`` (processors/engine/leases.py says what they hold).

The ledger stage of a batch (processors/writer/ledger.py) calls these inside its
transaction; none commits. Locks: a lease is written only by the holder of its partition's
consumer position, or by a period close, which runs alone (the writers' lock), so leases
are read without a row lock. A pool row is locked (``lock_pools``) only by a batch that
grants or spends outside every lane, and after that batch's partner rows.

Tables and privileges: ledger/migrations/0005_processing.sql, 0016_budget_leases.sql.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import asyncpg

Key = tuple[str, int]  # (program id, version)
Lane = tuple[str, int]  # (topic, partition)


class PoolRow(NamedTuple):
    spent: int
    leased: int


class LeaseRow(NamedTuple):
    left: int
    spent: int


class GrantRow(NamedTuple):
    before_seq: int
    program_id: str
    version: int
    topic: str
    partition: int
    amount: int


_ENSURE = """
INSERT INTO program_spend (program_id, version, spent)
SELECT p, v, 0 FROM unnest($1::text[], $2::int[]) AS u(p, v) ORDER BY 1, 2
ON CONFLICT (program_id, version) DO NOTHING
"""
_POOLS = "SELECT program_id, version, spent, leased FROM program_spend ORDER BY 1, 2"
_LEASES_OF = """
SELECT l.program_id, l.version, l.topic, l.partition, l."left", l.spent FROM budget_leases l
JOIN unnest($1::text[], $2::int[]) AS u(topic, partition)
  ON l.topic = u.topic AND l.partition = u.partition
"""
_ALL_LEASES = """
SELECT program_id, version, topic, partition, "left", spent FROM budget_leases
"""
_SAVE_POOLS = """
UPDATE program_spend s SET spent = u.spent, leased = u.leased
FROM unnest($1::text[], $2::int[], $3::numeric[], $4::numeric[]) AS u(p, v, spent, leased)
WHERE s.program_id = u.p AND s.version = u.v
"""
_SAVE_LEASES = """
INSERT INTO budget_leases (program_id, version, topic, partition, "left", spent)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::int[], $5::numeric[],
                     $6::numeric[])
ON CONFLICT (program_id, version, topic, partition)
DO UPDATE SET "left" = EXCLUDED."left", spent = EXCLUDED.spent
"""
_SAVE_GRANTS = """
INSERT INTO budget_grants (program_id, version, topic, partition, before_seq, amount)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::int[], $5::bigint[],
                     $6::numeric[])
"""
_GRANTS = """
SELECT before_seq, program_id, version, topic, partition, amount FROM budget_grants
ORDER BY grant_id
"""


async def ensure(conn: asyncpg.Connection, versions: Sequence[tuple[str, int]]) -> None:
    """Make the pool rows (at 0) of these program versions where missing: a version's row
    exists from its publication on (``ledger.program_store.publish``)."""
    keys = sorted(versions)
    await conn.execute(_ENSURE, [k for k, _ in keys], [v for _, v in keys])


async def load(
    conn: asyncpg.Connection, lanes: Iterable[Lane] | None, *, lock: bool
) -> tuple[dict[Key, PoolRow], dict[tuple[Key, Lane], LeaseRow]]:
    """The pools, and the leases of ``lanes`` (None: every lease). With ``lock``, the pool
    rows are locked in key order until the transaction ends."""
    pools = await _pools(conn, lock=lock)
    if lanes is None:
        rows = await conn.fetch(_ALL_LEASES)
    else:
        wanted = sorted(set(lanes))
        rows = await conn.fetch(_LEASES_OF, [t for t, _ in wanted], [p for _, p in wanted])
    leases = {
        ((r["program_id"], r["version"]), (r["topic"], r["partition"])):
            LeaseRow(int(r["left"]), int(r["spent"]))  # numeric
        for r in rows
    }  # fmt: skip
    return pools, leases


async def lock_pools(conn: asyncpg.Connection) -> dict[Key, PoolRow]:
    """Every pool, locked in key order until the transaction ends: what a grant reads."""
    return await _pools(conn, lock=True)


async def _pools(conn: asyncpg.Connection, *, lock: bool) -> dict[Key, PoolRow]:
    return {
        (r["program_id"], r["version"]): PoolRow(int(r["spent"]), int(r["leased"]))  # numeric
        for r in await conn.fetch(_POOLS + (" FOR UPDATE" if lock else ""))
    }


async def save(
    conn: asyncpg.Connection,
    pools: Sequence[tuple[Key, PoolRow]],
    leases: Sequence[tuple[tuple[Key, Lane], LeaseRow]],
    grants: Sequence[GrantRow],
) -> None:
    """Store changed pools (whose rows the caller locked) and leases, and the grants
    made, each with the arrival number of the message before which it takes effect."""
    if pools:
        p = sorted(pools)
        await conn.execute(_SAVE_POOLS, [k[0] for k, _ in p], [k[1] for k, _ in p],
                           [r.spent for _, r in p], [r.leased for _, r in p])
    if leases:
        s = sorted(leases)
        await conn.execute(
            _SAVE_LEASES, [k[0] for (k, _), _ in s], [k[1] for (k, _), _ in s],
            [lane[0] for (_, lane), _ in s], [lane[1] for (_, lane), _ in s],
            [r.left for _, r in s], [r.spent for _, r in s],
        )  # fmt: skip
    if grants:
        await conn.execute(
            _SAVE_GRANTS, [g.program_id for g in grants], [g.version for g in grants],
            [g.topic for g in grants], [g.partition for g in grants],
            [g.before_seq for g in grants], [g.amount for g in grants],
        )  # fmt: skip


async def grants(conn: asyncpg.Connection) -> list[GrantRow]:
    """Every grant, in the order made, with the arrival number it takes effect before:
    what the replay interleaves with the inbox (``processors.engine.leases.Recorded``)."""
    return [
        GrantRow(int(r["before_seq"]), r["program_id"], r["version"], r["topic"],
                 r["partition"], int(r["amount"]))
        for r in await conn.fetch(_GRANTS)
    ]  # fmt: skip
