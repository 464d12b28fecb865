"""Helpers for the ingestion tests: the worker as a subprocess, raw sends, polling with
deadlines, and the CLI run as a user runs it. Every wait is bounded and fails with what it
saw, and a worker that died is reported with the tail of its log rather than waited for."""

from __future__ import annotations

import asyncio
import json
import os
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

from processors.app import SOURCE_STREAMS
from processors.offsets import end_offsets
from schemas.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that points a child process at this test's database and topics."""
    env = dict(os.environ)
    env.update(
        INCENTIVES_PG_DSN=settings.dsn,
        INCENTIVES_KAFKA_BOOTSTRAP=settings.bootstrap,
        INCENTIVES_TOPIC_PREFIX=settings.topic_prefix,
        INCENTIVES_CONSUMER_GROUP=settings.consumer_group,
        INCENTIVES_STACK_DIR=settings.stack_dir,
    )
    env.update(extra)
    return env


def run_cli(
    settings: Settings, *args: str, stdin: bytes | None = None, timeout_s: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """``incentives ARGS`` in a child process, as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "processors.cli", *args],
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
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "processors.cli", "worker"],
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
    conn = await asyncpg.connect(settings.dsn)
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
        for tp, end in (await end_offsets(settings.bootstrap, source_topics(settings))).items()
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


async def send_raw(settings: Settings, messages: Sequence[Send]) -> list[tuple[str, int, int]]:
    """Send raw bytes in order, wait for acknowledgement; return (topic, partition, offset)
    of each message."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        futures = [
            await producer.send(settings.topic(stream), value=value, key=key)
            for stream, key, value in messages
        ]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in sent]


async def fetch(settings: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------
# Messages as upstream systems write them (dicts, so tests can break them at will).


def new_id() -> str:
    return str(uuid.uuid4())


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
