"""Least privilege on the real stack: every process has its own role, every door a key.

PostgreSQL: the worker's sessions are the writer role's, which is no superuser and can
neither change history nor switch the triggers off; the reader cannot write, the auditor
reads everything and writes only checkpoints; a connection without the right password is
refused, and the socket is the server user's alone. Kafka: a client without credentials
or with a wrong password is refused; each principal writes only its own topics, so the
upstream and worker principals cannot publish a finance command; the worker's own topic
carries only the timer's commands; and the inbox records, with each command, the
principal its topic proves. No password is printed by `stack status`, the worker's log or
/health.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import stat
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAuthorizationFailedError
from ingest_support import (
    Worker,
    admin,
    as_bytes,
    close_period,
    fetch,
    keyed,
    new_id,
    payout,
    registration,
    run_cli,
    send_raw,
    wait_consumed,
)

from ledger.core import (
    GENESIS_HASH,
    PAYOUT_CLEARING,
    ChainHead,
    Draft,
    Explanation,
    Posting,
    RecordKind,
    append,
    partner_available,
)
from ledger.store import append as store_append
from processors.worker.app import APPLICATION_NAME
from schemas.settings import LOCAL_PG_ROLES, PgRole, Settings, read_secrets
from stack.postgres import PgPaths

AT = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
# What asyncpg raises for a password the server refuses (or none where one is required).
REFUSED = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)


async def _connect(settings: Settings, role: PgRole) -> asyncpg.Connection:
    return await asyncpg.connect(settings.pg_dsn(role))


@pytest.fixture
async def recorded(settings: Settings) -> AsyncIterator[str]:
    """A partner with one ledger record, appended by the writer as a worker would."""
    partner = "P-LP1"
    draft = Draft(
        partner_id=partner, kind=RecordKind.PAYOUT, leg="payout", occurred_at=AT,
        recorded_at=AT, source_event_ids=(uuid.uuid4(),),
        explanation=Explanation(summary="payout", author="finance-desk", reason="test"),
        postings=(Posting(partner_available(partner), "EUR", -100),
                  Posting(PAYOUT_CLEARING, "EUR", 100)),
    )  # fmt: skip
    records, _ = append(ChainHead(partner, 0, GENESIS_HASH), [draft])
    conn = await _connect(settings, "writer")
    try:
        async with conn.transaction():
            await store_append(conn, records)
    finally:
        await conn.close()
    yield partner


async def test_the_writer_cannot_change_history_nor_switch_the_triggers_off(
    settings: Settings, recorded: str
) -> None:
    conn = await _connect(settings, "writer")
    try:
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = session_user")\
            is False  # fmt: skip
        refused = [
            "UPDATE ledger_records SET explanation = '{}'",
            "DELETE FROM ledger_records",
            "UPDATE ledger_postings SET amount = 1000000",
            "DELETE FROM ledger_postings",
            "TRUNCATE ledger_records CASCADE",
            "UPDATE inbox SET body = ''::bytea",
            "SET session_replication_role = replica",
            "ALTER TABLE ledger_records DISABLE TRIGGER USER",
            "INSERT INTO program_versions (program_id, version, content_sha256, source_name,"
            " source_text, effective_from, published_by) VALUES ('x', 1, repeat('0', 64),"
            " 'x', ''::bytea, '2026-01-01', 'x')",
            "CREATE TABLE smuggled (x int)",
        ]
        for statement in refused:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
        assert await conn.fetchval("SHOW session_replication_role") == "origin"
        assert await conn.fetchval("SELECT count(*) FROM ledger_records") == 1
    finally:
        await conn.close()


async def test_the_reader_cannot_write_and_the_auditor_writes_only_checkpoints(
    settings: Settings, recorded: str
) -> None:
    reader = await _connect(settings, "reader")
    try:
        assert await reader.fetchval("SELECT count(*) FROM ledger_records") == 1
        for statement in (
            "INSERT INTO partner_months SELECT * FROM partner_months",
            "UPDATE partner_months SET available = available + 1",
            "DELETE FROM partner_tiers",
            "INSERT INTO chain_checkpoints SELECT * FROM chain_checkpoints",
            "SELECT count(*) FROM inbox",  # the raw inputs are the auditor's, not finance's
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute(statement)
    finally:
        await reader.close()
    auditor = await _connect(settings, "auditor")
    try:
        assert await auditor.fetchval("SELECT count(*) FROM inbox") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await auditor.execute("DELETE FROM ledger_records")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await auditor.execute("UPDATE partner_state SET head_seq = 0")
    finally:
        await auditor.close()
    done = run_cli(settings, "audit", "checkpoint")
    assert done.returncode == 0, done.stderr
    [row] = await fetch(settings, "SELECT partner_count FROM chain_checkpoints")
    assert row["partner_count"] == 1


async def test_a_connection_without_the_right_password_is_refused(settings: Settings) -> None:
    writer = LOCAL_PG_ROLES["writer"]
    database = settings.pg_database
    for dsn in (
        f"postgresql://{writer}@127.0.0.1:{settings.pg_port}/{database}",
        f"postgresql://{writer}:wrong@127.0.0.1:{settings.pg_port}/{database}",
        f"postgresql://postgres@127.0.0.1:{settings.pg_port}/{database}",
        # The socket as the superuser, which `trust` let in before.
        f"postgresql://postgres@/{database}?host={PgPaths(settings).run}&port={settings.pg_port}",
    ):
        with pytest.raises(REFUSED):
            conn = await asyncpg.connect(dsn, timeout=10)
            await conn.close()
    hba = (PgPaths(settings).data / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules), hba
    socket = PgPaths(settings).run / f".s.PGSQL.{settings.pg_port}"
    assert socket.is_socket()
    assert stat.S_IMODE(socket.stat().st_mode) & 0o077 == 0, oct(socket.stat().st_mode)
    assert stat.S_IMODE(settings.secrets_path.stat().st_mode) == 0o600


async def _send(settings: Settings, stream: str, value: bytes, **auth: object) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, request_timeout_ms=10_000, **auth
    )
    try:
        await asyncio.wait_for(producer.start(), 30)
        await asyncio.wait_for(
            producer.send_and_wait(settings.topic(stream), value, key=b"P-1"), 30
        )
    finally:
        await producer.stop()


async def test_kafka_refuses_strangers_and_each_principal_writes_only_its_topics(
    settings: Settings,
) -> None:
    command = as_bytes(payout("P-1"))
    with pytest.raises(KafkaConnectionError):  # no credentials at all
        await _send(settings, "sales", b"{}")
    wrong = {**settings.kafka_auth("upstream"), "sasl_plain_password": "guessed"}
    with pytest.raises(KafkaError):
        await _send(settings, "sales", b"{}", **wrong)
    for principal in ("upstream", "worker", "auditor"):
        with pytest.raises(TopicAuthorizationFailedError):
            await _send(settings, "commands", command, **settings.kafka_auth(principal))
    for principal, stream in (("finance", "sales"), ("upstream", "clock"),
                              ("finance", "clock"), ("worker", "partners")):  # fmt: skip
        with pytest.raises(TopicAuthorizationFailedError):
            await _send(settings, stream, b"{}", **settings.kafka_auth(principal))
    await _send(settings, "commands", command, **settings.kafka_auth("finance"))
    # Reading is as narrow: upstream sees its dead letters, not finance's commands.
    consumer = AIOKafkaConsumer(
        settings.topic("commands"), bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest", enable_auto_commit=False,
        **settings.kafka_auth("upstream"),
    )  # fmt: skip
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await consumer.start()
            await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()


async def test_the_worker_is_the_writer_and_records_who_published_each_command(
    settings: Settings, tmp_path: Path
) -> None:
    """Run as a user runs it, the worker's sessions are the writer's; a finance command on
    the worker's clock topic (as a stolen worker password could send) is dead-lettered,
    the timer's own are applied, and each accepted message names its principal."""
    registered = registration("P-1")
    adjustment = {
        "type": "AdjustBalance", "event_id": new_id(), "occurred_at": "2026-03-05T10:00:00Z",
        "partner_id": "P-1", "asset": "EUR", "amount": 1_000, "author": "j.doe",
        "reason": "goodwill",
    }  # fmt: skip
    smuggled = {**payout("P-1"), "occurred_at": "2026-03-06T10:00:00Z"}
    close = close_period()
    with Worker(settings, tmp_path / "worker.log") as worker:
        await send_raw(settings, [keyed("partners", registered)])
        await send_raw(settings, [keyed("commands", adjustment)])
        await send_raw(settings, [keyed("clock", smuggled), keyed("clock", close)])
        await wait_consumed(settings, worker)
        sessions = await fetch(
            settings,
            "SELECT DISTINCT a.usename, r.rolsuper FROM pg_stat_activity a"
            " JOIN pg_roles r ON r.rolname = a.usename"
            " WHERE a.datname = current_database() AND a.application_name = $1",
            APPLICATION_NAME,
        )
        health = await _health(worker)
    assert [tuple(r) for r in sessions] == [(LOCAL_PG_ROLES["writer"], False)]
    inbox = await fetch(settings, "SELECT event_id, stream, principal FROM inbox")
    assert {(str(r["event_id"]), r["stream"], r["principal"]) for r in inbox} == {
        (registered["event_id"], "partners", "upstream"),
        (adjustment["event_id"], "commands", "finance"),
        (close["event_id"], "clock", "worker"),
    }
    [letter] = await fetch(settings, "SELECT event_id, code, message FROM dead_letters")
    assert (str(letter["event_id"]), letter["code"]) == (smuggled["event_id"], "unknown_type")
    assert "belongs on stream 'commands'" in letter["message"]
    reader = await _connect(settings, "reader")
    try:
        [provenance] = await reader.fetch(
            "SELECT principal, author FROM command_provenance WHERE event_type = 'AdjustBalance'"
        )
    finally:
        await reader.close()
    assert tuple(provenance) == ("finance", "j.doe")
    _assert_no_secret(settings, json.dumps(health), worker.log_path.read_text())


async def _health(worker: Worker, timeout_s: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in worker.log_path.read_text().splitlines():
            if "metrics and health on http://" in line:
                url = line[line.index("http://"):].split()[0]
                async with aiohttp.ClientSession() as session, session.get(url + "/health") as r:
                    body: dict[str, object] = await r.json()
                    return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"no metrics address logged\n{worker.log_tail()}")


def _assert_no_secret(settings: Settings, *texts: str) -> None:
    tables = read_secrets(settings.secrets_path).values()
    passwords = [password for table in tables for password in table.values()]
    assert len(passwords) >= 10
    for text in texts:
        assert not [p for p in passwords if p in text]


async def test_status_and_settings_print_no_password(settings: Settings) -> None:
    done = run_cli(settings, "stack", "status")
    assert done.returncode == 0, done.stderr
    assert "scram-sha-256" in done.stdout and "SASL/SCRAM" in done.stdout
    shown = repr(settings) + str(settings)
    assert "pg_writer_dsn=''" in shown
    with_dsn = repr(type(settings)(pg_writer_dsn=admin(settings), kafka_worker_password="pw1"))
    _assert_no_secret(settings, done.stdout, done.stderr, shown, with_dsn)
    assert "pw1" not in with_dsn and ":***@" in with_dsn
    assert os.environ.get("INCENTIVES_PG_DSN") is None


async def test_a_database_name_with_quotes_is_one_name(stack_settings: Settings) -> None:
    """`stack up` creates the configured database as a quoted identifier (it was pasted
    into CREATE DATABASE "..." before) and the owner migrates it."""
    import msgspec

    from stack.postgres import admin_dsn, create_database

    odd = msgspec.structs.replace(stack_settings, pg_database='odd "name"; DROP x')
    try:
        await create_database(odd)
        conn = await asyncpg.connect(odd.pg_dsn("reader"))
        try:
            assert await conn.fetchval("SELECT current_database()") == 'odd "name"; DROP x'
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 10
        finally:
            await conn.close()
    finally:
        conn = await asyncpg.connect(admin_dsn(stack_settings, "postgres"))
        try:
            await conn.execute('DROP DATABASE IF EXISTS "odd ""name""; DROP x" WITH (FORCE)')
        finally:
            await conn.close()
