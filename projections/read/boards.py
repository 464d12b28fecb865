"""Leaderboards and team standings over a month, quarter or year: sums of the partners'
month rows (``partner_activity``) ranked at read time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.asof import Span, months_in
from projections.read import cursor
from projections.read.types import BoardEntry, Leaderboard, TeamStanding, TeamStandings

if TYPE_CHECKING:
    import asyncpg

METRICS = ("net_sales", "units", "new_customers")
BOARD_MAX = 1_000

_BOARD = """
SELECT a.partner_id, p.team, sum(a.value)::bigint AS value, max(a.reached_at) AS reached_at
FROM partner_activity a LEFT JOIN partners p USING (partner_id)
WHERE a.month = ANY($1::date[]) AND a.metric = $2 AND a.currency = $3
GROUP BY a.partner_id, p.team
ORDER BY value DESC, reached_at ASC NULLS LAST, a.partner_id
OFFSET $4 LIMIT $5
"""
_TEAMS = """
SELECT p.team, count(DISTINCT p.partner_id) AS members, coalesce(sum(a.value), 0)::bigint AS value
FROM partners p
LEFT JOIN partner_activity a ON a.partner_id = p.partner_id AND a.month = ANY($1::date[])
     AND a.metric = $2 AND a.currency = $3
WHERE p.team IS NOT NULL
GROUP BY p.team ORDER BY value DESC, p.team
"""


def currency_of(metric: str, currency: str) -> str:
    return "" if metric == "new_customers" else currency


async def leaderboard(conn: asyncpg.Connection, period: Span, metric: str, currency: str, *,
                      after: str | None = None, limit: int = 100) -> Leaderboard:
    assert metric in METRICS and 1 <= limit <= BOARD_MAX
    currency = currency_of(metric, currency)
    offset = cursor.decode(after, int)[0] if after else 0
    rows = await conn.fetch(_BOARD, months_in(period), metric, currency, offset, limit + 1)
    entries = [BoardEntry(rank=offset + i + 1, partner_id=r["partner_id"], team=r["team"],
                          value=r["value"], reached_at=r["reached_at"])
               for i, r in enumerate(rows[:limit])]
    nxt = cursor.encode(offset + limit) if len(rows) > limit else None
    return Leaderboard(period=period.label, metric=metric, currency=currency, entries=entries,
                       next_cursor=nxt)


async def teams(conn: asyncpg.Connection, period: Span, metric: str, currency: str
                ) -> TeamStandings:
    assert metric in METRICS
    currency = currency_of(metric, currency)
    rows = await conn.fetch(_TEAMS, months_in(period), metric, currency)
    return TeamStandings(period=period.label, metric=metric, currency=currency, teams=[
        TeamStanding(rank=i + 1, team=r["team"], members=r["members"], value=r["value"],
                     average=r["value"] // r["members"]) for i, r in enumerate(rows)])
