"""The tier projection: ``partner_tiers``, each partner's current tier per program.

The engine keeps a partner's tiers in its state (``PartnerState.tiers``: program id ->
tier and since when), stored in ``partner_state`` with the records that changed them. In the
batch's transaction the ledger stage hands `apply` the states of the partners the batch
touched; for those partners the table then holds exactly their ``tiers``: new and changed
entries are upserted, and a row whose entry is gone from the state is deleted. Rows that did
not change are left alone, so ``updated_at`` says when a tier last changed here.

Nothing here imports the engine (projections never import processors): a state is anything
with a ``tiers`` mapping of objects with ``tier`` and ``since`` (`TieredState`), which
``PartnerState`` is.

Rebuild and check: `EXPECTED` reads the tiers out of every stored ``partner_state`` in SQL;
`rebuild` replaces the table with it and `compare` diffs the table against it.

Writers never contend here: a partner's rows are written only by the writer that holds
that partner's ``partner_state`` row lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    import asyncpg

TierKey = tuple[str, str]  # (partner_id, program_id)


class TierLike(Protocol):
    @property
    def tier(self) -> str: ...

    @property
    def since(self) -> datetime: ...


class TieredState(Protocol):
    @property
    def tiers(self) -> Mapping[str, TierLike]: ...


class Tier(NamedTuple):
    tier: str
    since: datetime


class TierRow(NamedTuple):
    partner_id: str
    program_id: str
    tier: str
    since: datetime


class TierDifference(NamedTuple):
    """A partner's tier in a program as stored and as the partner's state has it; None where
    that side has no tier."""

    partner_id: str
    program_id: str
    stored: Tier | None
    expected: Tier | None


def tier_rows(states: Mapping[str, TieredState]) -> list[TierRow]:
    """The rows the table must hold for these partners, in (partner, program) order."""
    rows = []
    for partner_id in sorted(states):
        tiers = states[partner_id].tiers
        for program_id in sorted(tiers):
            entry = tiers[program_id]
            # A naive time would be read as the session's time zone by PostgreSQL.
            assert entry.since.utcoffset() is not None, (
                f"tier since of partner {partner_id!r} in program {program_id!r} has no "
                f"time zone: {entry.since!r}"
            )
            rows.append(TierRow(partner_id, program_id, entry.tier, entry.since))
    return rows


def compare(
    stored: Mapping[TierKey, Tier], expected: Mapping[TierKey, Tier]
) -> list[TierDifference]:
    """Every (partner, program) whose stored tier or since differs from the expected one,
    or that only one side has, in key order."""
    differences = []
    for partner_id, program_id in sorted(stored.keys() | expected.keys()):
        was = stored.get((partner_id, program_id))
        should = expected.get((partner_id, program_id))
        if was != should:
            differences.append(TierDifference(partner_id, program_id, was, should))
    return differences


# The partners' rows that their states no longer have.
_DELETE_GONE = """
DELETE FROM partner_tiers t
WHERE t.partner_id = ANY($1::text[])
  AND NOT EXISTS (
      SELECT FROM unnest($2::text[], $3::text[]) AS k(partner_id, program_id)
      WHERE k.partner_id = t.partner_id AND k.program_id = t.program_id)
"""
_UPSERT = """
INSERT INTO partner_tiers AS t (partner_id, program_id, tier, since)
SELECT u.partner_id, u.program_id, u.tier, u.since
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
    WITH ORDINALITY AS u(partner_id, program_id, tier, since, n)
ORDER BY u.n
ON CONFLICT (partner_id, program_id) DO UPDATE
SET tier = EXCLUDED.tier, since = EXCLUDED.since, updated_at = now()
WHERE (t.tier, t.since) IS DISTINCT FROM (EXCLUDED.tier, EXCLUDED.since)
"""

# The tiers of every stored partner state (the JSON of PartnerState, see
# processors/engine/state.py); a partner row without a state yet has none.
EXPECTED = """
SELECT s.partner_id, t.key AS program_id, t.value ->> 'tier' AS tier,
       (t.value ->> 'since')::timestamptz AS since
FROM partner_state s
CROSS JOIN LATERAL jsonb_each(coalesce(s.state -> 'tiers', '{}'::jsonb)) AS t
"""

_REBUILD = f"""
INSERT INTO partner_tiers (partner_id, program_id, tier, since)
SELECT e.partner_id, e.program_id, e.tier, e.since FROM ({EXPECTED}) e
"""


async def apply(conn: asyncpg.Connection, states: Mapping[str, TieredState]) -> int:
    """Make the table hold exactly these partners' tiers; return the rows they have."""
    if not states:
        return 0
    rows = tier_rows(states)
    await conn.execute(
        _DELETE_GONE, sorted(states), [r.partner_id for r in rows], [r.program_id for r in rows]
    )
    if rows:
        await conn.execute(
            _UPSERT,
            [r.partner_id for r in rows],
            [r.program_id for r in rows],
            [r.tier for r in rows],
            [r.since for r in rows],
        )
    return len(rows)


async def rebuild(conn: asyncpg.Connection) -> int:
    """Replace the table with the tiers of every partner state; return the rows written.
    The caller holds the table lock (see projections.check.rebuild)."""
    await conn.execute("DELETE FROM partner_tiers")
    status: str = await conn.execute(_REBUILD)
    return int(status.rsplit(" ", 1)[1])  # "INSERT 0 <rows>"


async def stored(conn: asyncpg.Connection) -> dict[TierKey, Tier]:
    rows = await conn.fetch("SELECT partner_id, program_id, tier, since FROM partner_tiers")
    return _by_key(rows)


async def expected(conn: asyncpg.Connection) -> dict[TierKey, Tier]:
    return _by_key(await conn.fetch(EXPECTED))


def _by_key(rows: list[asyncpg.Record]) -> dict[TierKey, Tier]:
    return {(r["partner_id"], r["program_id"]): Tier(r["tier"], r["since"]) for r in rows}
