"""Periods close and due work is posted by themselves as event time passes, through the
real worker, Kafka and PostgreSQL; a late event is handled by the written policy; the timer
carries on after a restart; and the ledger is still the one the pure runner computes from
the stored inputs in their stored order."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import msgspec
from ingest_support import Worker, admin, fetch, registration, sale, wait_consumed

from incentives.publisher import Publisher
from incentives.sample_data import generate
from ledger import program_store
from ledger.store import verify_ledger
from processors.engine import compile_program
from processors.engine.close import close_id
from processors.engine.runner import Books, run
from processors.worker.clock import close_command
from schemas.events import SaleRecorded
from schemas.program_loader import load_program
from schemas.settings import Settings
from schemas.streams import ANY, Message

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
FEB = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
MAR = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
# The timer's settings for this test: a month closes one day after its end.
CLOCK = {"INCENTIVES_CLOSE_GRACE_S": "86400", "INCENTIVES_TIMER_INTERVAL_S": "86400"}


def _traffic() -> list[Message]:
    """A quarter of sample traffic without its ClosePeriod commands: here the timer closes."""
    raw = [m for m in generate(partners=40, sales=1_500) if m["type"] != "ClosePeriod"]
    return [ANY.decode(msgspec.json.encode(m)) for m in raw]


async def _publish(settings: Settings, messages: list[Message]) -> None:
    async with Publisher(settings) as publisher:
        for message in messages:
            await publisher.publish(message)


async def _until(probe: Callable[[], Awaitable[bool]], worker: Worker, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 90
    while asyncio.get_running_loop().time() < deadline:
        worker.check_alive()
        if await probe():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within 90s:\n{worker.log_tail()}")


async def _accepted(settings: Settings, event_id: uuid.UUID) -> bool:
    return bool(await fetch(settings, "SELECT 1 FROM inbox WHERE event_id = $1", event_id))


async def _close_records(settings: Settings, month: str) -> list[asyncpg.Record]:
    program = compile_program(load_program(EXAMPLE).program)
    return await fetch(
        settings,
        "SELECT record_id FROM ledger_records WHERE $1 = ANY(source_event_ids)",
        close_id(program, month),
    )


async def test_months_close_and_holds_release_as_event_time_passes(
    settings: Settings, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    await program_store.publish(conn, load_program(EXAMPLE), published_by="test")
    await conn.close()
    traffic = _traffic()
    until_march = [m for m in traffic if m.occurred_at < MAR]
    march = [m for m in traffic if m.occurred_at >= MAR]
    january_close = close_command("2026-01", FEB + dt.timedelta(days=1))
    february_close = close_command("2026-02", MAR + dt.timedelta(days=1))
    log = tmp_path / "worker.log"

    with Worker(settings, log, **CLOCK) as worker:
        await _publish(settings, until_march)
        await _until(lambda: _accepted(settings, january_close.event_id), worker, "January's close")
        await wait_consumed(settings, worker)
        january_awards = await _close_records(settings, "2026-01")
        assert january_awards, "the close of January produced its awards"
        assert not await _accepted(settings, february_close.event_id)

        # Late: a January sale arrives after January closed. It earns its per-sale rewards;
        # January's awards are final and not recomputed.
        a_january_sale = next(
            m for m in until_march if isinstance(m, SaleRecorded) and m.occurred_at < FEB
        )
        late = msgspec.structs.replace(
            a_january_sale, event_id=uuid.uuid4(), order_id=f"LATE-{a_january_sale.order_id}"
        )
        await _publish(settings, [late])
        await _until(lambda: _accepted(settings, late.event_id), worker, "the late sale")
        earned = await fetch(
            settings,
            "SELECT kind, rule_id FROM ledger_records WHERE $1 = ANY(source_event_ids)",
            late.event_id,
        )
        assert {r["rule_id"] for r in earned} >= {"sales-commission"}
        assert await _close_records(settings, "2026-01") == january_awards

    # A new worker carries on from the timer's state in PostgreSQL: February closes once.
    with Worker(settings, log, **CLOCK) as worker:
        await _publish(settings, march)
        await _until(
            lambda: _accepted(settings, february_close.event_id), worker, "February's close"
        )
        await wait_consumed(settings, worker)

    await _assert_two_closes_and_forward_clock_steps(settings)
    await _assert_replay_equals_live(settings)


async def _assert_two_closes_and_forward_clock_steps(settings: Settings) -> None:
    """January and February closed once each, in order; the clock advanced in whole days,
    only forward, past March's start; and the clock, not an event, released some holds."""
    closes = await fetch(
        settings, "SELECT body FROM inbox WHERE event_type = 'ClosePeriod' ORDER BY arrival_seq"
    )
    assert [ANY.decode(bytes(r["body"])).period for r in closes] == ["2026-01", "2026-02"]
    state = await fetch(settings, "SELECT next_close, advanced_to FROM clock_state")
    assert [r["next_close"] for r in state] == ["2026-03"]
    advances = await fetch(
        settings,
        "SELECT occurred_at FROM inbox WHERE event_type = 'AdvanceClock' ORDER BY arrival_seq",
    )
    # Whole days, only forward; a backlog consumed in seconds needs few steps, each to the
    # latest day the watermark passed.
    moments = [r["occurred_at"] for r in advances]
    assert moments and moments == sorted(set(moments))
    assert all(m == dt.datetime.combine(m.date(), dt.time(), dt.UTC) for m in moments)
    assert state[0]["advanced_to"] == moments[-1] >= MAR
    released = await fetch(
        settings,
        """SELECT count(*) AS n FROM ledger_records r
           JOIN inbox i ON i.event_type = 'AdvanceClock'
            AND r.recorded_at = i.occurred_at
           WHERE r.kind = 'hold_release'""",
    )
    assert released[0]["n"] > 0, "some holds were released by the clock, not by an event"


async def _assert_replay_equals_live(settings: Settings) -> None:
    conn = await asyncpg.connect(admin(settings))
    try:
        bodies = await conn.fetch("SELECT body FROM inbox ORDER BY arrival_seq")
        stored = await conn.fetch(
            "SELECT record_id, hash FROM ledger_records ORDER BY partner_id, seq"
        )
        report = await verify_ledger(conn)
    finally:
        await conn.close()
    expected = run(
        [ANY.decode(bytes(r["body"])) for r in bodies],  # type: ignore[misc]
        Books(),
        [compile_program(load_program(EXAMPLE).program)],
    )
    ordered = sorted(expected.records, key=lambda r: (r.partner_id, r.seq))
    assert [(r.record_id, r.hash) for r in ordered] == [
        (r["record_id"], bytes(r["hash"])) for r in stored
    ]
    assert report.findings == []


async def test_with_fewer_partners_than_partitions_months_still_close(
    settings: Settings, tmp_path: Path
) -> None:
    """Three partners use at most three of the six partitions. The others never carry an
    event; once they (and then the quiet busy ones) consumed nothing for idle_partition_s
    (2 s here) with nothing waiting, they stop holding event time back and January closes
    by itself. Before, it never would: an empty partition held the watermark for good."""
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    await program_store.publish(conn, load_program(EXAMPLE), published_by="test")
    await conn.close()
    partners = ["P-A", "P-B", "P-C"]
    raw = [registration(p) for p in partners] + [
        sale(p, f"SO-{p}-{day}", occurred_at=f"2026-{month}-{day}T10:00:00Z")
        for p in partners
        for month, day in (("01", "10"), ("01", "20"), ("02", "10"))
    ]
    messages = [ANY.decode(msgspec.json.encode(m)) for m in raw]
    january_close = close_command("2026-01", FEB + dt.timedelta(days=1))
    log = tmp_path / "worker.log"
    with Worker(settings, log, **CLOCK, INCENTIVES_IDLE_PARTITION_S="2") as worker:
        await _publish(settings, messages)
        await _until(lambda: _accepted(settings, january_close.event_id), worker, "January's close")
    used = await fetch(settings, "SELECT DISTINCT partition FROM inbox WHERE partner_id <> '*'")
    assert len(used) <= 3 < settings.topic_partitions
    assert "no longer hold event time back" in log.read_text()
