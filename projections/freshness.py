"""Freshness: ``partition_freshness``, the newest event time applied per source partition.

Finance asks "how current are these figures": per (topic, partition), the latest
``occurred_at`` of an applied input, the highest offset applied and how many inputs were
applied. One row per partition, written only by the writer that holds the partition (a
parked event released by its partner's registration counts for the partition it came in
on), so writers do not share rows. A rebuild folds the inbox, which stores the same three
things for every accepted input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from projections.facts import Source
from projections.rows import Rows, Table, columns_of

if TYPE_CHECKING:
    import asyncpg

TABLE = Table(
    "partition_freshness",
    key=("topic", "partition"),
    values=("newest_event_at", "last_offset", "applied"),
)


def fold(sources: Iterable[Source], into: Rows | None = None) -> Rows:
    rows: Rows = {} if into is None else into
    for s in sources:
        key = (s.topic, s.partition)
        was = rows.get(key)
        if was is None:
            rows[key] = (s.occurred_at, s.offset, 1)
        else:
            rows[key] = (max(was[0], s.occurred_at), max(was[1], s.offset), was[2] + 1)
    return rows


_UPSERT = """
INSERT INTO partition_freshness AS f (topic, partition, newest_event_at, last_offset, applied)
SELECT * FROM unnest($1::text[], $2::integer[], $3::timestamptz[], $4::bigint[], $5::bigint[])
ON CONFLICT (topic, partition) DO UPDATE
SET newest_event_at = greatest(f.newest_event_at, EXCLUDED.newest_event_at),
    last_offset = greatest(f.last_offset, EXCLUDED.last_offset),
    applied = f.applied + EXCLUDED.applied, updated_at = now()
"""

# The same fold over the inbox (every accepted input, where it came in).
EXPECTED = """
SELECT topic, partition, max(occurred_at), max(kafka_offset), count(*)
FROM inbox GROUP BY topic, partition
"""


async def apply(conn: asyncpg.Connection, sources: Sequence[Source]) -> None:
    rows = fold(sources)
    if rows:
        ordered = [k + v for k, v in sorted(rows.items())]
        await conn.execute(_UPSERT, *columns_of(ordered, len(TABLE.columns)))


async def expected(conn: asyncpg.Connection) -> Rows:
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in await conn.fetch(EXPECTED)}
