"""A partner's tier per program, now (with the gap to the next tier) or as of any moment
(from the tier history: the last change before it, else the program's entry tier)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from projections.read.balances import require_partner
from projections.read.catalog import Catalog
from projections.read.types import PartnerTiers, TierChange, TierHistory, TierStanding
from projections.tiers import decode_criteria

if TYPE_CHECKING:
    import asyncpg

_CURRENT = """
SELECT program_id, program_version, tier, since, below_periods, next_tier, window_months,
       measured_on, criteria::text AS criteria
FROM partner_tiers WHERE partner_id = $1 ORDER BY program_id
"""
_AS_OF = """
SELECT DISTINCT ON (program_id) program_id, program_version, to_tier, occurred_at
FROM partner_tier_changes WHERE partner_id = $1 AND occurred_at < $2
ORDER BY program_id, occurred_at DESC, seq DESC
"""
_HISTORY = """
SELECT program_id, program_version, occurred_at, seq, record_id, from_tier, to_tier, summary
FROM partner_tier_changes WHERE partner_id = $1 AND ($2::text IS NULL OR program_id = $2)
ORDER BY occurred_at, seq
"""


async def current(conn: asyncpg.Connection, partner_id: str, catalog: Catalog
                  ) -> list[TierStanding]:
    return [
        TierStanding(program_id=r["program_id"], program_version=r["program_version"],
                     tier=r["tier"], tier_name=catalog.tier_name(r["program_id"], r["tier"]),
                     since=r["since"], below_periods=r["below_periods"],
                     next_tier=r["next_tier"], window_months=r["window_months"],
                     measured_on=r["measured_on"], criteria=decode_criteria(r["criteria"]))
        for r in await conn.fetch(_CURRENT, partner_id)
    ]


async def as_of(conn: asyncpg.Connection, partner_id: str, before: dt.datetime,
                catalog: Catalog) -> list[TierStanding]:
    changed = {r["program_id"]: r for r in await conn.fetch(_AS_OF, partner_id, before)}
    day = (before - dt.timedelta(microseconds=1)).date()
    out = []
    for program_id in sorted(catalog.newest()):
        row = changed.get(program_id)
        if row is not None:
            out.append(TierStanding(
                program_id=program_id, program_version=row["program_version"],
                tier=row["to_tier"], tier_name=catalog.tier_name(program_id, row["to_tier"]),
                since=row["occurred_at"]))
            continue
        entry = catalog.entry_tier(program_id, day)
        if entry is not None:
            out.append(TierStanding(program_id=program_id, program_version=entry[0],
                                    tier=entry[1], tier_name=catalog.tier_name(program_id,
                                                                               entry[1]),
                                    since=None))
    return out


async def tiers(conn: asyncpg.Connection, partner_id: str, before: dt.datetime | None,
                catalog: Catalog, as_of_text: str | None = None) -> PartnerTiers:
    await require_partner(conn, partner_id)
    found = (await current(conn, partner_id, catalog) if before is None
             else await as_of(conn, partner_id, before, catalog))
    return PartnerTiers(partner_id=partner_id, as_of=as_of_text, counted_before=before,
                        tiers=found)


async def history(conn: asyncpg.Connection, partner_id: str, program_id: str | None = None
                  ) -> TierHistory:
    await require_partner(conn, partner_id)
    rows = await conn.fetch(_HISTORY, partner_id, program_id)
    return TierHistory(partner_id=partner_id, changes=[TierChange(**dict(r)) for r in rows])
