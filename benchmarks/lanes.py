"""The live lane: ``incentives publish`` and ``incentives worker`` processes, as users run them.

Two ways to time it:

- ``upload``: the workers are started on empty topics and waited for until the group is
  stable (every source partition assigned, no rebalance pending); then the clock starts,
  ``incentives publish`` uploads the file, and the clock stops when nothing is pending:
  every source partition's position in PostgreSQL (committed with the batch's ledger
  records) has reached Kafka's end offset as it stood after the upload. This is "publish to
  committed ledger": the ledger keeping up with an upstream bulk upload. Two workers are
  compared with one this way, so a rebalance never falls inside the measurement.
- ``drain``: the messages are on the topics before one worker starts; the clock starts at
  the first batch the worker commits (start-up is left out) and stops when nothing is
  pending. Used for the growth figure, where the writer's own cost is what is compared.

Either way a worker that exits by itself is recorded (with the last lines of its log), and
its peak resident memory (``VmHWM``) is read before it is stopped.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.scratch import BenchError, Scratch, stop
from ledger import program_store
from processors.worker.app import SOURCE_STREAMS
from processors.worker.kafka_offsets import partitions
from schemas.program_loader import load_program
from schemas.settings import PROJECT_ROOT, Settings

EXAMPLE = PROJECT_ROOT / "programs" / "example-channel-2026.yaml"
POLL_S = 0.05
ASSIGN_TIMEOUT_S = 120.0
SETTLE_S = 1.0  # after the group is stable, before the upload starts
STALL_MAX_S = 120.0  # no progress for this long fails the run
PUBLISH_TIMEOUT_S = 600.0
_ASSIGNED = re.compile(rb"assigned (\d+) source partitions \(partition numbers ([\d, ]+|none)\)")
_PUBLISHED = re.compile(r"(\d+) sent, (\d+) rejected in ([\d.]+) s")
# A worker with the timer off: the workload is exactly the file, run after run.
NO_TIMER = {"INCENTIVES_AUTO_CLOSE": "false", "INCENTIVES_TIMER_INTERVAL_S": "0"}


@dataclass(slots=True)
class Published:
    sent: int
    rejected: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class LaneRun:
    workers: int
    events: int  # messages the clock covers
    seconds: float
    records: int = 0
    exits: list[str] = field(default_factory=list)  # workers that exited by themselves
    peak_rss_mib: float = 0.0
    publish: Published | None = None  # the upload, concurrent with the workers
    reconcile: str = ""  # reconcile's verdict line
    # Of the source messages, the share the busiest worker consumed (its partitions'): the
    # workers can go at most 1/busiest_share times as fast as one, since partners are never
    # split between workers.
    busiest_share: float = 1.0

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def us_per_event(self) -> float:
        return self.seconds / self.events * 1e6 if self.events else 0.0


async def publish_program(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    try:
        await program_store.publish(conn, load_program(EXAMPLE), published_by="benchmark")
    finally:
        await conn.close()


async def publish(scratch: Scratch, settings: Settings, path: Path) -> Published:
    """``incentives publish FILE`` in a child process; its own summary of what it sent."""
    status, out, err = await scratch.command(
        settings, ["-m", "incentives.cli", "publish", str(path)], PUBLISH_TIMEOUT_S)
    found = _PUBLISHED.search(out)
    if status != 0 or found is None:
        raise BenchError(f"incentives publish exited {status}: {(out + err)[-1500:]}")
    return Published(int(found[1]), int(found[2]), float(found[3]))


class Workers:
    """``incentives worker`` processes of one run."""

    def __init__(self, scratch: Scratch, settings: Settings, name: str, count: int,
                 *, extra_env: dict[str, str] | None = None,
                 profile: Path | None = None) -> None:
        self.logs = [scratch.folder / f"{name}-worker-{n + 1}.log" for n in range(count)]
        prefix = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
        env = scratch.env(settings, **(extra_env or {}))
        self.processes = [scratch.spawn([*prefix, "-m", "incentives.cli", "worker"], log, env)
                          for log in self.logs]
        self.exits: list[str] = []

    def check(self) -> None:
        """Record workers that exited by themselves; fail when none is left."""
        for n, (process, log) in enumerate(zip(self.processes, self.logs, strict=True)):
            status = process.poll()
            if status is not None and not any(e.startswith(f"worker {n + 1} ") for e in self.exits):
                self.exits.append(f"worker {n + 1} exited with {status}: {_tail(log, 3)}")
        if all(p.poll() is not None for p in self.processes):
            raise BenchError("every worker exited:\n" + "\n".join(
                f"--- {log}\n{_tail(log, 25)}" for log in self.logs))

    async def wait_stable(self, partitions_total: int) -> None:
        """Until the latest assignment each worker logged adds up to every source
        partition, each worker holding some (a group that is done rebalancing)."""
        deadline = time.monotonic() + ASSIGN_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check()
            latest = [_latest_assignment(log)[0] for log in self.logs]
            if all(n > 0 for n in latest) and sum(latest) == partitions_total:
                await asyncio.sleep(SETTLE_S)
                return
            await asyncio.sleep(POLL_S * 4)
        raise BenchError(f"the workers' group was not stable within {ASSIGN_TIMEOUT_S:.0f} s:\n"
                         + "\n".join(f"--- {log}\n{_tail(log, 15)}" for log in self.logs))

    def partition_numbers(self) -> list[frozenset[int]]:
        """The partition numbers each worker logged it holds last."""
        return [_latest_assignment(log)[1] for log in self.logs]

    def peak_rss_mib(self) -> float:
        return max((_vm_hwm_mib(p.pid) for p in self.processes if p.poll() is None),
                   default=0.0)

    def stop(self) -> None:
        for n, process in enumerate(self.processes):
            alive = process.poll() is None
            status = stop(process)
            if alive and status != 0:
                self.exits.append(f"worker {n + 1} exited with {status} on SIGTERM: "
                                  f"{_tail(self.logs[n], 3)}")


class Progress:
    """Messages still pending on the source topics: Kafka's end offsets against the
    positions PostgreSQL holds for the group (what ``incentives reconcile`` counts)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: asyncpg.Connection | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._parts: list[TopicPartition] = []

    async def __aenter__(self) -> Progress:
        self._conn = await asyncpg.connect(self.settings.pg_dsn("auditor"))
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap, enable_auto_commit=False,
            **self.settings.kafka_auth("auditor"),
        )
        await self._consumer.start()
        self._parts = await partitions(self.settings, "auditor", self.topics)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._conn is not None:
            await self._conn.close()

    @property
    def topics(self) -> list[str]:
        return [self.settings.topic(s) for s in SOURCE_STREAMS]

    async def ends(self) -> dict[tuple[str, int], int]:
        assert self._consumer is not None
        found = await self._consumer.end_offsets(self._parts)
        return {(tp.topic, tp.partition): offset for tp, offset in found.items()}

    async def done(self, ends: dict[tuple[str, int], int]) -> int:
        """How many of the messages below ``ends`` are committed."""
        assert self._conn is not None
        rows = await self._conn.fetch(
            "SELECT topic, partition, next_offset FROM consumer_positions WHERE group_id = $1",
            self.settings.consumer_group,
        )
        stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        return sum(min(stored.get(tp, 0), end) for tp, end in ends.items())

    async def by_partition_number(self) -> dict[int, int]:
        """The source messages committed so far, by partition number (over every topic)."""
        assert self._conn is not None
        rows = await self._conn.fetch(
            "SELECT partition, sum(next_offset) AS n FROM consumer_positions"
            " WHERE group_id = $1 GROUP BY partition", self.settings.consumer_group)
        return {int(r["partition"]): int(r["n"]) for r in rows}

    async def records(self) -> int:
        assert self._conn is not None
        return int(await self._conn.fetchval("SELECT count(*) FROM ledger_records"))


def _busiest_share(consumed: dict[int, int], numbers: list[frozenset[int]]) -> float:
    total = sum(consumed.values())
    if total == 0 or len(numbers) < 2:
        return 1.0
    return max(sum(consumed.get(n, 0) for n in mine) for mine in numbers) / total


async def _until_done(progress: Progress, workers: Workers, ends: dict[tuple[str, int], int],
                      ) -> tuple[int, float, float]:
    """Poll until every message below ``ends`` is committed: (messages done at the first
    observation of progress, its time, the time all were done)."""
    total = sum(ends.values())
    first: tuple[int, float] | None = None
    best, moved_at = -1, time.monotonic()
    while True:
        done, now = await progress.done(ends), time.monotonic()
        if done > 0 and first is None:
            first = (done, now)
        if done >= total:
            assert first is not None or total == 0
            return (first or (0, now))[0], (first or (0, now))[1], now
        if done > best:
            best, moved_at = done, now
        elif now - moved_at > STALL_MAX_S:
            raise BenchError(f"no progress for {STALL_MAX_S:.0f} s at {done:,} of {total:,} "
                             f"messages:\n{_tail(workers.logs[0], 20)}")
        workers.check()
        await asyncio.sleep(POLL_S)


async def upload_run(scratch: Scratch, settings: Settings, name: str, path: Path,
                     workers_count: int, *, profile: Path | None = None) -> LaneRun:
    """``settings`` has its own empty topics and a migrated database."""
    await publish_program(settings)
    workers = Workers(scratch, settings, name, workers_count, profile=profile)
    try:
        async with Progress(settings) as progress:
            await workers.wait_stable(len(SOURCE_STREAMS) * settings.topic_partitions)
            started = time.monotonic()
            published = await publish(scratch, settings, path)
            ends = await progress.ends()
            _, _, ended = await _until_done(progress, workers, ends)
            # The rate counts the uploaded events; the timer's own commands are overhead.
            run = LaneRun(workers_count, published.sent, ended - started, publish=published)
            run.records = await progress.records()
            run.busiest_share = _busiest_share(await progress.by_partition_number(),
                                               workers.partition_numbers())
        run.peak_rss_mib = workers.peak_rss_mib()
    finally:
        workers.stop()
    run.exits = workers.exits
    run.reconcile = await reconcile(scratch, settings)
    return run


async def drain_run(scratch: Scratch, settings: Settings, name: str) -> LaneRun:
    """One worker (timer off) over what ``settings``' topics already hold."""
    workers = Workers(scratch, settings, name, 1, extra_env=NO_TIMER)
    try:
        async with Progress(settings) as progress:
            ends = await progress.ends()
            first_done, started, ended = await _until_done(progress, workers, ends)
            run = LaneRun(1, sum(ends.values()) - first_done, ended - started)
        run.peak_rss_mib = workers.peak_rss_mib()
    finally:
        workers.stop()
    run.exits = workers.exits
    return run


async def reconcile(scratch: Scratch, settings: Settings) -> str:
    """``incentives reconcile``'s last line; a BenchError when messages are unaccounted."""
    status, out, err = await scratch.command(settings, ["-m", "incentives.cli", "reconcile"], 120)
    lines = out.strip().splitlines()
    if status != 0 or not lines:
        raise BenchError(f"incentives reconcile exited {status}:\n{out[-1500:]}{err[-1500:]}")
    return lines[-1]


def _latest_assignment(log: Path) -> tuple[int, frozenset[int]]:
    """How many source partitions a worker's log says it holds last, and their numbers."""
    try:
        found = _ASSIGNED.findall(log.read_bytes())
    except OSError:
        return 0, frozenset()
    if not found:
        return 0, frozenset()
    count, numbers = found[-1]
    return int(count), frozenset(int(n) for n in numbers.split(b",") if n.strip().isdigit())


def _vm_hwm_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _tail(log: Path, lines: int) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])
