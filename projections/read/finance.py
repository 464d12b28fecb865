"""Program-wide figures (spend against budget, points issued and redeemed), summed over the
partners' own rows at read time; the partner directory; refused commands."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

from projections.read import cursor
from projections.read.catalog import Catalog
from projections.read.types import (
    AssetSpend,
    Partner,
    PartnerPage,
    ProgramSpend,
    RefusalPage,
    RefusedCommand,
    SpendReport,
)

if TYPE_CHECKING:
    import asyncpg

PAGE_MAX = 1_000

_SPEND = """
SELECT program_id, program_version, asset, sum(awarded)::bigint AS awarded,
       sum(returned)::bigint AS returned, sum(penalties)::bigint AS penalties,
       sum(budget_cost)::bigint AS budget_cost, count(DISTINCT partner_id) AS partners
FROM partner_spend WHERE ($1::text IS NULL OR program_id = $1)
GROUP BY program_id, program_version, asset ORDER BY program_id, program_version, asset
"""
_POINTS = """
SELECT asset, sum(earned)::bigint AS earned, sum(redeemed)::bigint AS redeemed,
       sum(expired)::bigint AS expired, sum(pending + available)::bigint AS held
FROM partner_months WHERE asset = ANY($1::text[]) GROUP BY asset
"""


async def spend(conn: asyncpg.Connection, catalog: Catalog, program_id: str | None = None
                ) -> SpendReport:
    rows = await conn.fetch(_SPEND, program_id)
    by_version: dict[tuple[str, int], list[AssetSpend]] = {}
    for r in rows:
        by_version.setdefault((r["program_id"], r["program_version"]), []).append(AssetSpend(
            asset=r["asset"], awarded=r["awarded"], returned=r["returned"],
            penalties=r["penalties"], budget_cost=r["budget_cost"], partners=r["partners"]))
    for key in catalog.programs:
        if program_id is None or key[0] == program_id:
            by_version.setdefault(key, [])
    assets = sorted({f"PTS:{pid}" for pid, _ in by_version})
    points = {r["asset"]: r for r in await conn.fetch(_POINTS, assets)}
    out = []
    for (pid, version), spent_assets in sorted(by_version.items()):
        program = catalog.programs.get((pid, version))
        currency = program.currency if program is not None else ""
        budget = program.budget if program is not None else None
        spent = sum(a.awarded - a.returned for a in spent_assets if a.asset == currency)
        spent += sum(a.budget_cost for a in spent_assets)
        p = points.get(f"PTS:{pid}")
        out.append(ProgramSpend(
            program_id=pid, program_version=version, currency=currency, budget=budget,
            spent=spent, remaining=None if budget is None else budget - spent,
            used_bp=None if not budget else spent * 10_000 // budget, assets=spent_assets,
            points_asset=f"PTS:{pid}", points_issued=p["earned"] if p else 0,
            points_redeemed=p["redeemed"] if p else 0, points_expired=p["expired"] if p else 0,
            points_outstanding=p["held"] if p else 0))
    return SpendReport(programs=out)


_PARTNERS = """
SELECT s.partner_id, p.kind, p.region, p.team, p.status, p.joined_on
FROM partner_state s LEFT JOIN partners p USING (partner_id)
WHERE s.partner_id > $1 AND ($2::text IS NULL OR p.team = $2)
ORDER BY s.partner_id LIMIT $3
"""


async def partners(conn: asyncpg.Connection, *, team: str | None = None,
                   after: str | None = None, limit: int = 100) -> PartnerPage:
    assert 1 <= limit <= PAGE_MAX
    last = cursor.decode(after, str)[0] if after else ""
    rows = await conn.fetch(_PARTNERS, last, team, limit + 1)
    page = [Partner(**dict(r)) for r in rows[:limit]]
    nxt = cursor.encode(page[-1].partner_id) if len(rows) > limit and page else None
    return PartnerPage(partners=page, next_cursor=nxt)


async def partner(conn: asyncpg.Connection, partner_id: str) -> Partner | None:
    row = await conn.fetchrow(
        """SELECT s.partner_id, p.kind, p.region, p.team, p.status, p.joined_on
           FROM partner_state s LEFT JOIN partners p USING (partner_id)
           WHERE s.partner_id = $1""", partner_id)
    return None if row is None else Partner(**dict(row))


_REFUSALS = """
SELECT event_id, partner_id, occurred_at, event_type, code, path, message
FROM partner_refusals
WHERE ($1::text IS NULL OR partner_id = $1) AND ($2::text IS NULL OR code = $2)
  AND occurred_at >= $3 AND occurred_at < $4 AND (occurred_at, event_id) > ($5, $6)
ORDER BY occurred_at, event_id LIMIT $7
"""
_EARLIEST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)


async def refusals(conn: asyncpg.Connection, *, partner_id: str | None = None,
                   code: str | None = None, start: dt.datetime | None = None,
                   end: dt.datetime | None = None, after: str | None = None,
                   limit: int = 100) -> RefusalPage:
    assert 1 <= limit <= PAGE_MAX
    at, event = (cursor.decode(after, dt.datetime, uuid.UUID) if after
                 else (_EARLIEST, uuid.UUID(int=0)))
    rows = await conn.fetch(_REFUSALS, partner_id, code, start or _EARLIEST, end or _LATEST,
                            at, event, limit + 1)
    page = [RefusedCommand(**dict(r)) for r in rows[:limit]]
    nxt = (cursor.encode(page[-1].occurred_at, str(page[-1].event_id))
           if len(rows) > limit and page else None)
    return RefusalPage(refusals=page, next_cursor=nxt)
