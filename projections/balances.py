"""The balance projection: ``account_balances``, the running sum of postings per (account, asset).

Finance reads current balances here without scanning the ledger. The table is kept in step
by the ledger stage: in the batch's transaction, right after the batch's records are
appended, `apply` adds what those records posted. `balance_deltas` (pure) sums them per
(account, asset) in Python, so that one statement upserts each pair once with
``amount = account_balances.amount + EXCLUDED.amount``, whatever the batch's size.

Deadlocks. Shared accounts (``program:<id>:expense``, ``payout:clearing``, ...) are written
by every writer, whatever its partners. The deltas go to PostgreSQL sorted by (account,
asset) in code point order, which is the order of the table's ``COLLATE "C"`` key, and are
inserted in that order; every writer therefore takes these row locks in the same order and
two writers cannot wait for each other in a cycle. A writer waits, at worst, until the
other one commits.

Rebuild and check. `EXPECTED` is the fold of every posting in SQL (the same sum as
``ledger.store.read.balances`` and ``ledger.balances.fold``): `rebuild` replaces the table
with it, `expected` reads it for `compare`. A row exists for every pair ever posted to, also
when its sum is back to zero; `compare` treats a missing row and a zero row alike, as
``ledger.balances.fold`` leaves zero balances out.

Sums. A posting is an int64, and so is what one batch adds to one pair (``balance_deltas``);
the stored sum is numeric (migration 0010), since shared accounts sum every partner's
postings and no bound on a partner's accounts bounds that.

``last_record_id`` is provenance: the record that last moved the balance. Live, that is the
last record of the last batch that posted to it; a rebuild takes the last by (recorded_at,
partner_id, seq), since the ledger does not store the order batches committed in. The two
can name different records when events arrived out of event-time order, so `compare` does
not look at it.

The module does no I/O of its own beyond the connection it is given and imports asyncpg
only for type checking: the folds are importable and testable without a driver.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from ledger.balances import BalanceKey, Balances
from ledger.core import INT64_MAX, INT64_MIN, Record

if TYPE_CHECKING:
    import asyncpg


class BalanceDelta(NamedTuple):
    """What one batch posted to one (account, asset), and the last record that did."""

    account: str
    asset: str
    amount: int
    last_record_id: uuid.UUID


class BalanceDifference(NamedTuple):
    """A balance whose stored value is not what a rebuild from the ledger gives.

    A missing row counts as 0 on either side."""

    account: str
    asset: str
    stored: int
    expected: int


def balance_deltas(records: Iterable[Record]) -> list[BalanceDelta]:
    """The postings of `records` summed per (account, asset), in (account, asset) code point
    order. A pair whose postings cancel out is kept, with amount 0: it was posted to, so it
    has a row, as a rebuild gives it one."""
    sums: dict[BalanceKey, int] = {}
    last: dict[BalanceKey, uuid.UUID] = {}
    for record in records:
        for posting in record.postings:
            key = (posting.account, posting.asset)
            sums[key] = sums.get(key, 0) + posting.amount
            last[key] = record.record_id
    deltas = [BalanceDelta(key[0], key[1], sums[key], last[key]) for key in sorted(sums)]
    for delta in deltas:
        # Each posting is an int64; a batch summing beyond it is a bug upstream, not data.
        assert INT64_MIN <= delta.amount <= INT64_MAX, f"delta out of int64 range: {delta}"
    return deltas


def compare(
    stored: Mapping[BalanceKey, int], expected: Mapping[BalanceKey, int]
) -> list[BalanceDifference]:
    """Every (account, asset) whose stored amount differs from the expected one, in key
    order; an absent key is 0, so zero rows and missing rows are alike."""
    differences = []
    for account, asset in sorted(stored.keys() | expected.keys()):
        was = stored.get((account, asset), 0)
        should = expected.get((account, asset), 0)
        if was != should:
            differences.append(BalanceDifference(account, asset, was, should))
    return differences


# One row per (account, asset), in the order given (sorted by the caller): see the module
# docstring on deadlocks.
_UPSERT = """
INSERT INTO account_balances AS b (account, asset, amount, last_record_id)
SELECT u.account, u.asset, u.amount, u.last_record_id
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::uuid[])
    WITH ORDINALITY AS u(account, asset, amount, last_record_id, n)
ORDER BY u.n
ON CONFLICT (account, asset) DO UPDATE
SET amount = b.amount + EXCLUDED.amount, last_record_id = EXCLUDED.last_record_id,
    updated_at = now()
"""

# The fold of every posting; sum(bigint) is numeric, so the sum itself cannot overflow.
EXPECTED = """
SELECT account, asset, sum(amount) AS amount FROM ledger_postings GROUP BY account, asset
"""

_REBUILD = f"""
INSERT INTO account_balances (account, asset, amount, last_record_id)
SELECT s.account, s.asset, s.amount, l.record_id
FROM ({EXPECTED}) s
JOIN (SELECT DISTINCT ON (p.account, p.asset) p.account, p.asset, p.record_id
      FROM ledger_postings p JOIN ledger_records r USING (record_id)
      ORDER BY p.account, p.asset, r.recorded_at DESC, r.partner_id DESC, r.seq DESC) l
  USING (account, asset)
"""


async def apply(conn: asyncpg.Connection, records: Sequence[Record]) -> int:
    """Add what `records` posted to the stored balances; return the rows upserted."""
    deltas = balance_deltas(records)
    if deltas:
        await conn.execute(
            _UPSERT,
            [d.account for d in deltas],
            [d.asset for d in deltas],
            [d.amount for d in deltas],
            [d.last_record_id for d in deltas],
        )
    return len(deltas)


async def rebuild(conn: asyncpg.Connection) -> int:
    """Replace the table with the fold of the ledger; return the rows written. The caller
    holds the table lock (see projections.check.rebuild)."""
    await conn.execute("DELETE FROM account_balances")
    status: str = await conn.execute(_REBUILD)
    return int(status.rsplit(" ", 1)[1])  # "INSERT 0 <rows>"


async def stored(conn: asyncpg.Connection) -> Balances:
    rows = await conn.fetch("SELECT account, asset, amount FROM account_balances")
    return {(row["account"], row["asset"]): int(row["amount"]) for row in rows}


async def expected(conn: asyncpg.Connection) -> Balances:
    """The fold of the ledger, without zero balances (as ledger.balances.fold gives it)."""
    rows = await conn.fetch(EXPECTED)
    return {
        (row["account"], row["asset"]): int(row["amount"]) for row in rows if row["amount"] != 0
    }
