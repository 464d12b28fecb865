"""Refusals committed but not published: the outbox of ``command_refusals``. A worker that
died after committing refusals leaves them to the worker assigned their partitions next;
``publish_pending`` sends a partition's unpublished refusals once and marks them, and
PostgreSQL lets no one change or delete a refusal or mark it twice. (The refusals
themselves, through the worker, are in ``test_finance_commands.py``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from finance_support import (
    assert_published_as_recorded,
    pay,
    published_refusals,
    read_topic,
    redeem,
    refusal_rows,
    uid,
    worker_of,
)
from ingest_support import (
    admin,
    keyed,
    registration,
    send_raw,
)

from processors.intake.batch import BatchProcessor, SourceMessage
from processors.outbox import refusals
from processors.worker.app import SOURCE_STREAMS
from processors.writer import ledger as ledger_writer
from schemas.outcomes import REFUSALS
from schemas.settings import Settings

# ---------------------------------------------------------------------------------------
# The outbox: refusals committed but not published.


async def commit_without_publishing(
    settings: Settings, messages: list[tuple[str, dict[str, Any]]]
) -> list[tuple[str, int, int]]:
    """Send ``messages`` to Kafka and process them as a worker would, in this process,
    up to the commit, and no further: like a worker killed right after the commit. Returns
    where each message is on Kafka."""
    sends = [keyed(stream, m) for stream, m in messages]
    where = await send_raw(settings, sends)
    processor = BatchProcessor(
        group=settings.consumer_group,
        streams={settings.topic(s): s for s in SOURCE_STREAMS},
        limits=settings.limits(),
        apply_accepted=ledger_writer.hook(),
    )
    batch = [SourceMessage(t, p, o, key, value)
             for (t, p, o), (_, key, value) in zip(where, sends, strict=True)]  # fmt: skip
    conn = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        report = await processor.process(conn, batch)
    finally:
        await conn.close()
    assert report.applied == len(messages)
    return where


def overdraft(partner: str) -> list[tuple[str, dict[str, Any]]]:
    """A registration and two commands the rules refuse: nothing to pay out, no program."""
    return [
        ("partners", registration(partner)),
        ("commands", pay(partner, 1)),
        ("commands", redeem(partner, 5_000, "gift-card-50")),
    ]


async def test_the_next_worker_publishes_refusals_a_dead_worker_committed(
    settings: Settings, tmp_path: Path
) -> None:
    """Refusals committed by a worker that died before publishing them are published by
    the worker assigned their partitions next, before it has anything to consume."""
    sent = overdraft("P-DEAD")
    await commit_without_publishing(settings, sent)
    rows = await refusal_rows(settings)
    assert {r["code"] for r in rows.values()} == {"insufficient_balance", "unknown_reward"}
    assert all(r["published_at"] is None for r in rows.values())

    with worker_of(settings, tmp_path) as worker:
        published = await published_refusals(settings, worker)
    assert_published_as_recorded(published, await refusal_rows(settings))
    assert set(published) == {uid(m) for _, m in sent[1:]}


async def test_publish_pending_sends_unpublished_refusals_of_its_partitions_and_marks_once(
    settings: Settings,
) -> None:
    """``publish_pending`` sends the unpublished refusals of the source partitions it is
    given (none of another partition), marks them, and sends nothing the second time;
    PostgreSQL refuses to mark a refusal twice or change or delete it."""
    where = await commit_without_publishing(settings, overdraft("P-OUT"))
    topic, partition, _ = where[1]
    other = (topic, (partition + 1) % settings.topic_partitions)
    conn = await asyncpg.connect(settings.pg_dsn("writer"))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all",
                                enable_idempotence=True,
                                **settings.kafka_auth("worker"))  # fmt: skip
    await producer.start()
    try:
        out = settings.topic(REFUSALS)
        assert await refusals.publish_pending(conn, producer, out, [other]) == 0
        assert await refusals.publish_pending(conn, producer, out, [(topic, partition)]) == 2
        assert await refusals.publish_pending(conn, producer, out, [(topic, partition)]) == 0
        rows = await refusal_rows(settings)
        assert len(rows) == 2 and all(r["published_at"] is not None for r in rows.values())
        published = await published_refusals(settings)
        assert_published_as_recorded(published, rows)
        assert len(await read_topic(settings, out, 30)) == 2, "each sent once"

        event_id = next(iter(rows))
        # The triggers refuse it to everyone, the superuser included.
        superuser = await asyncpg.connect(admin(settings))
        try:
            for statement in (
                "UPDATE command_refusals SET published_at = now() WHERE event_id = $1",
                "UPDATE command_refusals SET code = 'forgiven' WHERE event_id = $1",
                "DELETE FROM command_refusals WHERE event_id = $1",
            ):
                with pytest.raises(asyncpg.RestrictViolationError):
                    await superuser.execute(statement, event_id)
        finally:
            await superuser.close()
        # The writer may set the mark (once: the trigger) and nothing else, trigger or not.
        with pytest.raises(asyncpg.RestrictViolationError):
            await conn.execute("UPDATE command_refusals SET published_at = now()"
                               " WHERE event_id = $1", event_id)  # fmt: skip
        for statement in ("UPDATE command_refusals SET code = 'forgiven' WHERE event_id = $1",
                          "DELETE FROM command_refusals WHERE event_id = $1"):  # fmt: skip
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement, event_id)
        assert await refusal_rows(settings) == rows
    finally:
        await producer.stop()
        await conn.close()
