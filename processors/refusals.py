"""Refusals: the outbox in PostgreSQL and its copy on the ``refusals`` topic.

The ledger stage writes a ``command_refusals`` row for every valid command the rules
refused, in the batch's transaction, so PostgreSQL holds exactly one reason per refused
command. After the commit ``publish_pending`` sends them to the ``refusals`` stream as
``CommandRefused`` and marks them published (migration 0007 lets only that mark be set,
once). A worker that dies in between leaves them unpublished; the next worker assigned
the partition sends them. So the topic gets every refusal at least once, and a consumer
drops copies by ``event_id``. The same pattern as the dead letters (``processors.deadletters``).

Which refusals a worker publishes is decided by the partition the command was consumed
from (``inbox.topic``/``inbox.partition``), so the workers of a group do not race for the
same rows: each publishes those of the partitions it is assigned. On the topic the key is
the ``partner_id``, so one partner's refusals stay in order on one partition; they are
sent in the order their commands were accepted (``inbox.arrival_seq``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from schemas.outcomes import REFUSAL_ENCODER, CommandRefused

# Refusals read, sent and marked per round; bounds memory when a backlog is flushed.
CHUNK = 500

_PENDING = """
FROM command_refusals r
JOIN inbox i ON i.event_id = r.event_id
JOIN unnest($1::text[], $2::int[]) AS w(topic, partition)
  ON i.topic = w.topic AND i.partition = w.partition
WHERE r.published_at IS NULL
"""


class PublishFailed(Exception):
    """The refusals topic did not acknowledge some refusals; they stay unpublished."""


def refusal_of(row: asyncpg.Record) -> CommandRefused:
    """The ``CommandRefused`` message of one ``command_refusals`` row."""
    return CommandRefused(
        event_id=row["event_id"],
        partner_id=row["partner_id"],
        command_type=row["event_type"],
        code=row["code"],
        path=row["path"],
        message=row["message"],
        occurred_at=row["occurred_at"],
        refused_at=row["recorded_at"],
    )


async def publish_pending(
    conn: asyncpg.Connection,
    producer: AIOKafkaProducer,
    topic: str,
    partitions: Iterable[tuple[str, int]],
) -> int:
    """Send the unpublished refusals of commands consumed from these source partitions,
    wait for the broker's acknowledgement, and mark those acknowledged as published;
    return how many were.

    A refusal the broker does not acknowledge stays unpublished and ends this round with
    ``PublishFailed``; it is sent again the next time (the next batch that refuses a
    command there, or the next assignment of the partition).
    """
    wanted = sorted(set(partitions))
    if not wanted:
        return 0
    topics, numbers = [t for t, _ in wanted], [p for _, p in wanted]
    pending = await conn.fetchval("SELECT count(*) " + _PENDING, topics, numbers)
    sent = 0
    # Bounded by the backlog counted above; one round more in case it grew meanwhile.
    for _ in range(pending // CHUNK + 2):
        rows = await conn.fetch(
            """SELECT r.event_id, r.partner_id, r.event_type, r.code, r.path, r.message,
                      r.occurred_at, r.recorded_at """
            + _PENDING
            + "ORDER BY i.arrival_seq LIMIT $3",
            topics,
            numbers,
            CHUNK,
        )
        if not rows:
            break
        acknowledged, failure = await _send(producer, topic, rows)
        # "AND published_at IS NULL": a row another worker marked meanwhile (after a
        # rebalance) is skipped rather than marked twice, which the trigger would refuse.
        await conn.execute(
            """UPDATE command_refusals SET published_at = now()
               WHERE event_id = ANY($1::uuid[]) AND published_at IS NULL""",
            [r["event_id"] for r in acknowledged],
        )
        sent += len(acknowledged)
        if failure is not None:
            raise PublishFailed(
                f"{len(rows) - len(acknowledged)} of {len(rows)} refusals were not"
                f" acknowledged by {topic}: {failure!r}"
            ) from failure
    return sent


async def _send(
    producer: AIOKafkaProducer, topic: str, rows: Sequence[asyncpg.Record]
) -> tuple[list[asyncpg.Record], BaseException | None]:
    """Send ``rows``; return those the broker acknowledged, and the first failure."""
    futures: list[asyncio.Future[Any]] = []
    for row in rows:
        value = REFUSAL_ENCODER.encode(refusal_of(row))
        futures.append(await producer.send(topic, value=value, key=row["partner_id"].encode()))
    results = await asyncio.gather(*futures, return_exceptions=True)
    acknowledged = [
        r for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)
    ]
    failure = next((res for res in results if isinstance(res, BaseException)), None)
    return acknowledged, failure
