"""The smoke flow: Kafka -> faust agent -> PostgreSQL, exactly once across restarts.

It proves the plumbing every processor stands on: messages published with aiokafka are
consumed by a faust agent in batches, each batch and the consumer position after it are
written in one PostgreSQL transaction, and a worker that is killed and restarted resumes
from the position stored in PostgreSQL, so every message lands exactly once.

`python -m incentives.smoke worker TOPIC` runs one worker (what the tests kill); the
`incentives smoke` command runs the whole flow with a restart in the middle.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg
import faust
from aiokafka import AIOKafkaProducer

from processors.intake import consumer_positions as positions
from processors.worker.app import faust_app, mirror_positions
from schemas.settings import Settings, load_settings

BATCH_SIZE_MAX = 1000
BATCH_WITHIN_S = 0.2


def build_app(settings: Settings, topic_name: str, group: str) -> faust.App:
    app = faust_app(settings, group)
    # As in the ledger worker (processors/worker/app.py): faust commits nothing itself; Kafka's
    # offsets only ever mirror positions already committed in PostgreSQL.
    topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw", acks=False)
    pool: dict[str, asyncpg.Pool] = {}

    async def get_pool() -> asyncpg.Pool:
        if "pool" not in pool:
            pool["pool"] = await asyncpg.create_pool(
                settings.pg_dsn("writer"), min_size=1, max_size=2
            )
        return pool["pool"]

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust's stubs: see worker.app
    async def resume(sender: Any, assigned: set[Any], **_: Any) -> None:
        mine = [(tp.topic, tp.partition) for tp in assigned if tp.topic == topic_name]
        async with (await get_pool()).acquire() as conn:
            stored = await positions.load(conn, group, mine)
        await mirror_positions(
            app,
            {
                tp: stored.get((tp.topic, tp.partition), 0)
                for tp in assigned
                if tp.topic == topic_name
            },
        )

    @app.agent(topic)
    async def deliver(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(  # type: ignore[attr-defined]
            BATCH_SIZE_MAX, within=BATCH_WITHIN_S
        ):
            await write_batch(await get_pool(), group, events)
            last = {}
            for event in events:
                last[event.message.tp] = event.message.offset + 1
            await mirror_positions(app, last)

    return app


async def write_batch(pool: asyncpg.Pool, group: str, events: Sequence[Any]) -> int:
    """Write one batch and the positions after it in one transaction; return rows written."""
    by_tp: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for event in events:
        msg = event.message
        by_tp[(msg.topic, msg.partition)].append(msg)
    async with pool.acquire() as conn, conn.transaction():
        before = await positions.lock(conn, group, by_tp)
        rows: list[tuple[str, int, int, str | None, bytes]] = []
        after: dict[tuple[str, int], int] = {}
        for tp, msgs in by_tp.items():
            for msg in msgs:
                # Below the stored position: already written by an earlier worker.
                if msg.offset < max(before[tp], after.get(tp, 0)):
                    continue
                key = msg.key.decode() if msg.key is not None else None
                rows.append((msg.topic, msg.partition, msg.offset, key, msg.value))
                after[tp] = msg.offset + 1
        if rows:
            await conn.copy_records_to_table(
                "smoke_deliveries",
                records=rows,
                columns=["topic", "partition", "offset", "key", "value"],
            )
            await positions.advance(conn, group, before, after, {})
    return len(rows)


async def publish(settings: Settings, topic: str, count: int, partners: int = 50) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        **settings.kafka_auth("upstream"),
    )
    await producer.start()
    try:
        batch: list[asyncio.Future[Any]] = []
        for n in range(count):
            key = f"P{n % partners:04d}".encode()
            batch.append(await producer.send(topic, value=str(n).encode(), key=key))
            if len(batch) >= 5000:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
    finally:
        await producer.stop()


async def delivered(dsn: str, topic: str) -> tuple[int, int]:
    """(rows written for the topic, distinct message values among them)."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT value) AS d FROM smoke_deliveries "
            "WHERE topic = $1",
            topic,
        )
        return int(row["n"]), int(row["d"])
    finally:
        await conn.close()


def start_worker(
    settings: Settings, topic: str, group: str, log_path: str
) -> subprocess.Popen[bytes]:
    # The worker finds its own role's password as this process does: same settings.
    env = dict(os.environ)
    env.update(
        {
            "INCENTIVES_KAFKA_BOOTSTRAP": settings.bootstrap,
            "INCENTIVES_PG_DATABASE": settings.pg_database,
            "INCENTIVES_SECRETS_FILE": str(settings.secrets_path),
        }
    )
    # The child gets its own copy of the descriptor; ours is closed straight away.
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "incentives.smoke", "worker", topic, group],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


async def wait_for_rows(dsn: str, topic: str, at_least: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    count = 0
    while time.monotonic() < deadline:
        count, _ = await delivered(dsn, topic)
        if count >= at_least:
            return count
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{count} of {at_least} rows for {topic} after {timeout_s:.0f}s")


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "worker":
        settings = load_settings()
        app = build_app(settings, argv[1], argv[2])
        worker = faust.Worker(app, loglevel="WARNING", quiet=True)
        worker.execute_from_commandline()
    else:
        sys.exit("usage: python -m incentives.smoke worker TOPIC GROUP")


if __name__ == "__main__":
    main(sys.argv[1:])
