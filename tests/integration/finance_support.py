"""Helpers for the finance command tests: commands as finance tools send them, what the
ledger holds for them, and what the refusals topic carries, read to its end and compared
field for field with ``command_refusals``."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from ingest_support import (
    Worker,
    admin,
    fetch,
    keyed,
    new_id,
    payout,
    registration,
    send_raw,
    wait_consumed,
)

from ledger import program_store
from ledger.store import balances
from processors.outbox import refusals
from processors.worker.kafka_offsets import end_offsets
from schemas.outcomes import REFUSAL_DECODER, REFUSALS, CommandRefused
from schemas.program_loader import load_program
from schemas.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
PROGRAM = "northwind-emea"
POINTS = f"PTS:{PROGRAM}"
MDF = "MDF:EUR"


# ---------------------------------------------------------------------------------------
# Commands as finance tools send them.


def adjust(partner: str, asset: str, amount: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": "AdjustBalance",
        "event_id": new_id(),
        "occurred_at": "2026-04-01T08:00:00Z",
        "partner_id": partner,
        "asset": asset,
        "amount": amount,
        "author": "finance.lee",
        "reason": "opening balance migrated from the old system, ticket FIN-2291",
        **fields,
    }


def pay(partner: str, amount: int) -> dict[str, Any]:
    return {**payout(partner), "amount": amount}


def redeem(partner: str, points: int, reward_id: str) -> dict[str, Any]:
    return {
        "type": "RedeemPoints",
        "event_id": new_id(),
        "occurred_at": "2026-04-02T11:11:00Z",
        "partner_id": partner,
        "points": points,
        "reward_id": reward_id,
    }


def claim(partner: str, claim_id: str, amount: int, submitted_by: str) -> dict[str, Any]:
    return {
        "type": "ClaimFunds",
        "event_id": new_id(),
        "occurred_at": "2026-04-03T10:00:00Z",
        "partner_id": partner,
        "claim_id": claim_id,
        "amount": amount,
        "currency": "EUR",
        "submitted_by": submitted_by,
        "description": "Trade fair booth, Hannover",
    }


def approve(partner: str, claim_id: str, approver: str) -> dict[str, Any]:
    return {
        "type": "ApproveClaim",
        "event_id": new_id(),
        "occurred_at": "2026-04-04T09:00:00Z",
        "partner_id": partner,
        "claim_id": claim_id,
        "approver": approver,
    }


def reject(partner: str, claim_id: str, approver: str) -> dict[str, Any]:
    return {
        "type": "RejectClaim",
        "event_id": new_id(),
        "occurred_at": "2026-04-04T09:05:00Z",
        "partner_id": partner,
        "claim_id": claim_id,
        "approver": approver,
        "reason": "no proof of spend attached",
    }


def uid(message: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(message["event_id"])


# ---------------------------------------------------------------------------------------
# What the ledger holds and what the refusals topic carries.


async def publish_example_program(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    try:
        await program_store.publish(conn, load_program(EXAMPLE), published_by="finance-tests")
    finally:
        await conn.close()


async def available(settings: Settings, partner: str, asset: str) -> int:
    conn = await asyncpg.connect(admin(settings))
    try:
        found = await balances(conn, partner_id=partner)
    finally:
        await conn.close()
    return found.get((f"partner:{partner}:available", asset), 0)


async def records_of(settings: Settings, command: dict[str, Any]) -> list[asyncpg.Record]:
    """The ledger records a command produced, with their postings as (account, asset,
    amount) in leg order."""
    return await fetch(
        settings,
        """SELECT r.kind, r.rule_id, r.explanation,
                  array_agg(ARRAY[p.account, p.asset, p.amount::text] ORDER BY p.leg) AS postings
           FROM ledger_records r JOIN ledger_postings p USING (record_id)
           WHERE r.source_event_ids[1] = $1
           GROUP BY r.record_id ORDER BY r.seq""",
        uid(command),
    )


def postings(record: asyncpg.Record) -> list[tuple[str, str, int]]:
    return [(account, asset, int(amount)) for account, asset, amount in record["postings"]]


async def refusal_rows(settings: Settings) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await fetch(settings, "SELECT * FROM command_refusals")
    return {r["event_id"]: r for r in rows}


async def published_refusals(
    settings: Settings, worker: Worker | None = None, timeout_s: float = 60
) -> dict[uuid.UUID, CommandRefused]:
    """Once every refusal in PostgreSQL is marked published (waiting for the worker, if
    one runs), everything on the refusals topic, by the refused command's event id. The
    topic is at least once, so copies of one refusal are merged; they must agree."""
    deadline = time.monotonic() + timeout_s
    while True:
        if worker is not None:
            worker.check_alive()
        left = await fetch(settings, "SELECT event_id FROM command_refusals"
                           " WHERE published_at IS NULL")  # fmt: skip
        if not left:
            break
        if time.monotonic() > deadline:
            tail = "" if worker is None else worker.log_tail()
            raise AssertionError(f"{len(left)} refusals still unpublished after {timeout_s}s\n"
                                 f"{tail}")  # fmt: skip
        await asyncio.sleep(0.2)
    found: dict[uuid.UUID, CommandRefused] = {}
    for key, value in await read_topic(settings, settings.topic(REFUSALS), timeout_s):
        refused = REFUSAL_DECODER.decode(value)
        assert key == refused.partner_id.encode(), "refusals are keyed by partner_id"
        assert found.setdefault(refused.event_id, refused) == refused
    return found


async def read_topic(settings: Settings, topic: str, timeout_s: float) -> list[tuple[bytes, bytes]]:
    """Every (key, value) on ``topic`` up to its current end offsets."""
    ends = {tp: end for tp, end in (await end_offsets(settings, [topic])).items()}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
        **settings.kafka_auth("auditor"),
    )  # fmt: skip
    await consumer.start()
    out: list[tuple[bytes, bytes]] = []
    try:
        tps = [TopicPartition(t, p) for t, p in ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < ends[(tp.topic, tp.partition)]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                out += [(r.key, r.value) for r in batch]
    finally:
        await consumer.stop()
    return out


def assert_published_as_recorded(
    published: dict[uuid.UUID, CommandRefused], rows: dict[uuid.UUID, asyncpg.Record]
) -> None:
    """The topic carries exactly the recorded refusals, field for field."""
    assert set(published) == set(rows)
    for event_id, row in rows.items():
        assert published[event_id] == refusals.refusal_of(row)


def worker_of(settings: Settings, tmp_path: Path) -> Worker:
    # Port 0: the worker's metrics listen on a free port, so that workers of test sessions
    # running side by side do not collide.
    return Worker(settings, tmp_path / "worker.log", INCENTIVES_METRICS_PORT="0")


async def ensure_registered(settings: Settings, worker: Worker, *partners: str) -> None:
    await send_raw(settings, [keyed("partners", registration(p)) for p in partners])
    await wait_consumed(settings, worker)
