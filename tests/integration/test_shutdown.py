"""Graceful shutdown: SIGTERM in the middle of a backlog stops the worker with status 0, the
batch in hand either committed whole or not at all, and a new worker finishes the rest with
nothing lost or doubled."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import msgspec
from ingest_support import Worker, fetch, positions, wait_consumed

from incentives.publisher import Publisher
from incentives.sample_data import generate
from ledger import program_store
from schemas.program_loader import load_program
from schemas.settings import Settings
from schemas.streams import ANY

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"


async def _accounted(settings: Settings) -> tuple[int, int]:
    """Messages consumed per the stored positions, and outcomes recorded for them."""
    consumed = sum((await positions(settings)).values())
    [row] = await fetch(settings, "SELECT count(*) AS n FROM ingest_log")
    return consumed, row["n"]


async def test_sigterm_mid_backlog_stops_cleanly_and_a_new_worker_finishes(
    settings: Settings, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    await program_store.publish(conn, load_program(EXAMPLE), published_by="test")
    await conn.close()
    messages = [ANY.decode(msgspec.json.encode(m)) for m in generate(partners=30, sales=6_000)]
    async with Publisher(settings) as publisher:
        for message in messages:
            await publisher.publish(message)
    log = tmp_path / "worker.log"

    worker = Worker(settings, log)
    deadline = asyncio.get_running_loop().time() + 90
    while (await _accounted(settings))[0] == 0:
        worker.check_alive()
        assert asyncio.get_running_loop().time() < deadline, worker.log_tail()
        await asyncio.sleep(0.02)
    worker.process.send_signal(signal.SIGTERM)
    status = await asyncio.to_thread(worker.process.wait, 60)
    consumed, recorded = await _accounted(settings)

    assert status == 0, worker.log_tail()
    assert "Traceback" not in log.read_text(), worker.log_tail()
    assert 0 < consumed < len(messages), "the stop landed mid-backlog"
    assert recorded == consumed, "every consumed message has its outcome, none half-written"

    with Worker(settings, log) as worker:
        # The topics also hold what the workers' timer sent (month closes, clock advances),
        # one more whenever event time passes a step while the test runs.
        assert await wait_consumed(settings, worker) >= len(messages)
    inbox = await fetch(settings, "SELECT event_id, event_type FROM inbox")
    ids = [r["event_id"] for r in inbox]
    assert len(ids) == len(set(ids)), "no event accepted twice"
    published = {m.event_id for m in messages}
    assert published <= set(ids), "none lost"
    # Besides: what the worker's timer sent (month closes and clock advances).
    extra = {r["event_type"] for r in inbox if r["event_id"] not in published}
    assert extra <= {"ClosePeriod", "AdvanceClock"}
