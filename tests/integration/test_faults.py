"""Fault suite: whatever crashes, every accepted event yields its records exactly once.

The sample quarter is published twice (every event a duplicate), the worker is killed with
SIGKILL at random moments and restarted, and the result is checked against a reference
ledger computed offline by the pure runner from the stored events in their stored order:
identical record ids and chain heads, nothing missing, nothing doubled, a clean audit.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from ledger import program_store
from ledger.store import verify_ledger
from processors.engine import compile_program
from processors.publisher import Publisher
from processors.runner import Books, run
from processors.sample_data import generate
from schemas.program_loader import load_program
from schemas.settings import Settings
from schemas.streams import ANY
from stack import kafka, postgres
from tests.integration.ingest_support import Worker, positions, run_cli, wait_consumed

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
KILLS = 8


async def _publish_twice(settings: Settings, partners: int, sales: int) -> int:
    messages = [ANY.decode(_json(m)) for m in generate(partners=partners, sales=sales)]
    async with Publisher(settings) as publisher:
        for _ in range(2):
            for message in messages:
                await publisher.publish(message)
    return len(messages)


def _json(raw: dict[str, object]) -> bytes:
    import msgspec

    return msgspec.json.encode(raw)


async def _consumed(settings: Settings) -> int:
    return sum((await positions(settings)).values())


async def _until(
    probe: Callable[[], Awaitable[int]], done: Callable[[int], bool], worker: Worker
) -> None:
    deadline = asyncio.get_running_loop().time() + 90
    while asyncio.get_running_loop().time() < deadline:
        worker.check_alive()
        if done(await probe()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no progress within 90s:\n{worker.log_tail()}")


async def test_killed_worker_and_duplicates_give_the_reference_ledger(
    settings: Settings, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(settings.dsn)
    await program_store.publish(conn, load_program(EXAMPLE), published_by="fault-suite")
    await conn.close()
    published = await _publish_twice(settings, partners=40, sales=4_000)

    rng = random.Random(7)
    log = tmp_path / "worker.log"
    kills = 0
    progress: list[int] = []  # messages consumed (per PostgreSQL) at each kill
    for _ in range(KILLS):
        worker = Worker(settings, log)
        # Kill only once this worker has committed some batches, at a random moment after:
        # before, during or after its next commit.
        before = progress[-1] if progress else 0
        await _until(
            lambda: _consumed(settings),
            lambda n, floor=before: n > floor or n >= 2 * published,
            worker,
        )
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=30)
        kills += 1
        progress.append(await _consumed(settings))
    with Worker(settings, log) as worker:
        await wait_consumed(settings, worker, timeout_s=240)

    await _assert_reference_ledger(settings, published)
    assert kills == KILLS
    print(f"kills survived: {kills}; messages consumed at each kill: {progress}")
    # The kills must land mid-stream, with progress between them, to prove anything.
    mid_stream = [p for p in progress if 0 < p < 2 * published]
    assert len(mid_stream) >= KILLS // 2 and len(set(mid_stream)) >= 2, progress

    reconciled = run_cli(settings, "reconcile")
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert f"all {2 * published} messages accounted for" in reconciled.stdout


async def _assert_reference_ledger(settings: Settings, published: int) -> None:
    """Every distinct event accepted once, every copy counted, and the stored ledger equal
    to the one the pure runner computes offline from the stored events, in stored order."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        bodies = await conn.fetch("SELECT body FROM inbox ORDER BY arrival_seq")
        stored = await conn.fetch(
            "SELECT record_id, partner_id, seq, hash FROM ledger_records ORDER BY partner_id, seq"
        )
        heads = await conn.fetch("SELECT partner_id, head_seq, head_hash FROM partner_state")
        duplicates = await conn.fetchval(
            "SELECT count(*) FROM ingest_log WHERE outcome = 'duplicate'"
        )
        outcomes = await conn.fetch(
            "SELECT outcome, code, count(*) FROM ingest_log GROUP BY 1, 2 ORDER BY 1, 2"
        )
        report = await verify_ledger(conn)
    finally:
        await conn.close()

    assert len(bodies) == published, [tuple(r) for r in outcomes]
    assert duplicates == published, "every second copy counted as a duplicate"
    reference = Books()
    expected = run(
        [ANY.decode(bytes(r["body"])) for r in bodies],  # type: ignore[misc]
        reference,
        [compile_program(load_program(EXAMPLE).program)],
    )
    assert [
        (r.record_id, r.partner_id, r.seq, r.hash)
        for r in sorted(expected.records, key=lambda r: (r.partner_id, r.seq))
    ] == [(r["record_id"], r["partner_id"], r["seq"], bytes(r["hash"])) for r in stored]
    assert {
        r["partner_id"]: (r["head_seq"], bytes(r["head_hash"])) for r in heads if r["head_seq"]
    } == {p: (h.seq, h.hash) for p, h in reference.heads.items()}
    assert report.findings == []


async def test_broker_and_database_restarts_with_three_workers_give_the_reference_ledger(
    settings: Settings, stack_settings: Settings, tmp_path: Path
) -> None:
    """Three workers share the partitions (rebalancing as they join), the broker is stopped
    and restarted mid-stream, then PostgreSQL is; workers that die of it are restarted,
    one leaves for good; the ledger is still exactly the reference."""
    conn = await asyncpg.connect(settings.dsn)
    await program_store.publish(conn, load_program(EXAMPLE), published_by="fault-suite")
    await conn.close()
    published = await _publish_twice(settings, partners=40, sales=4_000)
    pool = _Pool(settings, tmp_path, size=3)

    await pool.until(lambda n: n > 0)
    await asyncio.to_thread(kafka.down, stack_settings)
    await asyncio.sleep(2)
    await asyncio.to_thread(kafka.up, stack_settings)
    after_broker = await _consumed(settings)
    await pool.until(lambda n: n > after_broker)
    await asyncio.to_thread(postgres.down, stack_settings)
    await asyncio.sleep(2)
    await asyncio.to_thread(postgres.up, stack_settings)
    pool.leave()
    await pool.until(lambda n: n >= 2 * published, timeout_s=240)
    pool.stop()

    await _assert_reference_ledger(settings, published)
    print(f"workers started: {pool.started}; died and restarted: {pool.restarted}")


class _Pool:
    """`size` workers kept alive: a worker that died (its batch failed when a service went
    away) is replaced, as an orchestrator would."""

    def __init__(self, settings: Settings, folder: Path, size: int) -> None:
        self.settings, self.folder, self.size = settings, folder, size
        self.workers: list[Worker] = []
        self.started = self.restarted = 0

    def _top_up(self) -> None:
        alive = [w for w in self.workers if w.process.poll() is None]
        self.restarted += len(self.workers) - len(alive)
        self.workers = alive
        while len(self.workers) < self.size:
            self.started += 1
            self.workers.append(Worker(self.settings, self.folder / f"w{self.started}.log"))

    async def until(self, done: Callable[[int], bool], timeout_s: float = 120) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            self._top_up()
            try:
                if done(await _consumed(self.settings)):
                    return
            except (OSError, asyncpg.PostgresError):
                pass  # PostgreSQL is restarting.
            await asyncio.sleep(0.2)
        raise AssertionError(f"no progress within {timeout_s}s:\n{self.workers[0].log_tail()}")

    def leave(self) -> None:
        """One worker leaves for good (SIGTERM); the others take its partitions."""
        self.workers.pop(0).stop()
        self.size -= 1

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
