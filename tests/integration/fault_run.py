"""A run of the fault suite: publish the traffic, run workers, do faults to them.

``FaultRun`` publishes the traffic (``fault_traffic``), starts ``incentives worker``
processes and does the faults: a lone worker killed with SIGKILL at random moments spread
over the stream (``kill_repeatedly``); a pool that grows to three workers and shrinks, with
the broker and PostgreSQL stopped and restarted under it (``pool_with_restarts``). Every
poll also publishes the late partners' registrations once all their events are parked.
A wait fails, with the tail of the workers' logs, when consumption stalls for STALL_MAX_S.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from fault_traffic import COPIES, SEED, build_traffic
from ingest_support import MAX_MESSAGE_BYTES, Worker, admin, install_trap, send_raw, source_topics

from ledger import program_store
from processors.worker.kafka_offsets import end_offsets
from schemas.program_loader import load_program
from schemas.settings import Settings
from stack import kafka, postgres

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
# Every worker of the suite rejects messages above this size (``bad_inputs``' padded sale).
WORKER_ENV = {"INCENTIVES_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES)}
POLL_S = 0.05
# The longest consumption may stand still before the run fails. A killed worker's
# partitions move on only once its session (10 s) expired; a restarted broker takes more.
STALL_MAX_S = 180.0
# A worker's timer sends its commands within a second or two after the batches that made
# them due; the drained topics are looked at again after this, and at most DRAIN_ROUNDS times.
SETTLE_S = 3.0
DRAIN_ROUNDS = 10
# The longest pause between a kill's target being reached and the kill. Batches take tens
# of milliseconds, so the kill falls anywhere in one: reading, applying or committing it.
# Longer would let a worker consume much more of a small stream between two kills.
PAUSE_MAX_S = 0.3

Coordinates = tuple[str, int, int]


@dataclass(slots=True)
class Tally:
    """What was done to the workers during a run."""

    started: int = 0
    kills: int = 0
    kill_progress: list[int] = field(default_factory=list)  # messages consumed at each kill
    broker_restarts: int = 0
    database_restarts: int = 0
    restart_progress: list[int] = field(default_factory=list)  # consumed at each restart
    joined: int = 0  # workers that joined a live pool: a rebalance each
    left: int = 0  # workers that left a live pool (SIGTERM, or died): a rebalance each
    died: int = 0  # workers that exited by themselves (a batch failed), then replaced


class FaultRun:
    """One run: the traffic published, the workers started, the faults done to them."""

    def __init__(self, settings: Settings, events: int, folder: Path) -> None:
        """The run's clock starts here: building the traffic is part of its wall time."""
        self.started_at = time.monotonic()
        self.settings, self.requested, self.folder = settings, events, folder
        self.traffic = build_traffic(events)
        self.tally = Tally()
        self.coordinates: list[Coordinates] = []  # of ``traffic.sends``, in order
        self.late_coordinates: list[Coordinates] = []
        self.workers: list[Worker] = []
        self.rng = random.Random(SEED)
        self.publish_s = self.process_s = 0.0
        self.processing_from = self.started_at

    async def __aenter__(self) -> FaultRun:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Whatever happened, no worker outlives the run (``drain`` stopped them if it
        got there; here they get SIGTERM, then SIGKILL)."""
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    async def publish(self) -> None:
        """The example program and the trap of the processing poison, then every send,
        acknowledged by the broker."""
        await install_trap(self.settings)
        conn = await asyncpg.connect(self.settings.pg_dsn("owner"))
        try:
            await program_store.publish(conn, load_program(EXAMPLE), published_by="fault-suite")
        finally:
            await conn.close()
        began = time.monotonic()
        self.coordinates = await send_raw(self.settings, self.traffic.sends)
        self.processing_from = time.monotonic()
        self.publish_s = self.processing_from - began

    # -- workers

    def start(self) -> Worker:
        self.tally.started += 1
        log = self.folder / f"worker-{self.tally.started}.log"
        worker = Worker(self.settings, log, **WORKER_ENV)
        self.workers.append(worker)
        return worker

    def kill(self, worker: Worker) -> None:
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=30)
        self.workers.remove(worker)
        self.tally.kills += 1

    def keep(self, size: int) -> None:
        """Keep ``size`` workers alive: one that died (its batch failed when a service went
        away) is replaced, as an orchestrator would."""
        for worker in [w for w in self.workers if w.process.poll() is not None]:
            self.workers.remove(worker)
            self.tally.died += 1
            self.tally.left += bool(self.workers)
        while len(self.workers) < size:
            self.tally.joined += bool(self.workers)
            self.start()

    def leave(self) -> None:
        """The oldest worker leaves for good (SIGTERM); the others take its partitions."""
        self.workers.pop(0).stop()
        self.tally.left += bool(self.workers)

    def stop_all(self) -> None:
        """SIGTERM to every worker; each must stop cleanly."""
        for worker in self.workers:
            status = worker.stop()
            assert status == 0, f"a worker exited with {status} on SIGTERM:\n{worker.log_tail()}"
        self.workers.clear()

    def log_tail(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log_tail(20)}" for w in self.workers)

    # -- progress

    async def until(self, done: Callable[[int], bool], *, pool: int | None = None) -> int:
        """Poll until ``done(messages consumed)``, and return that number. A lone worker
        (``pool`` None) must stay alive; a pool of ``pool`` workers is kept topped up."""
        loop = asyncio.get_running_loop()
        best, moved_at = -1, loop.time()
        while loop.time() - moved_at < STALL_MAX_S:
            if pool is None:
                for worker in self.workers:
                    worker.check_alive()
            else:
                self.keep(pool)
            consumed = await self._poll()
            if consumed is not None:
                if done(consumed):
                    return consumed
                if consumed > best:
                    best, moved_at = consumed, loop.time()
            await asyncio.sleep(POLL_S)
        raise AssertionError(
            f"nothing consumed for {STALL_MAX_S}s (at {best} messages; {await self._late()}):"
            f"\n{self.log_tail()}"
        )

    async def _late(self) -> str:
        """Where the late partners are, for a failure message."""
        if self.late_coordinates:
            return "the late registrations are published"
        conn = await asyncpg.connect(admin(self.settings))
        try:
            rows = await conn.fetch(
                "SELECT partner_id, release_outcome, count(*) FROM parked_events"
                " WHERE partner_id = ANY($1::text[]) GROUP BY 1, 2",
                self.traffic.late_partners,
            )
        finally:
            await conn.close()
        return (
            f"the late partners' events parked (partner, released as, count): "
            f"{[tuple(r) for r in rows]} of {len(self.traffic.late_events)}"
        )

    async def _poll(self) -> int | None:
        """Messages consumed, per PostgreSQL (None while it is away). Once every event of
        the late partners is parked, their registrations are published."""
        try:
            conn = await asyncpg.connect(admin(self.settings))
            try:
                if not self.late_coordinates and await self._late_events_parked(conn):
                    sends = [s for s in self.traffic.late_registrations for _ in range(COPIES)]
                    self.late_coordinates = await send_raw(self.settings, sends)
                consumed = await conn.fetchval(
                    "SELECT coalesce(sum(next_offset), 0) FROM consumer_positions"
                    " WHERE group_id = $1",
                    self.settings.consumer_group,
                )
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return None  # PostgreSQL is restarting
        return int(consumed)

    async def _late_events_parked(self, conn: asyncpg.Connection) -> bool:
        parked = await conn.fetchval(
            "SELECT count(*) FROM parked_events WHERE partner_id = ANY($1::text[])",
            self.traffic.late_partners,
        )
        return bool(parked == len(self.traffic.late_events))

    # -- faults

    async def kill_repeatedly(self, kills: int, share: tuple[float, float]) -> None:
        """A lone worker, killed with SIGKILL ``kills`` times and restarted: each time once
        it consumed past a target (the targets spread at random over ``share`` of the
        messages, and past the previous kill), then after a random pause, so the kill falls
        before, during or after a batch's commit. Leaves a worker running."""
        low, high = share
        total = self.traffic.messages
        targets = sorted(int(self.rng.uniform(low, high) * total) for _ in range(kills))
        worker = self.start()
        for target in targets:
            floor = max([target, *(p + 1 for p in self.tally.kill_progress[-1:])])
            await self.until(lambda n, floor=floor: n >= floor)
            await asyncio.sleep(self.rng.uniform(0.0, PAUSE_MAX_S))
            self.kill(worker)
            self.tally.kill_progress.append(await self.until(lambda n: True))
            worker = self.start()

    async def pool_with_restarts(self, stack: Settings, share: tuple[float, float]) -> int:
        """Workers join one by one up to three (each join a rebalance), the broker is
        stopped and restarted, then PostgreSQL, one worker leaves for good (SIGTERM) and a
        new one joins: each step once the messages consumed pass the next of six points
        spread evenly over ``share`` of them. A worker that dies of a restart is replaced.
        Starts from the workers running; returns the size of the pool, left running."""
        low, high = share
        points = [int((low + (high - low) * i / 5) * self.traffic.messages) for i in range(6)]
        size = max(1, len(self.workers))

        async def reach(point: int) -> int:
            return await self.until(lambda n: n >= point, pool=size)

        self.keep(size)
        for point in points[: 3 - size]:
            await reach(point)
            size += 1
            self.keep(size)
        self.tally.restart_progress.append(await reach(points[2]))
        await asyncio.to_thread(kafka.down, stack)
        await asyncio.sleep(2)
        await asyncio.to_thread(kafka.up, stack)
        self.tally.broker_restarts += 1
        self.tally.restart_progress.append(await reach(points[3]))
        await asyncio.to_thread(postgres.down, stack)
        await asyncio.sleep(2)
        await asyncio.to_thread(postgres.up, stack)
        self.tally.database_restarts += 1
        await reach(points[4])
        self.leave()
        size -= 1
        await reach(points[5])
        size += 1
        self.keep(size)
        return size

    async def drain(self, pool: int | None = None) -> None:
        """Wait until the workers consumed every message the topics hold (the late
        registrations and the timer's own commands too) and published every dead letter,
        then stop them. The topics are looked at again SETTLE_S later, as a worker's timer
        may send a command after the last batch."""
        for _ in range(DRAIN_ROUNDS):
            ends = await end_total(self.settings)
            await self.until(lambda n, e=ends: bool(self.late_coordinates) and n >= e, pool=pool)
            await self._until_dead_letters_published()
            await asyncio.sleep(SETTLE_S)
            consumed = await self.until(lambda n: True)
            if consumed == ends and await end_total(self.settings) == ends:
                self.process_s = time.monotonic() - self.processing_from
                self.stop_all()
                return
        raise AssertionError(f"the topics still grew after {DRAIN_ROUNDS} rounds")

    async def _until_dead_letters_published(self) -> None:
        """A batch's dead letters go to their topic after it commits: wait for the last."""
        waiting = -1
        for _ in range(int(STALL_MAX_S / POLL_S)):
            conn = await asyncpg.connect(admin(self.settings))
            try:
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM dead_letters WHERE published_at IS NULL"
                )
            finally:
                await conn.close()
            if waiting == 0:
                return
            await asyncio.sleep(POLL_S)
        raise AssertionError(f"{waiting} dead letters still unpublished:\n{self.log_tail()}")


async def end_total(settings: Settings) -> int:
    """How many messages the source topics hold."""
    return sum((await end_offsets(settings, source_topics(settings))).values())
