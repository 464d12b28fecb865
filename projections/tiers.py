"""Tiers: the history of every change (``partner_tier_changes``, from ledger records) and the
current tier with the gap to the next one (``partner_tiers``, from the engine's facts).

- ``partner_tier_changes``: one row per ``tier_change`` record, keyed (partner, program,
  occurred_at, seq), so "the tier as of a moment" is the last row at or before it (an index
  lookup); before the first change a partner is in the program's entry tier.
- ``partner_tiers``: per partner and program in force on the partner's latest day, the tier,
  since when, the period ends below its criteria (for grace), the next tier and, per
  criterion, what is required, what the partner has over the window and the gap. The
  writer replaces the rows of the partners a batch touched (one statement: the partner's
  programs no longer in force are removed, the others upserted only where they changed).

Both are keyed by partner first: writers of different partners never touch the same row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import msgspec

from ledger.core import Record, RecordKind
from projections.facts import Criterion, PartnerFacts
from projections.rows import Rows, Table, columns_of

if TYPE_CHECKING:
    import asyncpg

CHANGES = Table(
    "partner_tier_changes",
    key=("partner_id", "program_id", "occurred_at", "seq"),
    values=("record_id", "program_version", "from_tier", "to_tier", "summary"),
)
CURRENT = Table(
    "partner_tiers",
    key=("partner_id", "program_id"),
    values=("program_version", "tier", "since", "below_periods", "next_tier", "window_months",
            "measured_on", "criteria"),
)

_CRITERIA = msgspec.json.Encoder()
_CRITERIA_DECODER = msgspec.json.Decoder(list[Criterion])


def encode_criteria(criteria: Sequence[Criterion]) -> str:
    return _CRITERIA.encode(list(criteria)).decode()


def decode_criteria(text: str) -> list[Criterion]:
    return _CRITERIA_DECODER.decode(text)


def fold_changes(records: Iterable[Record], into: Rows | None = None) -> Rows:
    rows: Rows = {} if into is None else into
    for r in records:
        if r.kind is not RecordKind.TIER_CHANGE or r.program_id is None:
            continue
        inputs = r.explanation.inputs
        old, new = inputs.get("from"), inputs.get("to")
        rows[(r.partner_id, r.program_id, r.occurred_at, r.seq)] = (
            r.record_id, r.program_version, old if isinstance(old, str) else None,
            str(new), r.explanation.summary)
    return rows


def fold_current(facts: Iterable[PartnerFacts], into: Rows | None = None) -> Rows:
    rows: Rows = {} if into is None else into
    for f in facts:
        for t in f.tiers:
            rows[(f.partner_id, t.program_id)] = (
                t.program_version, t.tier, t.since, t.below_periods, t.next_tier,
                t.window_months, t.measured_on, encode_criteria(t.criteria))
    return rows


_INSERT_CHANGES = """
INSERT INTO partner_tier_changes (partner_id, program_id, occurred_at, seq, record_id,
                                  program_version, from_tier, to_tier, summary)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::uuid[],
                     $6::integer[], $7::text[], $8::text[], $9::text[])
ON CONFLICT DO NOTHING
"""

# One statement for the partners of a batch: drop their rows of programs no longer in
# force, upsert the others (rewriting only rows that changed, so updated_at says when).
_REPLACE_CURRENT = """
WITH new AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::integer[], $5::text[], $6::timestamptz[],
                         $7::integer[], $8::text[], $9::integer[], $10::date[], $11::text[])
        AS u(partner_id, program_id, program_version, tier, since, below_periods, next_tier,
             window_months, measured_on, criteria)
), gone AS (
    DELETE FROM partner_tiers t
    WHERE t.partner_id = ANY($1::text[])
      AND NOT EXISTS (SELECT FROM new
                      WHERE new.partner_id = t.partner_id AND new.program_id = t.program_id)
)
INSERT INTO partner_tiers AS t (partner_id, program_id, program_version, tier, since,
                                below_periods, next_tier, window_months, measured_on, criteria)
SELECT partner_id, program_id, program_version, tier, since, below_periods, next_tier,
       window_months, measured_on, criteria::jsonb
FROM new ORDER BY partner_id, program_id
ON CONFLICT (partner_id, program_id) DO UPDATE
SET program_version = EXCLUDED.program_version, tier = EXCLUDED.tier, since = EXCLUDED.since,
    below_periods = EXCLUDED.below_periods, next_tier = EXCLUDED.next_tier,
    window_months = EXCLUDED.window_months, measured_on = EXCLUDED.measured_on,
    criteria = EXCLUDED.criteria, updated_at = now()
WHERE (t.program_version, t.tier, t.since, t.below_periods, t.next_tier, t.window_months,
       t.measured_on, t.criteria)
      IS DISTINCT FROM
      (EXCLUDED.program_version, EXCLUDED.tier, EXCLUDED.since, EXCLUDED.below_periods,
       EXCLUDED.next_tier, EXCLUDED.window_months, EXCLUDED.measured_on, EXCLUDED.criteria)
"""


async def apply(conn: asyncpg.Connection, records: Sequence[Record],
                facts: Sequence[PartnerFacts]) -> None:
    changes = fold_changes(records)
    if changes:
        ordered = [k + v for k, v in sorted(changes.items())]
        await conn.execute(_INSERT_CHANGES, *columns_of(ordered, len(CHANGES.columns)))
    if facts:
        current = [k + v for k, v in sorted(fold_current(facts).items())]
        await conn.execute(_REPLACE_CURRENT, sorted({f.partner_id for f in facts}),
                           *columns_of(current, len(CURRENT.columns)))


def normalise_current(rows: Rows) -> Rows:
    """Stored rows with their criteria re-encoded (jsonb reorders keys)."""
    out: Rows = {}
    for key, values in rows.items():
        criteria = msgspec.json.decode(values[-1]) if isinstance(values[-1], str) else values[-1]
        text = encode_criteria(msgspec.convert(criteria, list[Criterion]))
        out[key] = values[:-1] + (text,)
    return out
