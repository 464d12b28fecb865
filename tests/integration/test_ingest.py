"""Ingestion against the real broker and PostgreSQL: every bad input dead-lettered with its
own code, duplicates counted once, unknown partners parked until they register, and every
message accounted for by `incentives reconcile`.

The worker runs as `incentives worker` in a child process, on this test's own topics,
consumer group and database (the `settings` fixture)."""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from ingest_support import (
    MAX_MESSAGE_BYTES,
    Worker,
    admin,
    as_bytes,
    bad_inputs,
    close_period,
    fetch,
    ids,
    keyed,
    payout,
    registration,
    reversal,
    run_cli,
    sale,
    send_raw,
    stateful_poison,
    survey,
    training,
    wait_consumed,
)

from processors.intake.batch import Accepted, BatchProcessor, SourceMessage
from processors.worker.kafka_offsets import partitions
from schemas.codec import RejectCode
from schemas.settings import Settings
from stack.kafka import KafkaPaths


async def test_every_bad_input_is_dead_lettered_with_its_own_code_and_all_is_accounted_for(
    settings: Settings, tmp_path: Path
) -> None:
    """A stream mixing valid events with every kind of bad input: each bad message is
    dead-lettered with its code (in PostgreSQL and on the dead-letter topic, with its
    original bytes), duplicates are counted and not applied, conflicts dead-lettered, the
    unregistered partner's events parked, and reconcile accounts for every message."""
    p1, p2 = registration("P-1"), registration("P-2")
    sold = sale("P-1", "SO-1", ("1", 2, 179800), ("2", 10, 12500))
    returned = reversal("P-1", "SO-1", ("1", 1, 89900))
    reordered = json.dumps(dict(reversed(list(sold.items()))), indent=2).encode()
    ghost = [("sales", sale("P-GHOST", "SO-G1")), ("surveys", survey("P-GHOST"))]
    valid = [
        keyed("partners", p1), keyed("partners", p2), keyed("sales", sold),
        keyed("sales", returned), keyed("surveys", survey("P-1")),
        keyed("trainings", training("P-2")), keyed("commands", payout("P-1")),
        keyed("commands", close_period()), keyed("sales", sale("P-2", "SO-2")),
    ]  # fmt: skip
    stateful = stateful_poison(sold)
    duplicates = [keyed("sales", sold), ("sales", b"P-1", reordered), keyed("partners", p2)]
    bad = bad_inputs() + stateful
    sends = [*valid, *[b[:3] for b in bad], *duplicates, *[keyed(stream, g) for stream, g in ghost]]
    coordinates = await send_raw(settings, sends)
    expected = {coordinates[len(valid) + i]: code for i, (*_, code) in enumerate(bad)}

    with Worker(settings, tmp_path / "worker.log",
                INCENTIVES_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES)) as worker:  # fmt: skip
        published = await wait_consumed(settings, worker)
        assert published == len(sends)
        on_topic = await read_dead_letter_topic(settings, len(expected), worker)

    stored = await fetch(settings, "SELECT * FROM dead_letters")
    assert {(r["topic"], r["partition"], r["kafka_offset"]): r["code"] for r in stored} == {
        c: str(code) for c, code in expected.items()
    }
    assert all(r["published_at"] is not None for r in stored)
    raw_of = {c: value for c, (_, _, value) in zip(coordinates, sends, strict=True)}
    assert {c: (e["code"], e["raw"]) for c, e in on_topic.items()} == {
        c: (str(code), raw_of[c]) for c, code in expected.items()
    }
    log = await fetch(settings, "SELECT outcome, count(*) AS n FROM ingest_log GROUP BY outcome")
    assert {r["outcome"]: r["n"] for r in log} == {
        "applied": len(valid),
        "duplicate": len(duplicates),
        "dead_lettered": len(expected),
        "parked": len(ghost),
    }
    inbox = await fetch(settings, "SELECT event_id FROM inbox")
    assert {r["event_id"] for r in inbox} == {
        uuid.UUID(json.loads(v)["event_id"]) for _, _, v in valid if v is not None
    }
    parked = await fetch(settings, "SELECT event_id FROM parked_events WHERE released_at IS NULL")
    assert {r["event_id"] for r in parked} == ids(g for _, g in ghost)
    # What remains of the order after the one accepted partial return.
    lines = await fetch(settings, "SELECT line_id, quantity_remaining, net_remaining"
                        " FROM sold_lines WHERE order_id = 'SO-1' ORDER BY line_id")  # fmt: skip
    assert [tuple(r) for r in lines] == [("1", 1, 89900), ("2", 10, 12500)]

    done = run_cli(settings, "reconcile")
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"all {len(sends)} messages accounted for" in done.stdout, done.stdout
    listing = run_cli(settings, "deadletters", "--code", "conflict")
    print(listing.stdout)
    assert listing.returncode == 0, listing.stderr
    assert f"{len(expected)} dead letters" in listing.stdout
    assert "conflict: $.event_id" in listing.stdout, listing.stdout


async def read_dead_letter_topic(
    settings: Settings, count: int, worker: Worker, timeout_s: float = 60
) -> dict[tuple[str, int, int], dict[str, Any]]:
    """The envelopes on the dead-letter topic by source coordinates, once ``count`` distinct
    ones arrived (delivery there is at least once, so copies are merged)."""
    topic = settings.topic("deadletters")
    # Upstream teams read the dead letters of what they sent (stack.acls).
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
        **settings.kafka_auth("upstream"),
    )  # fmt: skip
    await consumer.start()
    found: dict[tuple[str, int, int], dict[str, Any]] = {}
    try:
        tps = [TopicPartition(tp.topic, tp.partition)
               for tp in await partitions(settings, "upstream", [topic])]  # fmt: skip
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            worker.check_alive()
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    envelope = json.loads(record.value)
                    source = envelope["source"]
                    where = (source["topic"], source["partition"], source["offset"])
                    assert record.key == f"{where[0]}:{where[1]}:{where[2]}".encode()
                    raw = envelope["raw_base64"]
                    envelope["raw"] = None if raw is None else base64.b64decode(raw)
                    found[where] = envelope
    finally:
        await consumer.stop()
    assert len(found) == count, f"{len(found)} of {count} dead letters on {topic}"
    return found


async def test_unknown_partner_is_parked_then_applied_in_order_when_it_registers(
    settings: Settings, tmp_path: Path
) -> None:
    """Events of an unregistered partner wait (reconcile counts them as parked); its
    registration releases them, in their original order, right after the registration,
    and a released reversal is still checked against the orders."""
    early = [
        ("sales", sale("P-LATE", "SO-L1", ("1", 3, 3000))),
        ("surveys", survey("P-LATE")),
        ("sales", reversal("P-LATE", "SO-L1", ("1", 1, 1000))),
        ("sales", reversal("P-LATE", "SO-L9")),  # its order never existed
        ("commands", payout("P-LATE")),
    ]
    with Worker(settings, tmp_path / "worker.log") as worker:
        await send_raw(settings, [keyed(stream, m) for stream, m in early])
        await wait_consumed(settings, worker)
        waiting = await fetch(settings, "SELECT event_id FROM parked_events"
                              " WHERE released_at IS NULL ORDER BY park_seq")  # fmt: skip
        assert {r["event_id"] for r in waiting} == ids(m for _, m in early)
        assert await fetch(settings, "SELECT * FROM inbox") == []
        done = run_cli(settings, "reconcile")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "all 5 messages accounted for" in done.stdout

        registered = registration("P-LATE")
        await send_raw(settings, [keyed("partners", registered)])
        await wait_consumed(settings, worker)

    applied = await fetch(settings, "SELECT event_id FROM inbox WHERE partner_id = 'P-LATE'"
                          " ORDER BY arrival_seq")  # fmt: skip
    # Parked in the order the worker took them (per topic in offset order), then released
    # in exactly that order after the registration.
    parked_order = [r["event_id"] for r in waiting]
    assert parked_order.index(uuid.UUID(early[0][1]["event_id"])) < parked_order.index(
        uuid.UUID(early[2][1]["event_id"])
    )
    unknown_order = uuid.UUID(early[3][1]["event_id"])
    assert [r["event_id"] for r in applied] == [uuid.UUID(registered["event_id"])] + [
        e for e in parked_order if e != unknown_order
    ]
    dead = await fetch(settings, "SELECT event_id, code FROM dead_letters")
    assert [(r["event_id"], r["code"]) for r in dead] == [(unknown_order, "unknown_order")]
    log = await fetch(settings, "SELECT outcome, count(*) AS n, count(resolved_at) AS resolved"
                      " FROM ingest_log GROUP BY outcome")  # fmt: skip
    assert {r["outcome"]: (r["n"], r["resolved"]) for r in log} == {
        "applied": (5, 4),
        "dead_lettered": (1, 1),
    }
    done = run_cli(settings, "reconcile")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 6 messages accounted for" in done.stdout


async def test_events_from_kafkas_console_producer_are_accepted(
    settings: Settings, tmp_path: Path
) -> None:
    """A non-Python client (Kafka's own console producer, from the fetched jars) publishes
    a registration and a sale; both are applied like any other."""
    registered, sold = registration("P-JAVA"), sale("P-JAVA", "SO-J1")
    for stream, message in (("partners", registered), ("sales", sold)):
        line = f"P-JAVA|{json.dumps(message)}\n".encode()
        console_produce(settings, settings.topic(stream), line)
    with Worker(settings, tmp_path / "worker.log") as worker:
        assert await wait_consumed(settings, worker) == 2
    inbox = await fetch(settings, "SELECT event_id, stream FROM inbox ORDER BY arrival_seq")
    assert {(r["event_id"], r["stream"]) for r in inbox} == {
        (uuid.UUID(registered["event_id"]), "partners"),
        (uuid.UUID(sold["event_id"]), "sales"),
    }
    assert await fetch(settings, "SELECT * FROM dead_letters") == []


def console_produce(settings: Settings, topic: str, lines: bytes) -> None:
    """Kafka's own Java producer, authenticated as docs/integration.md tells upstream teams."""
    libs = KafkaPaths(settings).libs
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "upstream.properties"
        config.write_text(
            "security.protocol=SASL_PLAINTEXT\n"
            f"sasl.mechanism={settings.kafka_sasl_mechanism}\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required"
            f' username="{settings.kafka_user("upstream")}"'
            f' password="{settings.kafka_password("upstream")}";\n'
        )
        done = subprocess.run(
            [
                "java", "-Xmx128m", "-cp", f"{libs}/*", "kafka.tools.ConsoleProducer",
                "--bootstrap-server", settings.bootstrap, "--topic", topic,
                "--producer.config", str(config),
                "--property", "parse.key=true", "--property", "key.separator=|",
                "--producer-property", "acks=all",
            ],
            input=lines,
            capture_output=True,
            timeout=120,
            check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")


# ---------------------------------------------------------------------------------------
# The batch processor in-process, on the real database: what the engine's hook relies on.


def _messages(settings: Settings, *items: tuple[str, dict[str, Any] | bytes]) -> list[
    SourceMessage
]:
    offsets: dict[str, int] = {}
    out = []
    for stream, message in items:
        topic = settings.topic(stream)
        value = message if isinstance(message, bytes) else as_bytes(message)
        partner = b"P-1" if isinstance(message, bytes) else str(message["partner_id"]).encode()
        out.append(SourceMessage(topic, 0, offsets.get(topic, 0), partner, value))
        offsets[topic] = offsets.get(topic, 0) + 1
    return out


def _processor(settings: Settings, hook: Any) -> BatchProcessor:
    return BatchProcessor(
        group=settings.consumer_group,
        streams={settings.topic(s): s for s in ("sales", "surveys", "partners")},
        limits=settings.limits(),
        apply_accepted=hook,
        clock=lambda: datetime(2026, 4, 1, tzinfo=UTC),
    )


async def test_the_hook_sees_accepted_events_in_order_inside_the_batch_transaction(
    settings: Settings,
) -> None:
    """apply_accepted gets the accepted events in acceptance order (a registration, then
    the partner's events parked earlier in the batch), on the batch's connection inside its
    transaction; duplicates and conflicts within one batch are judged like across batches."""
    p1, sold = registration("P-1"), sale("P-1", "SO-1")
    copy, conflict = dict(sold), {**sold, "region": "EU-EAST"}
    seen: list[tuple[list[Accepted], bool]] = []

    async def hook(conn: asyncpg.Connection, accepted: list[Accepted]) -> list[Accepted]:
        inbox = await conn.fetchval("SELECT count(*) FROM inbox")
        seen.append((accepted, conn.is_in_transaction() and inbox == len(accepted)))
        return []

    batch = _messages(
        settings, ("sales", sold), ("sales", copy), ("sales", conflict), ("partners", p1),
        ("surveys", survey("P-1")),
    )  # fmt: skip
    conn = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        report = await _processor(settings, hook).process(conn, batch)
    finally:
        await conn.close()
    [(accepted, in_transaction)] = seen
    assert in_transaction
    assert [type(a.message).__name__ for a in accepted] == [
        "PartnerRegistered", "SaleRecorded", "SurveyCompleted",
    ]  # fmt: skip
    assert [a.released for a in accepted] == [False, True, False]
    assert [a.arrival_seq for a in accepted] == sorted(a.arrival_seq for a in accepted)
    assert (report.applied, report.released, report.duplicates) == (3, 1, 1)
    assert [d.rejection.code for d in report.dead_letters] == [RejectCode.CONFLICT]


async def test_a_failing_hook_rolls_the_whole_batch_back(settings: Settings) -> None:
    """If the engine's hook raises, nothing of the batch is recorded (inbox, log, dead
    letters, positions), so a restarted worker processes it again from the start."""

    class EngineFailed(Exception):
        pass

    async def failing(conn: asyncpg.Connection, accepted: list[Accepted]) -> list[Accepted]:
        raise EngineFailed("chain head moved")

    batch = _messages(settings, ("partners", registration("P-1")), ("sales", b"not json"))
    conn = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        with pytest.raises(EngineFailed):
            await _processor(settings, failing).process(conn, batch)
        counts = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM inbox) AS inbox,
                      (SELECT count(*) FROM ingest_log) AS log,
                      (SELECT count(*) FROM dead_letters) AS dead,
                      (SELECT coalesce(sum(next_offset), 0) FROM consumer_positions) AS pos"""
        )
        assert tuple(counts) == (0, 0, 0, 0)
        report = await _processor(settings, lambda c, a: _nothing()).process(conn, batch)
        assert (report.applied, len(report.dead_letters)) == (1, 1)
    finally:
        await conn.close()


async def _nothing() -> None:
    return None


async def test_the_log_and_the_dead_letters_cannot_be_rewritten(settings: Settings) -> None:
    """PostgreSQL itself refuses to change a recorded outcome (only a parked one is resolved)
    or a dead letter (only its published mark is set), and to delete either."""
    batch = _messages(settings, ("partners", registration("P-1")), ("sales", b"[]"))
    conn = await asyncpg.connect(admin(settings))
    try:
        await _processor(settings, lambda c, a: _nothing()).process(conn, batch)
        for statement in (
            "UPDATE ingest_log SET outcome = 'duplicate' WHERE outcome = 'applied'",
            "DELETE FROM ingest_log",
            "UPDATE dead_letters SET code = 'empty'",
            "DELETE FROM dead_letters",
        ):
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)
        await conn.execute("UPDATE dead_letters SET published_at = now()")
        with pytest.raises(asyncpg.RestrictViolationError):
            await conn.execute("UPDATE dead_letters SET published_at = now()")
    finally:
        await conn.close()


async def test_reconcile_says_plainly_when_messages_are_unaccounted_for(
    settings: Settings,
) -> None:
    """Before any worker ran, everything is pending and accounted for; a position that
    skipped past messages without recording them is reported as UNACCOUNTED, exit 1."""
    [(topic, partition, _), _] = await send_raw(
        settings, [keyed("sales", sale("P-1", "SO-1")), keyed("sales", sale("P-1", "SO-2"))]
    )
    done = run_cli(settings, "reconcile")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 2 messages accounted for (2 still pending)" in done.stdout

    conn = await asyncpg.connect(admin(settings))
    try:
        await conn.execute(
            "INSERT INTO consumer_positions (group_id, topic, partition, next_offset)"
            " VALUES ($1, $2, $3, 2)",
            settings.consumer_group, topic, partition,
        )  # fmt: skip
    finally:
        await conn.close()
    done = run_cli(settings, "reconcile")
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        f"UNACCOUNTED: {topic}: partition {partition}: 2 offsets below the stored position 2"
        " have no ingest_log row"
    ) in done.stdout


async def test_a_failed_batch_stops_the_worker_and_a_new_one_resumes_from_postgresql(
    settings: Settings, tmp_path: Path
) -> None:
    """When a batch's transaction fails for a reason that is not a message's (a table is
    missing), the worker records nothing of it and stops with status 1 rather than consume
    past it; the next worker processes it from the stored position, and publishes the dead
    letters an earlier process left unpublished."""
    registered, first, second = registration("P-1"), sale("P-1", "SO-1"), sale("P-1", "SO-2")
    with Worker(settings, tmp_path / "worker.log") as worker:
        await send_raw(settings, [keyed("partners", registered), keyed("sales", first)])
        await wait_consumed(settings, worker)
    before = await positions_of(settings)

    # Recorded by a process that died before publishing: a dead letter left unpublished.
    [bad] = await send_raw(settings, [("sales", b"P-1", b"{")])
    conn = await asyncpg.connect(admin(settings))
    try:
        processor = _processor(settings, lambda c, a: _nothing())
        await processor.process(conn, [SourceMessage(*bad, b"P-1", b"{")])
        await conn.execute("ALTER TABLE sold_lines RENAME TO sold_lines_away")
    finally:
        await conn.close()

    failing = Worker(settings, tmp_path / "failing.log")
    try:
        await send_raw(settings, [keyed("sales", second)])
        failing.process.wait(timeout=90)
    finally:
        failing.stop()
    assert failing.process.returncode == 1, failing.log_tail()
    # A missing table is no fault of a message: nothing is dead-lettered, nothing retried.
    log = failing.log_path.read_text()
    assert "failed and was rolled back" in log and "not a fault of a message" in log
    assert await positions_of(settings) == {**before, bad[:2]: bad[2] + 1}

    conn = await asyncpg.connect(admin(settings))
    try:
        await conn.execute("ALTER TABLE sold_lines_away RENAME TO sold_lines")
    finally:
        await conn.close()
    with Worker(settings, tmp_path / "worker2.log") as worker:
        await wait_consumed(settings, worker)
        on_topic = await read_dead_letter_topic(settings, 1, worker)
    assert [(e["code"], e["raw"]) for e in on_topic.values()] == [("not_json", b"{")]
    inbox = await fetch(settings, "SELECT event_id FROM inbox")
    assert {r["event_id"] for r in inbox} == ids([registered, first, second])
    [letter] = await fetch(settings, "SELECT published_at FROM dead_letters")
    assert letter["published_at"] is not None


async def positions_of(settings: Settings) -> dict[tuple[str, int], int]:
    rows = await fetch(
        settings,
        "SELECT topic, partition, next_offset FROM consumer_positions WHERE group_id = $1",
        settings.consumer_group,
    )
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
