"""Helpers for the ingestion tests: the worker as a subprocess, raw sends, polling with
deadlines, the CLI run as a user runs it, and messages as upstream systems write them,
good and bad (``bad_inputs``, ``stateful_poison``: one of every reject code). Every wait is
bounded and fails with what it saw, and a worker that died is reported with the tail of its
log rather than waited for."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from processors.worker.app import SOURCE_STREAMS
from processors.worker.kafka_offsets import end_offsets
from schemas.codec import RejectCode
from schemas.principals import publisher_of
from schemas.settings import PG_ROLES, Principal, Settings
from stack.postgres import admin_dsn

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Below Kafka's own limit of about 1 MB, so that `too_large` is the worker's verdict; a
# worker given it as INCENTIVES_MAX_MESSAGE_BYTES rejects ``bad_inputs``' padded sale.
MAX_MESSAGE_BYTES = 4096
# Acknowledgements awaited at once by ``send_raw``; bounds memory on a large send.
SEND_IN_FLIGHT_MAX = 10_000


def admin(settings: Settings) -> str:
    """The superuser's DSN of this test's database: for the test's own set-up and looks
    into it, never for what the test runs (that connects as its own role)."""
    return admin_dsn(settings, settings.pg_database)


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that points a child process at this test's database and topics;
    it finds its role's password where this process does (the stack's secrets file)."""
    env = dict(os.environ)
    env.update(
        INCENTIVES_PG_DATABASE=settings.pg_database,
        INCENTIVES_SECRETS_FILE=str(settings.secrets_path),
        INCENTIVES_KAFKA_BOOTSTRAP=settings.bootstrap,
        INCENTIVES_TOPIC_PREFIX=settings.topic_prefix,
        INCENTIVES_CONSUMER_GROUP=settings.consumer_group,
        INCENTIVES_STACK_DIR=settings.stack_dir,
    )
    for role in PG_ROLES:  # a role's DSN a test set itself
        if dsn := getattr(settings, f"pg_{role}_dsn"):
            env[f"INCENTIVES_PG_{role.upper()}_DSN"] = dsn
    env.update(extra)
    return env


def run_cli(
    settings: Settings, *args: str, stdin: bytes | None = None, timeout_s: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """``incentives ARGS`` in a child process, as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "incentives.cli", *args],
        input=stdin,
        capture_output=True,
        env=env_for(settings, **env),
        cwd=PROJECT_ROOT,
        timeout=timeout_s,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


class Worker:
    """``incentives worker`` as a child process; stopped with SIGTERM on leaving."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        # faust's data folder goes beside the log, not into the shared stack folder.
        env.setdefault("INCENTIVES_STACK_DIR", str(log_path.parent))
        # A free port for /metrics, so that workers side by side (and other sessions'
        # workers on this machine) do not fight over the default one.
        env.setdefault("INCENTIVES_METRICS_PORT", "0")
        # Workers of one test, and of test sessions side by side, each need their own
        # metrics port: the system picks a free one unless a test names one.
        env.setdefault("INCENTIVES_METRICS_PORT", "0")
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "incentives.cli", "worker"],
                env=env_for(settings, **env),
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        status = self.stop()
        # A clean run must also stop cleanly on SIGTERM: a crash there would hide problems.
        if exc is None and status != 0:
            raise AssertionError(f"the worker exited with {status} on SIGTERM:\n{self.log_tail()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def check_alive(self) -> None:
        status = self.process.poll()
        if status is not None:
            raise AssertionError(f"the worker exited with {status}:\n{self.log_tail()}")


def source_topics(settings: Settings) -> list[str]:
    return [settings.topic(s) for s in SOURCE_STREAMS]


async def positions(settings: Settings) -> dict[tuple[str, int], int]:
    conn = await asyncpg.connect(admin(settings))
    try:
        rows = await conn.fetch(
            "SELECT topic, partition, next_offset FROM consumer_positions WHERE group_id = $1",
            settings.consumer_group,
        )
    finally:
        await conn.close()
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def wait_consumed(settings: Settings, worker: Worker, timeout_s: float = 90) -> int:
    """Wait until the stored positions reach Kafka's end offsets on every source partition;
    return how many messages the topics hold."""
    ends = {
        tp: end
        for tp, end in (await end_offsets(settings, source_topics(settings))).items()
        if end > 0
    }
    deadline = time.monotonic() + timeout_s
    stored: dict[tuple[str, int], int] = {}
    while time.monotonic() < deadline:
        worker.check_alive()
        stored = await positions(settings)
        if all(stored.get(tp, 0) >= end for tp, end in ends.items()):
            return sum(ends.values())
        await asyncio.sleep(0.2)
    behind = {tp: (stored.get(tp, 0), end) for tp, end in ends.items() if stored.get(tp, 0) < end}
    raise AssertionError(
        f"positions did not reach the end offsets within {timeout_s}s; behind (stored, end):"
        f" {behind}\n{worker.log_tail()}"
    )


Send = tuple[str, bytes | None, bytes | None]  # (stream, key, value)


async def send_raw(
    settings: Settings, messages: Sequence[Send], *, as_principal: Principal | None = None
) -> list[tuple[str, int, int]]:
    """Send raw bytes in order, wait for acknowledgement; return (topic, partition, offset)
    of each message. Each goes out as the principal that may write its topic (or
    ``as_principal``). The idempotent producers keep each partition's messages in the order
    given; at most SEND_IN_FLIGHT_MAX wait for their acknowledgement at a time."""
    producers: dict[Principal, AIOKafkaProducer] = {}

    async def producer_for(stream: str) -> AIOKafkaProducer:
        principal = as_principal or publisher_of(stream)
        if principal not in producers:
            producers[principal] = AIOKafkaProducer(
                bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=True,
                linger_ms=5, **settings.kafka_auth(principal),
            )  # fmt: skip
            await producers[principal].start()
        return producers[principal]

    coordinates: list[tuple[str, int, int]] = []
    try:
        for start in range(0, len(messages), SEND_IN_FLIGHT_MAX):
            futures = [
                await (await producer_for(stream)).send(
                    settings.topic(stream), value=value, key=key
                )
                for stream, key, value in messages[start : start + SEND_IN_FLIGHT_MAX]
            ]
            sent = await asyncio.gather(*futures)
            coordinates += [(m.topic, m.partition, m.offset) for m in sent]
    finally:
        for producer in producers.values():
            await producer.stop()
    return coordinates


async def fetch(settings: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(admin(settings))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------
# Messages as upstream systems write them (dicts, so tests can break them at will).


# Random unless seeded: the fault suite seeds it, so that its traffic is the same each run.
_ID_SOURCE = random.Random()


def seed_ids(seed: int) -> None:
    """Make the ids ``new_id`` hands out from now on a repeatable sequence."""
    _ID_SOURCE.seed(seed)


def new_id() -> str:
    return str(uuid.UUID(int=_ID_SOURCE.getrandbits(128), version=4))


def registration(partner: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "PartnerRegistered",
        "event_id": new_id(),
        "occurred_at": "2026-01-05T10:00:00Z",
        "partner_id": partner,
        "kind": "reseller",
        "region": "EU-WEST",
        "joined_on": "2026-01-05",
        "status": "active",
        **fields,
    }


def sale(partner: str, order: str, *lines: tuple[str, int, int], **fields: Any) -> dict[str, Any]:
    """A SaleRecorded; ``lines`` are (line_id, quantity, net_amount)."""
    return {
        "type": "SaleRecorded",
        "event_id": new_id(),
        "occurred_at": "2026-03-02T09:15:00+01:00",
        "partner_id": partner,
        "order_id": order,
        "lines": [
            {"line_id": lid, "sku": f"SKU-{lid}", "category": "routers", "quantity": q,
             "net_amount": n}
            for lid, q, n in (lines or (("1", 2, 179800),))
        ],
        "currency": "EUR",
        "customer_id": "C-5531",
        "new_customer": True,
        "region": "EU-WEST",
        **fields,
    }  # fmt: skip


def reversal(
    partner: str, order: str, *lines: tuple[str, int, int], **fields: Any
) -> dict[str, Any]:
    """A SaleReversed: partial with ``lines`` (line_id, quantity, net_amount), else full."""
    body: dict[str, Any] = {
        "type": "SaleReversed",
        "event_id": new_id(),
        "occurred_at": "2026-03-09T14:02:11Z",
        "partner_id": partner,
        "order_id": order,
        "reversal_id": f"RMA-{new_id()[:8]}",
        "scope": "partial" if lines else "full",
        "reason": "customer return",
        "currency": "EUR",
    }
    if lines:
        body["lines"] = [{"line_id": lid, "quantity": q, "net_amount": n} for lid, q, n in lines]
    body.update(fields)
    return body


def survey(partner: str, score: int = 9, scale: str = "nps_0_10") -> dict[str, Any]:
    return {
        "type": "SurveyCompleted",
        "event_id": new_id(),
        "occurred_at": "2026-03-10T08:30:00Z",
        "partner_id": partner,
        "survey_id": f"S-{new_id()[:8]}",
        "customer_id": "C-5531",
        "score": score,
        "scale": scale,
    }


def training(partner: str) -> dict[str, Any]:
    return {
        "type": "TrainingCompleted",
        "event_id": new_id(),
        "occurred_at": "2026-03-11T16:45:00+08:00",
        "partner_id": partner,
        "course_id": "NET-ADV-201",
        "passed": True,
    }


def payout(partner: str) -> dict[str, Any]:
    return {
        "type": "RecordPayout",
        "event_id": new_id(),
        "occurred_at": "2026-04-10T09:00:00Z",
        "partner_id": partner,
        "amount": 245000,
        "currency": "EUR",
        "reference": f"SEPA-{new_id()[:8]}",
    }


def close_period() -> dict[str, Any]:
    return {
        "type": "ClosePeriod",
        "event_id": new_id(),
        "occurred_at": "2026-04-03T00:00:00Z",
        "partner_id": "*",
        "period": "2026-03",
    }


def as_bytes(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def keyed(stream: str, message: dict[str, Any]) -> Send:
    """A well-formed send: the message on its stream, keyed by its partner id."""
    return stream, str(message["partner_id"]).encode(), as_bytes(message)


def ids(messages: Iterable[dict[str, Any]]) -> set[uuid.UUID]:
    return {uuid.UUID(m["event_id"]) for m in messages}


# ---------------------------------------------------------------------------------------
# Poison: one message of every reject code, with the code each must be dead-lettered with.

Poison = tuple[str, bytes | None, bytes | None, RejectCode]  # (stream, key, value, code)


def bad_inputs(partner: str = "P-1", elsewhere: str = "P-2") -> list[Poison]:
    """Every kind of bad input of ``partner``, each with the code it must get: the codes
    decided from the message alone, and a reversal of an order that never existed. With a
    worker whose max_message_bytes is MAX_MESSAGE_BYTES (the padded sale is too large).
    ``elsewhere`` keys a message of ``partner`` wrongly (another partner's partition)."""
    key = partner.encode()

    def broken(message: dict[str, Any], code: RejectCode, stream: str = "sales") -> Poison:
        return stream, key, as_bytes(message), code

    no_customer = sale(partner, "SO-B1")
    del no_customer["customer_id"]
    mixed = sale(partner, "SO-B2")
    mixed["lines"][0]["currency"] = "USD"
    naive = sale(partner, "SO-B3", occurred_at="2026-03-02T09:15:00")
    padded = as_bytes(sale(partner, "SO-B4")) + b" " * MAX_MESSAGE_BYTES
    bad_utf8 = as_bytes(survey(partner)).replace(b'"C-5531"', b'"C-\xff\xfe"')
    # Nested 300 deep inside a line's sku: below MAX_MESSAGE_BYTES, far beyond max_depth.
    deep_sku = as_bytes(sale(partner, "SO-B15")).replace(
        b'"SKU-1"', b'{"a": ' * 300 + b"1" + b"}" * 300
    )
    return [
        ("sales", key, b'{"type": "SaleRecorded", "event_id": ', RejectCode.NOT_JSON),
        ("sales", key, b"[1, 2, 3]", RejectCode.NOT_OBJECT),
        broken({**sale(partner, "SO-B5"), "type": "SaleExploded"}, RejectCode.UNKNOWN_TYPE),
        broken(no_customer, RejectCode.MISSING_FIELD),
        broken(sale(partner, "SO-B6", new_customer="yes"), RejectCode.WRONG_TYPE),
        broken(sale(partner, "SO-B7", discount_code="X1"), RejectCode.UNKNOWN_FIELD),
        broken(sale(partner, "SO-B8", ("1", -2, 100)), RejectCode.NON_POSITIVE_QUANTITY),
        broken(sale(partner, "SO-B9", ("1", 0, 100)), RejectCode.NON_POSITIVE_QUANTITY),
        broken(sale(partner, "SO-B10", ("1", 1, 12.5)), RejectCode.FRACTIONAL_AMOUNT),
        broken(sale(partner, "SO-B11", currency="EUX"), RejectCode.UNKNOWN_CURRENCY),
        broken(mixed, RejectCode.CURRENCY_MISMATCH),
        broken(naive, RejectCode.NAIVE_TIMESTAMP),
        broken(sale(partner, "SO-B12", occurred_at="2099-01-01T00:00:00Z"),
               RejectCode.FUTURE_TIMESTAMP),
        broken(survey(partner, score=9, scale="csat_1_5"), RejectCode.SCORE_OFF_SCALE,
               "surveys"),
        broken(reversal(partner, "SO-NEVER"), RejectCode.UNKNOWN_ORDER),
        ("sales", key, padded, RejectCode.TOO_LARGE),
        ("sales", key, b"", RejectCode.EMPTY),
        ("sales", key, None, RejectCode.EMPTY),
        ("surveys", key, bad_utf8, RejectCode.INVALID_UTF8),
        # Keyed by another partner: it would sit on another partner's partition.
        ("trainings", elsewhere.encode(), as_bytes(training(partner)), RejectCode.INVALID_VALUE),
        ("sales", key, b"[" * 1000 + b"]" * 1000, RejectCode.TOO_DEEP),
        ("sales", key, deep_sku, RejectCode.TOO_DEEP),
        broken(sale(partner, "SO-B13", customer_id="C-\u0000-1"), RejectCode.CONTROL_CHARACTER),
        broken(sale(partner, "\x07\x1b[31m"), RejectCode.CONTROL_CHARACTER),
        broken(sale(partner, "SO-B14", occurred_at="1900-01-01T00:00:00Z"), RejectCode.TOO_OLD),
        broken(sale(partner, "SO-B16", occurred_at="0001-01-01T00:00:00Z"), RejectCode.TOO_OLD),
    ]  # fmt: skip


# A valid sale that PostgreSQL refuses to store, as a future input no check foresaw would
# be: the test database's trigger (``install_trap``) raises a data exception (SQLSTATE
# 22023) for an inbox row holding this order id. The worker narrows its batch down to it
# and dead-letters it as processing_failed.
TRAP_ORDER = "SO-TRAPPED"
TRAP = f"""
CREATE FUNCTION refuse_the_trap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF position(convert_to('{TRAP_ORDER}', 'UTF8') IN NEW.body) > 0 THEN
        RAISE EXCEPTION 'this sale cannot be stored' USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER refuse_the_trap BEFORE INSERT ON inbox
    FOR EACH ROW EXECUTE FUNCTION refuse_the_trap();
"""


async def install_trap(settings: Settings) -> None:
    conn = await asyncpg.connect(admin(settings))
    try:
        await conn.execute(TRAP)
    finally:
        await conn.close()


def processing_poison(partner: str) -> Poison:
    """A sale of a registered ``partner`` that fails when applied (see ``install_trap``)."""
    return (*keyed("sales", sale(partner, TRAP_ORDER)), RejectCode.PROCESSING_FAILED)


def stateful_poison(sold: dict[str, Any]) -> list[Poison]:
    """Messages that are bad only against the accepted sale ``sold``: reversals of more
    quantity or more net amount than its last line has, or in another currency, and a
    second ``sold`` with other content under the same event id. Sent after ``sold`` on its
    partition, and with nothing else reversing that line, each gets the code given."""
    partner, order = sold["partner_id"], sold["order_id"]
    last = sold["lines"][-1]
    line, quantity, net = last["line_id"], last["quantity"], last["net_amount"]
    too_much = reversal(partner, order, (line, quantity + 1, 100))
    too_much_net = reversal(partner, order, (line, 1, net + 1))
    other_currency = reversal(partner, order, (line, 1, 100), currency="USD")
    conflicting = {**sold, "customer_id": "C-OTHER"}
    return [
        (*keyed("sales", too_much), RejectCode.REVERSAL_EXCEEDS_SALE),
        (*keyed("sales", too_much_net), RejectCode.REVERSAL_EXCEEDS_SALE),
        (*keyed("sales", other_currency), RejectCode.CURRENCY_MISMATCH),
        (*keyed("sales", conflicting), RejectCode.CONFLICT),
    ]
