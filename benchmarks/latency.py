"""Publish-to-visible latency at a fixed offered rate, through one ``incentives worker``.

The partners' registrations are published first and waited for. Then the sample's next
events are sent at a fixed rate (``Publisher.send``, the producer ``incentives publish``
uses, each message validated beforehand), each with the moment it was handed to the
producer. A poller reads, every POLL_S, the inbox rows committed since its last look and,
for those events, whether the ledger holds a record that the event triggered (its first
source event). An event is *visible* at the start of the first poll that finds it: its
record (and with it the partner's balance projection, written in the same transaction) for
an event that posts one, its commit for one that posts none (a sale after the program's
budget ran out, a survey that earns nothing yet). Today the inbox row, the records and the
projections commit together, so the first poll that sees one sees all; a writer that ever
committed the projections apart would need the record half of this test alone.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from benchmarks.lanes import Progress, Workers, publish_program
from benchmarks.scratch import BenchError, Scratch
from incentives.publisher import Publisher
from processors.worker.app import SOURCE_STREAMS
from schemas.codec import Rejection
from schemas.files import Outgoing, iter_jsonl
from schemas.settings import Settings

POLL_S = 0.02
TICK_S = 0.005  # the sender's pacing step
DRAIN_TIMEOUT_S = 180.0
IN_FLIGHT_MAX = 1_000_000  # the sender never waits for acknowledgements while pacing

# With one worker, batches commit one after another, so arrival numbers become visible in
# increasing order and "above the last one seen" misses nothing.
_NEW_ROWS = """
SELECT arrival_seq, event_id FROM inbox WHERE arrival_seq > $1 ORDER BY arrival_seq
"""
_WITH_RECORD = """
SELECT k.event_id FROM unnest($1::text[], $2::timestamptz[], $3::uuid[]) AS k(p, at, event_id)
WHERE EXISTS (SELECT 1 FROM ledger_records r
              WHERE r.partner_id = k.p AND r.occurred_at = k.at
                AND r.source_event_ids[1] = k.event_id)
"""


@dataclass(slots=True)
class LatencyRun:
    offered_per_s: float
    sent: int = 0
    sending_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    with_record: int = 0  # events timed by their record (the rest by their commit)
    missing: int = 0  # sent but never seen within DRAIN_TIMEOUT_S
    exits: list[str] = field(default_factory=list)

    @property
    def achieved_per_s(self) -> float:
        return self.sent / self.sending_seconds if self.sending_seconds > 0 else 0.0


def outgoing(messages: list[dict[str, Any]], settings: Settings) -> list[Outgoing]:
    """The messages validated as ``incentives publish`` validates a JSONL file."""
    lines = io.BytesIO(b"".join(msgspec.json.encode(m) + b"\n" for m in messages))
    items = []
    for line_no, item in iter_jsonl(lines, now=datetime.now(UTC), limits=settings.limits()):
        if isinstance(item, Rejection):
            raise BenchError(f"sample message {line_no} is rejected: {item}")
        items.append(item)
    return items


class Visibility:
    """Polls the committed inbox rows and the records of the events it waits for."""

    def __init__(self, conn: asyncpg.Connection, keys: dict[uuid.UUID, tuple[str, datetime]]):
        self._conn = conn
        self._keys = keys  # event id -> (partner id, occurred_at)
        self.sent_at: dict[uuid.UUID, float] = {}
        self.seen_at: dict[uuid.UUID, float] = {}
        self.with_record: set[uuid.UUID] = set()
        self._last_seq = 0

    async def start(self) -> None:
        self._last_seq = int(await self._conn.fetchval(
            "SELECT coalesce(max(arrival_seq), 0) FROM inbox"))

    async def poll(self) -> None:
        at = time.monotonic()
        rows = await self._conn.fetch(_NEW_ROWS, self._last_seq)
        if not rows:
            return
        self._last_seq = rows[-1]["arrival_seq"]
        fresh = [r["event_id"] for r in rows if r["event_id"] in self.sent_at]
        keyed = [(self._keys[e][0], self._keys[e][1], e) for e in fresh]
        found = await self._conn.fetch(_WITH_RECORD, [k[0] for k in keyed],
                                       [k[1] for k in keyed], [k[2] for k in keyed])
        self.with_record.update(r["event_id"] for r in found)
        for event_id in fresh:
            self.seen_at.setdefault(event_id, at)

    @property
    def outstanding(self) -> int:
        return len(self.sent_at) - len(self.seen_at)


async def _pace(publisher: Publisher, items: list[Outgoing], per_s: float,
                visibility: Visibility) -> float:
    """Send ``items`` at ``per_s``; the seconds from the first send to the last."""
    started = time.monotonic()
    for n, item in enumerate(items):
        due = started + n / per_s
        delay = due - time.monotonic()
        if delay > TICK_S:
            await asyncio.sleep(delay)
        visibility.sent_at[item.event_id] = time.monotonic()
        await publisher.send(item)
    return time.monotonic() - started


async def _poll_until(visibility: Visibility, done: asyncio.Event, workers: Workers) -> None:
    while not (done.is_set() and visibility.outstanding == 0):
        await visibility.poll()
        workers.check()
        await asyncio.sleep(POLL_S)


async def _wait_committed(settings: Settings, workers: Workers, timeout_s: float) -> None:
    async with Progress(settings) as progress:
        ends = await progress.ends()
        deadline = time.monotonic() + timeout_s
        while await progress.done(ends) < sum(ends.values()):
            workers.check()
            if time.monotonic() > deadline:
                raise BenchError(f"the registrations were not committed within {timeout_s:.0f} s")
            await asyncio.sleep(0.1)


async def latency_run(scratch: Scratch, settings: Settings, registrations: list[dict[str, Any]],
                      events: list[dict[str, Any]], per_s: float) -> LatencyRun:
    """``settings`` has its own empty topics and a migrated database."""
    await publish_program(settings)
    keys = {uuid.UUID(m["event_id"]): (m["partner_id"], _instant(m["occurred_at"]))
            for m in events}
    items = outgoing(events, settings)
    run = LatencyRun(per_s)
    workers = Workers(scratch, settings, "latency", 1)
    conn = await asyncpg.connect(settings.pg_dsn("auditor"))
    try:
        await workers.wait_stable(len(SOURCE_STREAMS) * settings.topic_partitions)
        async with Publisher(settings) as publisher:
            for item in outgoing(registrations, settings):
                await publisher.send(item)
        await _wait_committed(settings, workers, DRAIN_TIMEOUT_S)
        visibility = Visibility(conn, keys)
        await visibility.start()
        done = asyncio.Event()
        poller = asyncio.create_task(_poll_until(visibility, done, workers))
        async with Publisher(settings, max_in_flight=IN_FLIGHT_MAX) as publisher:
            run.sending_seconds = await _pace(publisher, items, per_s, visibility)
        done.set()
        try:
            await asyncio.wait_for(poller, DRAIN_TIMEOUT_S)
        except TimeoutError:
            pass
        _collect(run, visibility)
    finally:
        await conn.close()
        workers.stop()
    run.exits = workers.exits
    return run


def _collect(run: LatencyRun, visibility: Visibility) -> None:
    run.sent = len(visibility.sent_at)
    run.missing = visibility.outstanding
    run.with_record = len(visibility.with_record)
    run.latencies_ms = [(visibility.seen_at[e] - sent) * 1000
                        for e, sent in visibility.sent_at.items() if e in visibility.seen_at]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
