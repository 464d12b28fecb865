"""Finance commands end to end: through Kafka, a real `incentives worker` and PostgreSQL.

Payouts and redemptions debit the available balance or are refused with a reason and
nothing posted; adjustments carry their author and reason into the ledger, and a blank one
is dead-lettered by the contract; a fund claim is spent once, by someone other than its
submitter. Every refusal is a row in ``command_refusals`` and a ``CommandRefused`` on the
``refusals`` topic, also when the worker that refused it died before publishing it.

Balances are funded with ``AdjustBalance`` where the example program would need weeks of
event time (commission is held 30 days); points are also earned, from a training course.
Every amount is an exact integer of minor units (cents, points).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from ingest_support import (
    Worker,
    admin,
    fetch,
    keyed,
    new_id,
    payout,
    registration,
    send_raw,
    training,
    wait_consumed,
)

from ledger import program_store
from ledger.store import balances
from processors.intake.batch import BatchProcessor, SourceMessage
from processors.outbox import refusals
from processors.worker.app import SOURCE_STREAMS
from processors.worker.kafka_offsets import end_offsets
from processors.writer import ledger as ledger_writer
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


# ---------------------------------------------------------------------------------------
# Through the worker.


async def test_payout_above_the_balance_is_refused_and_one_within_it_is_posted(
    settings: Settings, tmp_path: Path
) -> None:
    """With EUR 1,000.00 available, a payout of EUR 1,000.01 posts nothing and is refused
    (row and message: insufficient_balance at $.amount, seeing all 100000 available);
    a payout of EUR 400.00 posts one record that moves exactly 40000 to the clearing
    account."""
    await publish_example_program(settings)
    funded = adjust("P-PAY", "EUR", 100_000)
    too_much, fits = pay("P-PAY", 100_001), pay("P-PAY", 40_000)
    with worker_of(settings, tmp_path) as worker:
        await ensure_registered(settings, worker, "P-PAY")
        await send_raw(settings, [keyed("commands", m) for m in (funded, too_much, fits)])
        await wait_consumed(settings, worker)
        published = await published_refusals(settings, worker)

    rows = await refusal_rows(settings)
    assert list(rows) == [uid(too_much)]
    row = rows[uid(too_much)]
    assert (row["partner_id"], row["event_type"], row["code"], row["path"]) == (
        "P-PAY", "RecordPayout", "insufficient_balance", "$.amount")  # fmt: skip
    assert "balance is 100000" in row["message"] and "got 100001" in row["message"]
    assert_published_as_recorded(published, rows)
    assert published[uid(too_much)].code == "insufficient_balance"

    assert await records_of(settings, too_much) == []
    [posted] = await records_of(settings, fits)
    assert posted["kind"] == "payout"
    assert postings(posted) == [
        ("partner:P-PAY:available", "EUR", -40_000),
        ("payout:clearing", "EUR", 40_000),
    ]
    assert await available(settings, "P-PAY", "EUR") == 100_000 - 40_000


async def test_redemption_above_the_points_is_refused_and_one_within_them_is_posted(
    settings: Settings, tmp_path: Path
) -> None:
    """A course earns 200 points (the example's academy rule); with 12,000 more adjusted
    in, a Partner Summit pass (40,000) is refused and a EUR 50 gift card (5,000) is
    redeemed: exactly 5,000 points leave for points:redeemed."""
    await publish_example_program(settings)
    funded = adjust("P-PTS", "points", 12_000)
    too_much, fits = redeem("P-PTS", 40_000, "summit-pass"), redeem("P-PTS", 5_000, "gift-card-50")
    with worker_of(settings, tmp_path) as worker:
        await ensure_registered(settings, worker, "P-PTS")
        await send_raw(settings, [keyed("trainings", training("P-PTS"))])
        await wait_consumed(settings, worker)
        assert await available(settings, "P-PTS", POINTS) == 200
        await send_raw(settings, [keyed("commands", m) for m in (funded, too_much, fits)])
        await wait_consumed(settings, worker)
        published = await published_refusals(settings, worker)

    rows = await refusal_rows(settings)
    assert {k: (r["event_type"], r["code"], r["path"]) for k, r in rows.items()} == {
        uid(too_much): ("RedeemPoints", "insufficient_balance", "$.points")
    }
    assert "balance is 12200" in rows[uid(too_much)]["message"]
    assert_published_as_recorded(published, rows)

    assert await records_of(settings, too_much) == []
    [posted] = await records_of(settings, fits)
    assert posted["kind"] == "redemption"
    assert postings(posted) == [
        ("partner:P-PTS:available", POINTS, -5_000),
        ("points:redeemed", POINTS, 5_000),
    ]
    assert await available(settings, "P-PTS", POINTS) == 200 + 12_000 - 5_000


async def test_adjustment_is_its_own_record_with_author_and_reason_and_blank_ones_are_dead(
    settings: Settings, tmp_path: Path
) -> None:
    """An adjustment posts one record of its own whose explanation names its author and
    reason. One with a blank author or reason, or none, breaks the contract: it is
    dead-lettered and posts nothing. One that takes more than is there is refused."""
    await publish_example_program(settings)
    good = adjust("P-ADJ", "EUR", 25_000, author="finance.lee", reason="missed commission")
    blank_author = adjust("P-ADJ", "EUR", 1_000, author=" ")
    blank_reason = adjust("P-ADJ", "EUR", 1_000, reason="   ")
    no_reason = adjust("P-ADJ", "EUR", 1_000)
    del no_reason["reason"]
    too_much = adjust("P-ADJ", "EUR", -25_001)
    sent = [good, blank_author, blank_reason, no_reason, too_much]
    with worker_of(settings, tmp_path) as worker:
        await ensure_registered(settings, worker, "P-ADJ")
        await send_raw(settings, [keyed("commands", m) for m in sent])
        await wait_consumed(settings, worker)
        published = await published_refusals(settings, worker)

    [posted] = await records_of(settings, good)
    assert posted["kind"] == "adjustment"
    explanation = json.loads(posted["explanation"])
    assert (explanation["author"], explanation["reason"]) == ("finance.lee", "missed commission")
    assert postings(posted) == [
        ("ledger:adjustments", "EUR", -25_000),
        ("partner:P-ADJ:available", "EUR", 25_000),
    ]

    dead = await fetch(settings, "SELECT event_id, code, path FROM dead_letters")
    assert {r["event_id"]: (r["code"], r["path"]) for r in dead} == {
        uid(blank_author): ("invalid_value", "$.author"),
        uid(blank_reason): ("invalid_value", "$.reason"),
        uid(no_reason): ("missing_field", "$.reason"),
    }
    for message in (blank_author, blank_reason, no_reason):
        assert await records_of(settings, message) == []

    rows = await refusal_rows(settings)
    assert {k: (r["code"], r["path"]) for k, r in rows.items()} == {
        uid(too_much): ("insufficient_balance", "$.amount")
    }
    assert_published_as_recorded(published, rows)
    assert await records_of(settings, too_much) == []
    # Only the one valid adjustment moved the balance, and it is the partner's only record.
    assert await available(settings, "P-ADJ", "EUR") == 25_000
    everything = await fetch(settings, "SELECT 1 FROM ledger_records WHERE partner_id = 'P-ADJ'")
    assert len(everything) == 1


async def test_fund_claim_is_spent_once_by_an_approver_other_than_its_submitter(
    settings: Settings, tmp_path: Path
) -> None:
    """A claim of EUR 3,000.00 (above the example's auto_approve_max of EUR 1,000.00) waits.
    Its submitter's approval is refused (self_approval); another approver's spends exactly
    300000 of the fund; the same approval sent again is a counted duplicate, and a second
    approval with a new id is refused (unknown_claim). A rejected claim changes no balance
    and frees what it reserved: a claim for the whole rest of the fund is accepted after."""
    await publish_example_program(settings)
    funded = adjust("P-MDF", MDF, 500_000)
    claimed = claim("P-MDF", "MDF-0042", 300_000, submitted_by="anna.kovacs")
    by_submitter = approve("P-MDF", "MDF-0042", approver="anna.kovacs")
    approved = approve("P-MDF", "MDF-0042", approver="channel.manager.eu")
    again = approve("P-MDF", "MDF-0042", approver="channel.manager.eu")
    second_claim = claim("P-MDF", "MDF-0051", 150_000, submitted_by="anna.kovacs")
    rejected = reject("P-MDF", "MDF-0051", approver="channel.manager.eu")
    rest = claim("P-MDF", "MDF-0052", 200_000, submitted_by="anna.kovacs")
    with worker_of(settings, tmp_path) as worker:
        await ensure_registered(settings, worker, "P-MDF")
        await send_raw(settings, [keyed("commands", m) for m in (funded, claimed, by_submitter,
                                                                  approved)])  # fmt: skip
        await wait_consumed(settings, worker)
        assert await available(settings, "P-MDF", MDF) == 500_000 - 300_000
        # The same approval again (same event id and content), then a new one.
        await send_raw(settings, [keyed("commands", m) for m in (approved, again)])
        await wait_consumed(settings, worker)
        await send_raw(settings, [keyed("commands", m) for m in (second_claim, rejected)])
        await wait_consumed(settings, worker)
        assert await available(settings, "P-MDF", MDF) == 500_000 - 300_000
        await send_raw(settings, [keyed("commands", rest)])
        await wait_consumed(settings, worker)
        published = await published_refusals(settings, worker)

    [spent] = await records_of(settings, approved)
    assert (spent["kind"], spent["rule_id"]) == ("payout", "market-fund")
    assert postings(spent) == [
        ("partner:P-MDF:available", MDF, -300_000),
        ("payout:clearing", MDF, 300_000),
    ]
    outcomes = await fetch(settings, "SELECT outcome FROM ingest_log WHERE event_id = $1"
                           " ORDER BY kafka_offset", uid(approved))  # fmt: skip
    assert [r["outcome"] for r in outcomes] == ["applied", "duplicate"]

    rows = await refusal_rows(settings)
    assert {k: (r["event_type"], r["code"], r["path"]) for k, r in rows.items()} == {
        uid(by_submitter): ("ApproveClaim", "self_approval", "$.approver"),
        uid(again): ("ApproveClaim", "unknown_claim", "$.claim_id"),
    }
    assert_published_as_recorded(published, rows)
    # Claims, the rejection and the refused approvals post nothing; the one approval did.
    for message in (claimed, by_submitter, again, second_claim, rejected, rest):
        assert await records_of(settings, message) == []
    assert await available(settings, "P-MDF", MDF) == 500_000 - 300_000
    state = await fetch(settings, "SELECT state FROM partner_state WHERE partner_id = 'P-MDF'")
    assert set(json.loads(state[0]["state"])["claims"]) == {"MDF-0052"}


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
