"""Balances, statements and ledger lines of one partner, at any moment.

A balance as of a moment sums the partner's month rows before that moment's month
(``partner_months``) and folds the records of its own month up to the moment
(``ledger.store.partner_movements``); when the moment is a month boundary no record is
read at all. A statement is the balance at its start and at its end, per asset, and every
record in between as a line (``ledger.store.partner_records``), paged by (occurred_at, seq).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ledger import store
from ledger.core import Record
from projections import balances as months
from projections.asof import Span, month_start
from projections.read import cursor
from projections.read.types import (
    AssetBalance,
    Figures,
    Line,
    Movement,
    PartnerBalances,
    RecordPage,
    Statement,
    StatementAsset,
)
from projections.rows import Rows

if TYPE_CHECKING:
    import asyncpg

LINES_MAX = 10_000
_ONE_US = dt.timedelta(microseconds=1)
_FIGURES = months.TABLE.values[:-1]  # every column but the record count
_SUMS = ", ".join(f"sum({c})::bigint AS {c}" for c in _FIGURES)
_MONTHS_BEFORE = f"""
SELECT asset, {_SUMS} FROM partner_months
WHERE partner_id = $1 AND ($2::date IS NULL OR month < $2)
GROUP BY asset ORDER BY asset
"""


class UnknownPartner(LookupError):
    def __init__(self, partner_id: str) -> None:
        self.partner_id = partner_id
        super().__init__(f"unknown partner {partner_id!r}: the ledger has no such partner")


async def require_partner(conn: asyncpg.Connection, partner_id: str) -> None:
    if not await store.partner_exists(conn, partner_id):
        raise UnknownPartner(partner_id)


async def figures(conn: asyncpg.Connection, partner_id: str, before: dt.datetime | None
                  ) -> dict[str, tuple[int, ...]]:
    """Per asset, the month-row columns summed over every record with ``occurred_at <
    before`` (all records when None)."""
    if before is None:
        rows = await conn.fetch(_MONTHS_BEFORE, partner_id, None)
        return {r["asset"]: tuple(int(r[c]) for c in _FIGURES) for r in rows}
    month = month_start(before - _ONE_US)
    whole = before == _next_month(month)
    upto = _next_month(month) if whole else month
    rows = await conn.fetch(_MONTHS_BEFORE, partner_id, upto.date())
    out = {r["asset"]: tuple(int(r[c]) for c in _FIGURES) for r in rows}
    if not whole:
        partial: Rows = months.fold(await store.partner_movements(conn, partner_id, month,
                                                                  before))
        for (_, asset, _), values in partial.items():
            was = out.get(asset, (0,) * len(_FIGURES))
            out[asset] = tuple(a + b for a, b in zip(was, values[:-1], strict=True))
    return out


def _next_month(month: dt.datetime) -> dt.datetime:
    return (month + dt.timedelta(days=32)).replace(day=1)


def to_figures(values: Sequence[int]) -> Figures:
    f = dict(zip(_FIGURES, values, strict=True))
    return Figures(total=f["pending"] + f["available"], **f)


async def balances(conn: asyncpg.Connection, partner_id: str, before: dt.datetime | None,
                   as_of: str | None = None) -> PartnerBalances:
    found = await figures(conn, partner_id, before)
    if not found:  # no movement yet, or no such partner: only then a second look
        await require_partner(conn, partner_id)
    return PartnerBalances(
        partner_id=partner_id, as_of=as_of, counted_before=before,
        balances=[AssetBalance(asset=a, figures=to_figures(v)) for a, v in sorted(found.items())])


def line(record: Record) -> Line:
    e = record.explanation
    moved = months.partner_movements(record)
    return Line(
        seq=record.seq, record_id=record.record_id, occurred_at=record.occurred_at,
        recorded_at=record.recorded_at, kind=record.kind.value, program_id=record.program_id,
        program_version=record.program_version, rule_id=record.rule_id, summary=e.summary,
        formula=e.formula, inputs=dict(e.inputs), author=e.author, reason=e.reason,
        related_record_ids=list(e.related_record_ids),
        source_event_ids=list(record.source_event_ids),
        movements=[Movement(asset=a, pending=p, available=v, total=p + v)
                   for a, (p, v) in sorted(moved.items())])


async def lines(conn: asyncpg.Connection, partner_id: str, start: dt.datetime,
                end: dt.datetime, after: str | None, limit: int) -> tuple[list[Line], str | None]:
    assert 1 <= limit <= LINES_MAX
    key = cursor.decode(after, dt.datetime, int) if after else None
    records = await store.partner_records(conn, partner_id, start, end,
                                          after=key, limit=limit + 1)
    page = records[:limit]
    more = len(records) > limit
    nxt = cursor.encode(page[-1].occurred_at, page[-1].seq) if more and page else None
    return [line(r) for r in page], nxt


async def statement(conn: asyncpg.Connection, partner_id: str, span: Span, *,
                    after: str | None = None, limit: int = LINES_MAX) -> Statement:
    await require_partner(conn, partner_id)
    opening = await figures(conn, partner_id, span.start)
    closing = await figures(conn, partner_id, span.end)
    zero = (0,) * len(_FIGURES)
    assets = []
    for asset in sorted(opening.keys() | closing.keys()):
        o, c = opening.get(asset, zero), closing.get(asset, zero)
        assets.append(StatementAsset(asset=asset, opening=to_figures(o), closing=to_figures(c),
                                     change=to_figures([b - a for a, b in zip(o, c,
                                                                              strict=True)])))
    page, nxt = await lines(conn, partner_id, span.start, span.end, after, limit)
    return Statement(partner_id=partner_id, period=span.label, start=span.start, end=span.end,
                     assets=assets, lines=page, next_cursor=nxt)


async def records(conn: asyncpg.Connection, partner_id: str, start: dt.datetime | None,
                  end: dt.datetime | None, *, after: str | None = None, limit: int = 100
                  ) -> RecordPage:
    await require_partner(conn, partner_id)
    lo = start or dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    hi = end or dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
    page, nxt = await lines(conn, partner_id, lo, hi, after, limit)
    return RecordPage(partner_id=partner_id, start=start, end=end, records=page,
                      next_cursor=nxt)
