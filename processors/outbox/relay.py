"""The outbox: rows committed in PostgreSQL with the batch, then sent to a Kafka topic.

Dead letters (``processors.outbox.deadletters``) and refused commands
(``processors.outbox.refusals``) are written in the batch's transaction, so PostgreSQL
holds exactly one of each. After the commit they are sent and marked ``published_at`` once
the broker acknowledged them; a worker that dies in between leaves them unpublished and the
next worker assigned the source partition sends them. The topic therefore gets each at
least once. Each worker sends only the rows of the source partitions it is assigned, so
workers do not race for rows; a row another worker marked meanwhile (after a rebalance) is
skipped, never marked twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

# Rows read, sent and marked per round; bounds memory when a backlog is flushed.
CHUNK = 500


class PublishFailed(Exception):
    """The topic did not acknowledge some rows; they stay unpublished."""


@dataclass(frozen=True, slots=True)
class Outbox:
    """One outbox table.

    ``pending``: a ``FROM ... WHERE`` clause of the unpublished rows of the source
    partitions ``$1`` (topics) and ``$2`` (partition numbers); ``columns`` what to select
    from it and ``order`` in what order to send; ``mark``: an UPDATE setting
    ``published_at`` of the rows named by ``$1`` (``ids`` of the acknowledged rows) that
    are still unpublished; ``message``: a row's Kafka key and value.
    """

    what: str
    pending: str
    columns: str
    order: str
    mark: str
    ids: Callable[[Sequence[asyncpg.Record]], Sequence[Any]]
    message: Callable[[asyncpg.Record], tuple[bytes, bytes]]

    async def publish_pending(
        self,
        conn: asyncpg.Connection,
        producer: AIOKafkaProducer,
        topic: str,
        partitions: Iterable[tuple[str, int]],
    ) -> int:
        """Send the unpublished rows of these source partitions, wait for the broker's
        acknowledgement, and mark those acknowledged; return how many were. A row the
        broker does not acknowledge stays unpublished and ends the round with
        ``PublishFailed``; it is sent again next time."""
        wanted = sorted(set(partitions))
        if not wanted:
            return 0
        topics, numbers = [t for t, _ in wanted], [p for _, p in wanted]
        backlog = await conn.fetchval(f"SELECT count(*) {self.pending}", topics, numbers)
        sent = 0
        # Bounded by the backlog counted above; one round more in case it grew meanwhile.
        for _ in range(backlog // CHUNK + 2):
            rows = await conn.fetch(
                f"SELECT {self.columns} {self.pending} ORDER BY {self.order} LIMIT $3",
                topics,
                numbers,
                CHUNK,
            )
            if not rows:
                break
            acknowledged, failure = await _send(producer, topic, rows, self.message)
            if acknowledged:
                await conn.execute(self.mark, *self.ids(acknowledged))
            sent += len(acknowledged)
            if failure is not None:
                raise PublishFailed(
                    f"{len(rows) - len(acknowledged)} of {len(rows)} {self.what} were not"
                    f" acknowledged by {topic}: {failure!r}"
                ) from failure
        return sent


async def _send(
    producer: AIOKafkaProducer,
    topic: str,
    rows: Sequence[asyncpg.Record],
    message: Callable[[asyncpg.Record], tuple[bytes, bytes]],
) -> tuple[list[asyncpg.Record], BaseException | None]:
    """Send ``rows``; return those the broker acknowledged, and the first failure."""
    futures: list[asyncio.Future[Any]] = []
    for row in rows:
        key, value = message(row)
        futures.append(await producer.send(topic, value=value, key=key))
    results = await asyncio.gather(*futures, return_exceptions=True)
    acknowledged = [
        r for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)
    ]
    failure = next((res for res in results if isinstance(res, BaseException)), None)
    return acknowledged, failure
