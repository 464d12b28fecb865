"""The first end-to-end proof: aiokafka -> faust agent -> asyncpg, exactly once."""

from __future__ import annotations

import signal

import asyncpg
from ingest_support import admin

from incentives import smoke
from processors.worker.kafka_offsets import end_offsets
from schemas.settings import Settings
from stack.kafka import ensure_topics

MESSAGES = 12_000


async def test_every_message_lands_exactly_once_across_a_killed_worker(
    settings: Settings, tmp_path
) -> None:
    """Kill the worker with SIGKILL mid-stream; the restarted one resumes from PostgreSQL."""
    await ensure_topics(settings, ["smoke"])
    topic, group = settings.topic("smoke"), settings.consumer_group
    await smoke.publish(settings, topic, MESSAGES)

    log = str(tmp_path / "worker.log")
    worker = smoke.start_worker(settings, topic, group, log)
    try:
        first = await smoke.wait_for_rows(admin(settings), topic, MESSAGES // 4, 120)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert first < MESSAGES, "the kill must land mid-stream for this test to prove anything"

    worker = smoke.start_worker(settings, topic, group, log)
    try:
        await smoke.wait_for_rows(admin(settings), topic, MESSAGES, 180)
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    conn = await asyncpg.connect(admin(settings))
    try:
        values = await conn.fetch("SELECT value FROM smoke_deliveries WHERE topic = $1", topic)
        stored = await conn.fetch(
            "SELECT partition, next_offset FROM consumer_positions WHERE group_id = $1", group
        )
    finally:
        await conn.close()
    assert sorted(int(r["value"]) for r in values) == list(range(MESSAGES))
    # The positions in PostgreSQL are exactly the end of every partition: nothing pending,
    # nothing skipped past.
    ends = await end_offsets(settings, [topic], "worker")
    assert len(ends) == settings.topic_partitions
    assert {r["partition"]: r["next_offset"] for r in stored} == {
        p: end for (_, p), end in ends.items() if end > 0
    }
