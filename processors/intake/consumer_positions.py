"""Consumer positions kept in PostgreSQL, beside the effects they account for.

A worker never trusts Kafka's committed offsets for correctness: the effects of a batch and
the position after it commit in one PostgreSQL transaction, and on assignment the worker
seeks to the stored position (DESIGN.md section 7). Messages below the stored position that
Kafka still delivers (a redelivery after a crash, a race with the seek) are dropped here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

import asyncpg

TopicPartition = tuple[str, int]
log = logging.getLogger(__name__)


class Located(Protocol):
    """Where a consumed message sits (``processors.intake.batch.SourceMessage``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


M = TypeVar("M", bound=Located)


async def load(
    conn: asyncpg.Connection, group: str, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    wanted = list(tps)
    if not wanted:
        return {}
    rows = await conn.fetch(
        """SELECT topic, partition, next_offset FROM consumer_positions
           WHERE group_id = $1 AND (topic, partition) IN
                 (SELECT * FROM unnest($2::text[], $3::int[]))""",
        group,
        [t for t, _ in wanted],
        [p for _, p in wanted],
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def lock(
    conn: asyncpg.Connection, group: str, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """Read the positions inside the batch transaction, locking their rows.

    Two workers that both believe they own a partition (a zombie after a rebalance)
    serialise here; the second sees the first's position and drops what it already wrote.
    """
    wanted = sorted(set(tps))
    await conn.executemany(
        """INSERT INTO consumer_positions (group_id, topic, partition, next_offset)
           VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING""",
        [(group, t, p) for t, p in wanted],
    )
    rows = await conn.fetch(
        """SELECT topic, partition, next_offset FROM consumer_positions
           WHERE group_id = $1 AND (topic, partition) IN
                 (SELECT * FROM unnest($2::text[], $3::int[]))
           ORDER BY topic, partition FOR UPDATE""",
        group,
        [t for t, _ in wanted],
        [p for _, p in wanted],
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def advance(
    conn: asyncpg.Connection,
    group: str,
    before: Mapping[TopicPartition, int],
    after: Mapping[TopicPartition, int],
    event_times: Mapping[TopicPartition, datetime],
) -> None:
    """Store the positions after the batch and the latest event time seen per partition
    (it only moves forward: a late event does not take a partition's event time back)."""
    for tp, next_offset in after.items():
        # Offsets only move forward; a smaller one would mean the batch logic is wrong.
        assert next_offset >= before.get(tp, 0), (tp, before.get(tp), next_offset)
    await conn.executemany(
        """UPDATE consumer_positions
           SET next_offset = $4, updated_at = now(),
               event_time = GREATEST(event_time, $5::timestamptz)
           WHERE group_id = $1 AND topic = $2 AND partition = $3""",
        [(group, t, p, off, event_times.get((t, p))) for (t, p), off in after.items()],
    )


def dropped_ranges(messages: Sequence[Located], before: Mapping[TopicPartition, int]) -> str:
    """The dropped offsets per partition, e.g. ``sales/3@120-141``, for the log."""
    spans: dict[TopicPartition, list[int]] = {}
    for m in messages:
        tp = (m.topic, m.partition)
        if m.offset < before[tp]:
            spans.setdefault(tp, []).append(m.offset)
    return ", ".join(f"{t}/{p}@{min(o)}-{max(o)}" for (t, p), o in sorted(spans.items()))


def above(
    messages: Sequence[M], before: Mapping[TopicPartition, int]
) -> tuple[list[M], dict[TopicPartition, int]]:
    """The messages at or above the stored positions, and the positions after them.

    Offsets of one partition only increase within a batch; a message at an offset already
    passed (a redelivery racing a seek) is dropped like one below the stored position.
    """
    fresh: list[M] = []
    after: dict[TopicPartition, int] = {}
    for m in messages:
        tp = (m.topic, m.partition)
        expected = after.get(tp, before[tp])
        if m.offset < expected:
            continue
        if m.offset > expected:
            # Non-transactional producers leave no holes; a hole means transaction markers,
            # retention, or a consumer that skipped a batch. `incentives reconcile` shows it.
            log.warning("offsets %s-%s of %s/%s were not consumed", expected, m.offset - 1, *tp)
        fresh.append(m)
        after[tp] = m.offset + 1
    return fresh, after
