"""What became of the messages consumed: the dead-letter summary and the reconciliation.

These read, and never write, tables that the intake stage owns (``dead_letters``,
``ingest_log``, ``consumer_positions``; processors/intake/store.py and
processors/intake/consumer_positions.py) and the read side's own ``partition_freshness``:
finance asks the API, which must not import the processors. Kafka's end offsets are not read
here (the API talks to PostgreSQL only): ``incentives reconcile`` adds what is still pending
on the broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.read.types import (
    DeadLetterCount,
    DeadLetterSummary,
    PartitionState,
    Reconciliation,
)

if TYPE_CHECKING:
    import asyncpg

_DEAD = """
SELECT topic, code, count(*) AS count, count(*) FILTER (WHERE published_at IS NULL)
       AS unpublished, min(received_at) AS first_received_at,
       max(received_at) AS last_received_at
FROM dead_letters GROUP BY topic, code ORDER BY topic, code
"""
_OUTCOMES = """
SELECT l.topic, l.partition, count(*) FILTER (WHERE l.outcome = 'applied') AS applied,
       count(*) FILTER (WHERE l.outcome = 'duplicate') AS duplicates,
       count(*) FILTER (WHERE l.outcome = 'dead_lettered') AS dead_lettered,
       count(*) FILTER (WHERE l.outcome = 'parked') AS parked
FROM ingest_log l GROUP BY l.topic, l.partition
"""
_POSITIONS = """
SELECT topic, partition, next_offset FROM consumer_positions WHERE group_id = $1
"""
_FRESH = "SELECT topic, partition, newest_event_at FROM partition_freshness"


async def dead_letters(conn: asyncpg.Connection) -> DeadLetterSummary:
    rows = [DeadLetterCount(**dict(r)) for r in await conn.fetch(_DEAD)]
    return DeadLetterSummary(total=sum(r.count for r in rows), by_topic_and_code=rows)


async def reconciliation(conn: asyncpg.Connection, group: str) -> Reconciliation:
    outcomes = {(r["topic"], r["partition"]): r for r in await conn.fetch(_OUTCOMES)}
    positions = {(r["topic"], r["partition"]): r["next_offset"]
                 for r in await conn.fetch(_POSITIONS, group)}
    fresh = {(r["topic"], r["partition"]): r["newest_event_at"]
             for r in await conn.fetch(_FRESH)}
    parts = []
    for key in sorted(outcomes.keys() | positions.keys()):
        o = outcomes.get(key)
        parts.append(PartitionState(
            topic=key[0], partition=key[1], position=positions.get(key),
            newest_event_at=fresh.get(key), applied=o["applied"] if o else 0,
            duplicates=o["duplicates"] if o else 0,
            dead_lettered=o["dead_lettered"] if o else 0, parked=o["parked"] if o else 0))
    consumed = sum(p.position or 0 for p in parts)
    totals = [sum(getattr(p, f) for p in parts)
              for f in ("applied", "duplicates", "dead_lettered", "parked")]
    return Reconciliation(consumer_group=group, consumed=consumed, applied=totals[0],
                          duplicates=totals[1], dead_lettered=totals[2], parked=totals[3],
                          balanced=consumed == sum(totals), partitions=parts)
