"""The peers the ledger's live lane is compared with, each a child process of the benchmark:

- ``faust``: a do-nothing faust agent, built by the worker's own app factory
  (``processors.worker.app.faust_app``) over the same five topics with the same serializers and
  the same batching (``take_events(batch_size_max, within=batch_within_ms)``): the worker
  minus the work.
- ``quix``: a do-nothing quixstreams application over the same topics (optional: the
  ``bench`` extra installs quixstreams).
- ``ceiling``: the fastest honest path from Kafka to PostgreSQL rows: aiokafka ``getmany``
  over every partition, each message validated at the boundary as the worker does
  (``schemas.codec.decode``, msgspec), and per fetched batch one transaction with one COPY
  of the rows and one upsert of the positions.

Each drains ``--expect`` messages that are already on the topics and writes one JSON
object to ``--result``: ``{"messages": N, "first_done": n, "seconds": s}`` (a file, since
faust takes over standard output for its logging), where the clock starts at the first
message (or batch) received, which holds ``first_done`` messages, so that start-up and
group joining are left out, and stops when the last is done. Settings come from the
environment (``INCENTIVES_*``), as for the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from processors.worker.app import SOURCE_STREAMS
from schemas.settings import Settings, load_settings
from stack.postgres import admin_dsn


class Clock:
    """From the first message done to the last; reports once ``expect`` are done."""

    def __init__(self, expect: int, report: Callable[[dict[str, Any]], None]) -> None:
        self.expect = expect
        self.done = 0
        self.first_at: float | None = None
        self.first_done = 0
        self._report = report
        self.finished = False

    def add(self, count: int) -> None:
        now = time.perf_counter()
        self.done += count
        if self.first_at is None:
            self.first_at, self.first_done = now, self.done
        if self.done >= self.expect and not self.finished:
            self.finished = True
            self._report({"messages": self.done, "first_done": self.first_done,
                          "seconds": now - self.first_at})


class Report:
    """Writes the result where the benchmark reads it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, result: dict[str, Any]) -> None:
        with open(self.path, "w", encoding="utf-8") as out:
            json.dump(result, out)


def run_faust(settings: Settings, expect: int, write: Report) -> int:
    import faust

    from processors.worker.app import faust_app

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = faust_app(settings, settings.consumer_group)
    topics = [settings.topic(s) for s in SOURCE_STREAMS]
    source = app.topic(*topics, value_serializer="raw", key_serializer="raw", acks=False)

    def report(result: dict[str, Any]) -> None:
        write(result)
        os.kill(os.getpid(), signal.SIGTERM)  # the faust worker's own clean stop

    clock = Clock(expect, report)

    @app.agent(source)
    async def drain(stream: Any) -> None:
        within_s = settings.batch_within_ms / 1000
        async for events in stream.take_events(settings.batch_size_max, within=within_s):
            clock.add(len(events))

    worker = faust.Worker(app, loop=loop, loglevel="WARNING", quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    return 0 if clock.finished else 1


def run_quix(settings: Settings, expect: int, write: Report) -> int:
    from quixstreams import Application
    from quixstreams.kafka.configuration import ConnectionConfig

    # As the administrator: quixstreams reads each topic's configuration (DescribeConfigs)
    # before it consumes, which no principal of the system is allowed (stack/acls.py).
    auth = settings.kafka_auth("admin")
    broker = ConnectionConfig(
        bootstrap_servers=settings.bootstrap, security_protocol=auth["security_protocol"],
        sasl_mechanism=auth["sasl_mechanism"], sasl_username=auth["sasl_plain_username"],
        sasl_password=auth["sasl_plain_password"],
    )  # fmt: skip
    app = Application(
        broker_address=broker, consumer_group=settings.consumer_group,
        auto_offset_reset="earliest", auto_create_topics=False, use_changelog_topics=False,
        loglevel="WARNING", state_dir=os.path.join(settings.stack_dir, "quix-state"),
    )  # fmt: skip

    def report(result: dict[str, Any]) -> None:
        write(result)
        app.stop()

    clock = Clock(expect, report)

    def count(value: Any) -> None:
        clock.add(1)

    for stream in SOURCE_STREAMS:
        topic = app.topic(settings.topic(stream), value_deserializer="bytes",
                          key_deserializer="bytes")
        app.dataframe(topic).update(count)
    app.run()
    return 0 if clock.finished else 1


_CEILING_TABLE = """
DROP TABLE IF EXISTS ceiling_rows, ceiling_positions;
CREATE TABLE ceiling_rows (
    topic text NOT NULL, partition int NOT NULL, kafka_offset bigint NOT NULL,
    event_id uuid NOT NULL, partner_id text NOT NULL, occurred_at timestamptz NOT NULL,
    body bytea NOT NULL, PRIMARY KEY (topic, partition, kafka_offset));
CREATE TABLE ceiling_positions (
    topic text NOT NULL, partition int NOT NULL, next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition));
"""
_CEILING_POSITIONS = """
INSERT INTO ceiling_positions (topic, partition, next_offset)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
"""
# Small enough that the first batch, left out of the clock, is a small part of the drain.
FETCH_RECORDS_MAX = 2_000


async def run_ceiling(settings: Settings, expect: int, write: Report) -> int:
    import asyncpg
    from aiokafka import AIOKafkaConsumer

    from processors.worker.kafka_offsets import partitions
    from schemas.codec import Rejection, decode

    streams = {settings.topic(s): s for s in SOURCE_STREAMS}
    conn = await asyncpg.connect(admin_dsn(settings, settings.pg_database))
    await conn.execute(_CEILING_TABLE)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
        **settings.kafka_auth("worker"),
    )
    await consumer.start()
    clock = Clock(expect, write)
    limits, now = settings.limits(), datetime.now(UTC)
    try:
        consumer.assign(await partitions(settings, "worker", streams))
        await consumer.seek_to_beginning()
        while not clock.finished:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=FETCH_RECORDS_MAX)
            rows, ends = [], {}
            for tp, messages in fetched.items():
                for m in messages:
                    event = decode(streams[tp.topic], m.value, now=now, limits=limits)
                    if isinstance(event, Rejection):
                        raise SystemExit(f"ceiling: {tp.topic}@{m.offset} rejected: {event}")
                    rows.append((tp.topic, tp.partition, m.offset, event.event_id,
                                 event.partner_id, event.occurred_at, m.value))
                ends[(tp.topic, tp.partition)] = messages[-1].offset + 1
            if rows:
                async with conn.transaction():
                    await conn.copy_records_to_table("ceiling_rows", records=rows)
                    await conn.execute(_CEILING_POSITIONS, [t for t, _ in ends],
                                       [p for _, p in ends], list(ends.values()))
                clock.add(len(rows))
    finally:
        await consumer.stop()
        await conn.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=["faust", "quix", "ceiling"])
    parser.add_argument("--expect", type=int, required=True, help="messages on the topics")
    parser.add_argument("--result", required=True, help="file to write the JSON result to")
    args = parser.parse_args(argv)
    settings, write = load_settings(), Report(args.result)
    if args.peer == "faust":
        return run_faust(settings, args.expect, write)
    if args.peer == "quix":
        return run_quix(settings, args.expect, write)
    return asyncio.run(run_ceiling(settings, args.expect, write))


if __name__ == "__main__":
    sys.exit(main())
