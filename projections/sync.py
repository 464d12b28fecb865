"""Keeping the projections in step with the ledger, rebuilding them, and checking them.

- `apply` runs in the batch's transaction, after the batch's records are appended (see
  processors/ledger_writer.py): balances first, then tiers, always in that order, the
  order `rebuild` locks the tables in.
- `diff` compares the stored projections with a fresh rebuild (computed, not written) and
  reports every difference; ``incentives projections check``.
- `rebuild` replaces both tables with a fresh rebuild, in one transaction that holds both
  tables in EXCLUSIVE mode; ``incentives projections rebuild``.

Why the lock makes the rebuild exact while workers run: EXCLUSIVE mode lets readers read
the old rows until the commit, but makes every writer wait at its `apply`, which comes
before its commit. Every batch that changed the ledger or a partner state, and committed
before the lock was granted, is in the rebuild; every other one is still waiting, its
records and states invisible to the rebuild, and adds its deltas on top of the rebuilt rows
once the rebuild commits. (A batch writes ``partner_state`` after `apply`, so the same holds
for the tiers.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from ledger.core import Record
from projections import balances, tiers
from projections.balances import BalanceDifference
from projections.tiers import TierDifference, TieredState

if TYPE_CHECKING:
    import asyncpg


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """What `diff` found: the differences, and how many balances (non-zero, per account and
    asset) and tiers (per partner and program) a rebuild gives."""

    balances: int
    tiers: int
    balance_differences: list[BalanceDifference]
    tier_differences: list[TierDifference]

    @property
    def ok(self) -> bool:
        return not self.balance_differences and not self.tier_differences


class Rebuilt(msgspec.Struct, frozen=True, kw_only=True):
    """What `rebuild` wrote (rows, zero balances included) and what it repaired."""

    balance_rows: int
    tier_rows: int
    repaired: Report


async def apply(
    conn: asyncpg.Connection, records: Sequence[Record], states: Mapping[str, TieredState]
) -> None:
    """Bring the projections up to date with a batch: `records` it appended, `states` of
    the partners it touched. Runs inside the batch's transaction."""
    assert conn.is_in_transaction(), "projections are kept in the batch's transaction"
    await balances.apply(conn, records)
    await tiers.apply(conn, states)


async def diff(conn: asyncpg.Connection) -> Report:
    """Every difference between the stored projections and a fresh rebuild.

    Outside a transaction it opens a REPEATABLE READ, read-only one, so the projections and
    the ledger are read in one snapshot (a batch commits both together)."""
    async with _transaction(conn, isolation="repeatable_read", readonly=True):
        expected_balances = await balances.expected(conn)
        stored_balances = await balances.stored(conn)
        expected_tiers = await tiers.expected(conn)
        stored_tiers = await tiers.stored(conn)
    return Report(
        balances=len(expected_balances),
        tiers=len(expected_tiers),
        balance_differences=balances.compare(stored_balances, expected_balances),
        tier_differences=tiers.compare(stored_tiers, expected_tiers),
    )


async def rebuild(conn: asyncpg.Connection) -> Rebuilt:
    """Recompute both projections from the ledger and partner_state, in one transaction
    (the caller's, or one of its own) that locks both tables; see the module docstring."""
    async with _transaction(conn):
        await conn.execute("LOCK TABLE account_balances, partner_tiers IN EXCLUSIVE MODE")
        repaired = await diff(conn)
        balance_rows = await balances.rebuild(conn)
        tier_rows = await tiers.rebuild(conn)
    return Rebuilt(balance_rows=balance_rows, tier_rows=tier_rows, repaired=repaired)


def _transaction(
    conn: asyncpg.Connection, **options: object
) -> contextlib.AbstractAsyncContextManager[object]:
    """The caller's transaction if there is one, else a new one with these options."""
    if conn.is_in_transaction():
        return contextlib.nullcontext()
    manager: contextlib.AbstractAsyncContextManager[object] = conn.transaction(**options)
    return manager
