"""What leaderboards and team standings rank: ``partner_activity`` and ``partners``.

- ``partner_activity``: per partner, month, metric and currency, the value the engine counts
  (net sales and units per currency, new customers) and when it last changed. A
  leaderboard of a month, quarter or year is the sum of a period's months per partner,
  ordered at read time; rows are per partner, so writers never share one.
- ``partners``: the directory (kind, region, team, status, joined_on) from the partners'
  registrations and updates; team standings sum the members' activity at read time.

Both come from the engine's facts (`projections.facts`), not from ledger records: no
record says what a partner sold. The engine forgets months older than its window
(``activity_from``); the rows of those months stay here as history, and a rebuild keeps them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from projections.facts import PartnerFacts
from projections.rows import Rows, Table, columns_of

if TYPE_CHECKING:
    import asyncpg

ACTIVITY = Table(
    "partner_activity",
    key=("partner_id", "month", "metric", "currency"),
    values=("value", "reached_at"),
)
PARTNERS = Table(
    "partners",
    key=("partner_id",),
    values=("kind", "region", "team", "status", "joined_on"),
)


def month_start(key: str) -> dt.date:
    year, month = key.split("-")
    return dt.date(int(year), int(month), 1)


def fold_activity(facts: Iterable[PartnerFacts], into: Rows | None = None) -> Rows:
    rows: Rows = {} if into is None else into
    for f in facts:
        for a in f.activity:
            rows[(f.partner_id, month_start(a.month), a.metric, a.currency)] = (
                a.value, a.reached_at)
    return rows


def fold_partners(facts: Iterable[PartnerFacts], into: Rows | None = None) -> Rows:
    rows: Rows = {} if into is None else into
    for f in facts:
        p = f.profile
        if p is not None:
            rows[(f.partner_id,)] = (p.kind, p.region, p.team, p.status, p.joined_on)
    return rows


def remembered(facts: Iterable[PartnerFacts]) -> dict[str, dt.date]:
    """Per partner, the first month the engine still remembers."""
    return {f.partner_id: month_start(f.activity_from) for f in facts if f.activity_from}


_UPSERT_ACTIVITY = """
INSERT INTO partner_activity AS a (partner_id, month, metric, currency, value, reached_at)
SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::bigint[],
                     $6::timestamptz[])
ON CONFLICT (partner_id, month, metric, currency) DO UPDATE
SET value = EXCLUDED.value, reached_at = EXCLUDED.reached_at
WHERE (a.value, a.reached_at) IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.reached_at)
"""
_UPSERT_PARTNERS = """
INSERT INTO partners AS p (partner_id, kind, region, team, status, joined_on)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[])
ON CONFLICT (partner_id) DO UPDATE
SET kind = EXCLUDED.kind, region = EXCLUDED.region, team = EXCLUDED.team,
    status = EXCLUDED.status, joined_on = EXCLUDED.joined_on, updated_at = now()
WHERE (p.kind, p.region, p.team, p.status, p.joined_on) IS DISTINCT FROM
      (EXCLUDED.kind, EXCLUDED.region, EXCLUDED.team, EXCLUDED.status, EXCLUDED.joined_on)
"""


async def apply(conn: asyncpg.Connection, facts: Sequence[PartnerFacts]) -> None:
    for rows, table, sql in ((fold_activity(facts), ACTIVITY, _UPSERT_ACTIVITY),
                             (fold_partners(facts), PARTNERS, _UPSERT_PARTNERS)):
        if rows:
            ordered = [k + v for k, v in sorted(rows.items())]
            await conn.execute(sql, *columns_of(ordered, len(table.columns)))
