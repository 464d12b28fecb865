"""What a worker creates once, on first use, and closes at shutdown: the writer's connection
pool, the producer of the ledger's own topics (dead letters, refusals, clock commands), and
a consumer of Kafka's end offsets for the timer's idle partitions.

Created lazily, since a faust app is built before its event loop runs; one lock guards
both, so that concurrent first uses (a batch and the timer) share one pool and one producer.
"""

from __future__ import annotations

import asyncio

import asyncpg
from aiokafka import AIOKafkaProducer

from processors.worker.endpoint import EndOffsets
from schemas.settings import Settings

# How the worker's sessions are named in pg_stat_activity.
APPLICATION_NAME = "incentives worker"


class Resources:
    """The connection pool, the dead-letter producer and a consumer for end offsets:
    created once, on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = asyncio.Lock()
        self._pool: asyncpg.Pool | None = None
        self._producer: AIOKafkaProducer | None = None
        # What waits in Kafka, for the timer's idle partitions.
        self.offsets = EndOffsets(settings.bootstrap, settings.kafka_auth("worker"))

    async def pool(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._settings.pg_dsn("writer"), min_size=1, max_size=3,
                    server_settings={"application_name": APPLICATION_NAME},
                )  # fmt: skip
            return self._pool

    async def producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.bootstrap,
                    acks="all",
                    enable_idempotence=True,
                    **self._settings.kafka_auth("worker"),
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def close(self) -> None:
        await self.offsets.close()
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
            if self._pool is not None:
                await self._pool.close()
            self._producer = self._pool = None
