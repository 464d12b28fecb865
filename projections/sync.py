"""Keeping the projections in step with the ledger, checking them and rebuilding them.

- `apply` runs in the batch's transaction, after the batch's records are appended
  (processors/writer/ledger.py): one statement per table that has something to write, the
  tables always in the order of `TABLES`, which is also the order `rebuild` locks them in.
  Every row written belongs to one partner (or, for freshness, one partition), written in
  key order.
- `diff` folds the whole ledger (and the engine's facts, handed over by a `FactSource`) with
  the same pure folds the writer uses and compares every table with it;
  ``incentives projections check``.
- `rebuild` replaces every table with that fold, in one transaction that holds them all in
  EXCLUSIVE mode; ``incentives projections rebuild``.

Why the lock makes the rebuild exact while workers run: EXCLUSIVE mode lets readers read
the old rows until the commit, but makes every writer wait at its `apply`, which comes
before its commit and before it writes its partner states. Every batch that committed
before the lock was granted is in the rebuild; every other one is still waiting, its records
and states invisible to the rebuild, and adds its rows on top once the rebuild commits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import msgspec

from projections import activity, balances, freshness, refusals, spend, tiers
from projections.facts import Batch, PartnerFacts, Refusal
from projections.rows import Difference, Rows, Table, compare, read, replace

if TYPE_CHECKING:
    import asyncpg

TABLES: tuple[Table, ...] = (balances.TABLE, spend.TABLE, tiers.CHANGES, tiers.CURRENT,
                             activity.ACTIVITY, activity.PARTNERS, refusals.TABLE,
                             freshness.TABLE)
BY_NAME = {t.name: t for t in TABLES}


class FactSource(Protocol):
    """What the projections need that is not in the ledger, for every partner: the
    engine's facts and the refused commands (supplied by the processors that own them)."""

    async def facts(self, conn: asyncpg.Connection) -> Sequence[PartnerFacts]: ...

    async def refusals(self, conn: asyncpg.Connection) -> Sequence[Refusal]: ...


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """What `diff` found: rows per table in a rebuild, and every difference."""

    rows: dict[str, int]
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        return [d.describe(BY_NAME[d.table]) for d in self.differences]


class Rebuilt(msgspec.Struct, frozen=True, kw_only=True):
    """What `rebuild` wrote per table and what it repaired."""

    rows: dict[str, int]
    repaired: Report


async def apply(conn: asyncpg.Connection, batch: Batch) -> None:
    """Bring every projection up to date with one batch, inside its transaction."""
    assert conn.is_in_transaction(), "projections are kept in the batch's transaction"
    await balances.apply(conn, batch.records)
    await spend.apply(conn, batch.records)
    await tiers.apply(conn, batch.records, batch.facts)
    await activity.apply(conn, batch.facts)
    await refusals.apply(conn, batch.refusals)
    await freshness.apply(conn, batch.sources)


async def expected(conn: asyncpg.Connection, source: FactSource) -> dict[str, Rows]:
    """Every table as a rebuild makes it: one pass over the ledger, then the facts."""
    from ledger.store import stream_chunks  # the store's driver, not needed by the folds

    out: dict[str, Rows] = {t.name: {} for t in TABLES}
    async for chunk in stream_chunks(conn):
        balances.fold(chunk, out[balances.TABLE.name])
        spend.fold(chunk, out[spend.TABLE.name])
        tiers.fold_changes(chunk, out[tiers.CHANGES.name])
    facts = await source.facts(conn)
    tiers.fold_current(facts, out[tiers.CURRENT.name])
    activity.fold_activity(facts, out[activity.ACTIVITY.name])
    activity.fold_partners(facts, out[activity.PARTNERS.name])
    refusals.fold(await source.refusals(conn), out[refusals.TABLE.name])
    out[freshness.TABLE.name] = await freshness.expected(conn)
    out[_HISTORY] = {(pid,): (month,) for pid, month in activity.remembered(facts).items()}
    return out


_HISTORY = "activity remembered from"  # not a table: per partner, the engine's oldest month


async def stored(conn: asyncpg.Connection) -> dict[str, Rows]:
    out = {t.name: await read(conn, t) for t in TABLES}
    out[tiers.CURRENT.name] = tiers.normalise_current(out[tiers.CURRENT.name])
    return out


def _history(stored_activity: Rows, remembered: Rows) -> Rows:
    """Stored activity of months the engine has forgotten: kept, never compared."""
    return {k: v for k, v in stored_activity.items()
            if (k[0],) in remembered and k[1] < _month(remembered[(k[0],)][0])}


def _month(value: object) -> dt.date:
    assert isinstance(value, dt.date)
    return value


def _report(want: dict[str, Rows], have: dict[str, Rows]) -> Report:
    old = _history(have[activity.ACTIVITY.name], want[_HISTORY])
    have = {**have, activity.ACTIVITY.name: {k: v for k, v in have[activity.ACTIVITY.name].items()
                                             if k not in old}}
    differences: list[Difference] = []
    for table in TABLES:
        differences += compare(table, have[table.name], want[table.name])
    return Report(rows={t.name: len(want[t.name]) for t in TABLES}, differences=differences)


async def diff(conn: asyncpg.Connection, source: FactSource) -> Report:
    """Every difference between the stored projections and a fresh fold, in one snapshot
    (a REPEATABLE READ, read-only transaction unless the caller has one open)."""
    async with _transaction(conn, isolation="repeatable_read", readonly=True):
        want = await expected(conn, source)
        have = await stored(conn)
    return _report(want, have)


async def rebuild(conn: asyncpg.Connection, source: FactSource) -> Rebuilt:
    """Replace every projection with a fresh fold, in one transaction that locks them all."""
    async with _transaction(conn):
        await conn.execute(f"LOCK TABLE {', '.join(t.name for t in TABLES)} IN EXCLUSIVE MODE")
        want = await expected(conn, source)
        have = await stored(conn)
        repaired = _report(want, have)
        kept = _history(have[activity.ACTIVITY.name], want[_HISTORY])
        written = {}
        for table in TABLES:
            rows = want[table.name]
            if table is activity.ACTIVITY:
                rows = {**kept, **rows}
            written[table.name] = await replace(conn, table, rows)
    return Rebuilt(rows=written, repaired=repaired)


def _transaction(
    conn: asyncpg.Connection, **options: object
) -> contextlib.AbstractAsyncContextManager[object]:
    """The caller's transaction if there is one, else a new one with these options."""
    if conn.is_in_transaction():
        return contextlib.nullcontext()
    manager: contextlib.AbstractAsyncContextManager[object] = conn.transaction(**options)
    return manager
