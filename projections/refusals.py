"""Refused commands: ``partner_refusals``, what finance sent that the rules refused.

The writer hands over the batch's refusals (`projections.facts.Refusal`); the rows are keyed
by partner, then event id. A rebuild takes them from the refusals the writer stored with
the batch (processors/outbox/refusals.py owns that outbox and hands them over typed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from projections.facts import Refusal
from projections.rows import Rows, Table, columns_of

if TYPE_CHECKING:
    import asyncpg

TABLE = Table(
    "partner_refusals",
    key=("partner_id", "event_id"),
    values=("occurred_at", "event_type", "code", "path", "message"),
)


def fold(refusals: Iterable[Refusal], into: Rows | None = None) -> Rows:
    rows: Rows = {} if into is None else into
    for r in refusals:
        rows[(r.partner_id, r.event_id)] = (r.occurred_at, r.event_type, r.code, r.path,
                                            r.message)
    return rows


_INSERT = """
INSERT INTO partner_refusals (partner_id, event_id, occurred_at, event_type, code, path, message)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[],
                     $6::text[], $7::text[])
ON CONFLICT DO NOTHING
"""


async def apply(conn: asyncpg.Connection, refusals: Sequence[Refusal]) -> None:
    rows = fold(refusals)
    if rows:
        ordered = [k + v for k, v in sorted(rows.items())]
        await conn.execute(_INSERT, *columns_of(ordered, len(TABLE.columns)))
