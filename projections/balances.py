"""Partner balances per asset and month: ``partner_months``.

One row per (partner, asset, calendar month of ``occurred_at`` in UTC) that some record
posted to the partner's own accounts in. It holds the month's net change of
``partner:<id>:pending`` and ``partner:<id>:available`` and the same movements by kind:

=============  ==================================================================
``earned``     accruals (what programs awarded), pending or available
``released``   hold releases (pending -> available; no change of the total)
``paid``       payouts, as a positive figure
``redeemed``   redemptions (points, awards), positive
``expired``    points and funds that lapsed, positive
``clawed_back`` clawbacks of what reversed sales earned, positive
``penalties``  negative incentives charged, positive
``adjusted``   manual corrections, signed
``reversed``   reversal records, signed
=============  ==================================================================

so that ``pending + available = earned - paid - redeemed - expired - clawed_back - penalties
+ adjusted + reversed`` for every row (`check_row` asserts it).

Why months: a balance "as of" any moment is the sum of the months before that moment's
month plus the records of its own month up to the moment (projections/read/balances.py), so
a point-in-time balance reads a few dozen rows and at most one month of one partner's
records, never the ledger; a current balance and a statement's opening balance are sums of
rows. Every row belongs to one partner (partner_id leads the key), so writers of different
partners never touch the same row; shared accounts (program expense, payout clearing, ...)
have no rows here at all: finance's program-wide figures are sums over partners at read
time.

The writer adds a batch's records with one upsert (`apply`); the rebuild folds the whole
ledger with the same `fold`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from ledger.core import Posting, RecordKind
from projections.rows import Rows, Table, columns_of

if TYPE_CHECKING:
    import asyncpg

TABLE = Table(
    "partner_months",
    key=("partner_id", "asset", "month"),
    values=("pending", "available", "earned", "released", "paid", "redeemed", "expired",
            "clawed_back", "penalties", "adjusted", "reversed", "records"),
)
FIGURES = TABLE.values[:-1]
# Where each kind's net change of the partner's total goes, and with which sign.
_KIND_COLUMN: dict[RecordKind, tuple[int, int]] = {
    RecordKind.ACCRUAL: (FIGURES.index("earned"), 1),
    RecordKind.PAYOUT: (FIGURES.index("paid"), -1),
    RecordKind.REDEMPTION: (FIGURES.index("redeemed"), -1),
    RecordKind.EXPIRY: (FIGURES.index("expired"), -1),
    RecordKind.CLAWBACK: (FIGURES.index("clawed_back"), -1),
    RecordKind.PENALTY: (FIGURES.index("penalties"), -1),
    RecordKind.ADJUSTMENT: (FIGURES.index("adjusted"), 1),
    RecordKind.REVERSAL: (FIGURES.index("reversed"), 1),
}
_RELEASED = FIGURES.index("released")


def month_of(moment: dt.datetime) -> dt.date:
    """The first day of the UTC calendar month of ``moment``."""
    utc = moment.astimezone(dt.UTC)
    return dt.date(utc.year, utc.month, 1)


class Posted(Protocol):
    """What the fold reads of a record (``ledger.core.Record`` is one)."""

    @property
    def partner_id(self) -> str: ...

    @property
    def kind(self) -> RecordKind: ...

    @property
    def occurred_at(self) -> dt.datetime: ...

    @property
    def postings(self) -> Sequence[Posting]: ...


def partner_movements(record: Posted) -> dict[str, tuple[int, int]]:
    """Per asset, what ``record`` changed of its partner's (pending, available)."""
    pending = f"partner:{record.partner_id}:pending"
    available = f"partner:{record.partner_id}:available"
    out: dict[str, tuple[int, int]] = {}
    for p in record.postings:
        if p.account == pending:
            was = out.get(p.asset, (0, 0))
            out[p.asset] = (was[0] + p.amount, was[1])
        elif p.account == available:
            was = out.get(p.asset, (0, 0))
            out[p.asset] = (was[0], was[1] + p.amount)
    return out


def fold(records: Iterable[Posted], into: Rows | None = None) -> Rows:
    """Add the records' movements to ``into`` (a new dict when None) and return it."""
    rows: Rows = {} if into is None else into
    for record in records:
        month = month_of(record.occurred_at)
        for asset, (pending, available) in partner_movements(record).items():
            key = (record.partner_id, asset, month)
            figures = list(rows.get(key, (0,) * len(TABLE.values)))
            figures[0] += pending
            figures[1] += available
            column = _KIND_COLUMN.get(record.kind)
            if column is not None:
                figures[column[0]] += column[1] * (pending + available)
            elif record.kind is RecordKind.HOLD_RELEASE:
                figures[_RELEASED] += available
            figures[-1] += 1
            rows[key] = tuple(figures)
    return rows


def check_row(values: tuple[int, ...]) -> bool:
    """The row's kinds add up to its net change."""
    f = dict(zip(TABLE.values, values, strict=True))
    total = (f["earned"] - f["paid"] - f["redeemed"] - f["expired"] - f["clawed_back"]
             - f["penalties"] + f["adjusted"] + f["reversed"])
    return total == f["pending"] + f["available"]


_ADD = ", ".join(f"{c} = m.{c} + EXCLUDED.{c}" for c in TABLE.values)
_UPSERT = f"""
INSERT INTO partner_months AS m ({', '.join(TABLE.columns)})
SELECT * FROM unnest($1::text[], $2::text[], $3::date[],
    {', '.join(f'${i}::bigint[]' for i in range(4, 4 + len(TABLE.values)))})
ON CONFLICT (partner_id, asset, month) DO UPDATE SET {_ADD}
"""


async def apply(conn: asyncpg.Connection, records: Iterable[Posted]) -> int:
    """Add a batch's records to the stored months: one statement, rows in key order."""
    rows = fold(records)
    if rows:
        ordered = [k + v for k, v in sorted(rows.items())]
        await conn.execute(_UPSERT, *columns_of(ordered, len(TABLE.columns)))
    return len(rows)
