"""A failing batch against the real PostgreSQL: infrastructure failures are retried and
never dead-lettered; a failure that lies in one message is narrowed down to it, the others
apply in their original order, and it is dead-lettered as ``processing_failed``.

The batch runs in-process (``processors.writer.isolation.Isolating`` around the worker's own
``BatchProcessor`` and ledger hook). Failures are real ones: a trigger of the test's own
database that raises a given SQLSTATE for a marked message, or once (a sequence counts,
since it is not rolled back), a server backend terminated mid-batch, and a Python
exception raised by the engine's hook for a marked message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ingest_support import admin, as_bytes, fetch, registration, sale, survey

from ledger import program_store
from processors.intake.batch import Accepted, BatchProcessor, SourceMessage
from processors.writer import ledger as ledger_writer
from processors.writer.isolation import Failure, Hooks, Isolating, RetryPolicy, WorkerStop, pooled
from schemas.events import SaleRecorded
from schemas.program_loader import load_program
from schemas.settings import LOCAL_PG_ROLES, Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
NOW = datetime(2026, 4, 1, tzinfo=UTC)

# Raises SQLSTATE :code when a row whose body holds the marker is added to the inbox, or,
# with marker '', on the first row only: a sequence is not rolled back with the batch.
TRAP = """
CREATE SEQUENCE trap_calls;
GRANT USAGE ON SEQUENCE trap_calls TO {writer};
CREATE FUNCTION trap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_ARGV[0] = '' AND nextval('trap_calls') = 1)
       OR (TG_ARGV[0] <> '' AND position(convert_to(TG_ARGV[0], 'UTF8') IN NEW.body) > 0) THEN
        IF TG_ARGV[1] = 'sleep' THEN
            PERFORM pg_sleep(60);
        ELSE
            RAISE EXCEPTION 'trap: %', TG_ARGV[0] USING ERRCODE = TG_ARGV[1];
        END IF;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER trap BEFORE INSERT ON inbox
    FOR EACH ROW EXECUTE FUNCTION trap('{marker}', '{code}');
"""


async def _trap(settings: Settings, marker: str, code: str) -> None:
    conn = await asyncpg.connect(admin(settings))
    try:
        await conn.execute(TRAP.format(marker=marker, code=code, writer=LOCAL_PG_ROLES["writer"]))
    finally:
        await conn.close()


def _batch(settings: Settings, *items: tuple[str, dict[str, Any]]) -> list[SourceMessage]:
    offsets: dict[str, int] = {}
    out = []
    for stream, message in items:
        topic = settings.topic(stream)
        offset = offsets.get(topic, 0)
        offsets[topic] = offset + 1
        out.append(SourceMessage(topic, 0, offset, message["partner_id"].encode(),
                                 as_bytes(message)))  # fmt: skip
    return out


class Run:
    """Isolating around the worker's processor, on a pool of the test's database."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, hook: Any = None,
                 policy: RetryPolicy | None = None) -> None:  # fmt: skip
        self.retries: list[Failure] = []
        self.narrowed = 0
        processor = BatchProcessor(
            group=settings.consumer_group,
            streams={settings.topic(s): s for s in ("sales", "surveys", "partners")},
            limits=settings.limits(),
            apply_accepted=hook or ledger_writer.hook(),
            clock=lambda: NOW,
        )

        async def pool_of() -> asyncpg.Pool:
            return pool

        self.isolating = Isolating(
            processor, lambda: pooled(pool_of), policy or RetryPolicy(poison_run_max=3),
            hooks=Hooks(retried=self.retries.append, narrowed=self._narrowed),
            sleep=lambda s: asyncio.sleep(0),
        )  # fmt: skip

    def _narrowed(self) -> None:
        self.narrowed += 1


@contextlib.asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    await program_store.publish(conn, load_program(EXAMPLE), published_by="test")
    await conn.close()
    pool = await asyncpg.create_pool(settings.pg_dsn("writer"), min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def _traffic(partner: str, orders: int, poison_at: int, poison: str) -> list[dict[str, Any]]:
    sales = [sale(partner, poison if n == poison_at else f"SO-{n}") for n in range(orders)]
    for message in sales:
        for line in message["lines"]:
            line["category"] = "hardware"  # the example program pays commission on it
    return [registration(partner), *sales, survey(partner)]


async def _fates(settings: Settings) -> dict[int, tuple[str, str | None]]:
    rows = await fetch(settings, "SELECT kafka_offset, outcome, code FROM ingest_log"
                       " WHERE topic = $1", settings.topic("sales"))  # fmt: skip
    return {r["kafka_offset"]: (r["outcome"], r["code"]) for r in rows}


async def _applied_orders(settings: Settings) -> list[str]:
    """Order ids of the accepted sales, in acceptance order."""
    rows = await fetch(settings, "SELECT body FROM inbox WHERE event_type = 'SaleRecorded'"
                       " ORDER BY arrival_seq")  # fmt: skip
    return [json.loads(r["body"])["order_id"] for r in rows]


async def test_a_message_failing_in_postgresql_is_narrowed_down_and_dead_lettered(
    settings: Settings,
) -> None:
    """Of 1 + 40 + 1 messages, the sale the trigger refuses (SQLSTATE 22023, a data
    exception) is dead-lettered with processing_failed and the database's words; the other
    40 apply in their original order, with their ledger records."""
    await _trap(settings, "SO-TRAP", "22023")
    traffic = _traffic("P-1", 40, 17, "SO-TRAP")
    batch = _batch(settings, ("partners", traffic[0]),
                   *[("sales", m) for m in traffic[1:-1]], ("surveys", traffic[-1]))  # fmt: skip
    async with _pool(settings) as pool:
        run = Run(settings, pool)
        report = await run.isolating.process(batch)
    assert (report.messages, report.applied, run.narrowed, run.retries) == (42, 41, 1, [])
    [letter] = report.dead_letters
    assert (letter.offset, letter.rejection.code) == (17, "processing_failed")
    assert letter.rejection.message == (
        "applying this message failed: InvalidParameterValueError (SQLSTATE 22023): trap: SO-TRAP"
    )
    fates = await _fates(settings)
    assert fates.pop(17) == ("dead_lettered", "processing_failed")
    assert set(fates.values()) == {("applied", None)} and len(fates) == 39
    assert await _applied_orders(settings) == [f"SO-{n}" for n in range(40) if n != 17]
    [stored] = await fetch(settings, "SELECT code, message, raw FROM dead_letters")
    assert (stored["code"], bytes(stored["raw"])) == ("processing_failed", batch[18].value)
    [positions] = await fetch(settings, "SELECT sum(next_offset) AS n FROM consumer_positions")
    assert positions["n"] == 42
    records = await fetch(settings, "SELECT count(*) AS n FROM ledger_records")
    assert records[0]["n"] > 0


async def test_a_python_exception_of_the_engine_is_narrowed_down_too(settings: Settings) -> None:
    """RecursionError raised while applying one sale (as a too-deep structure would) costs
    that sale alone; the partner's other sales apply."""
    ledger = ledger_writer.hook()

    async def fragile(conn: asyncpg.Connection, accepted: list[Accepted]) -> list[Accepted]:
        if any(getattr(a.message, "order_id", "") == "SO-DEEP" for a in accepted):
            raise RecursionError("maximum recursion depth exceeded")
        return await ledger(conn, accepted)

    traffic = _traffic("P-1", 9, 4, "SO-DEEP")
    async with _pool(settings) as pool:
        report = await Run(settings, pool, fragile).isolating.process(
            _batch(settings, ("partners", traffic[0]), *[("sales", m) for m in traffic[1:-1]])
        )
    [letter] = report.dead_letters
    assert letter.offset == 4 and "RecursionError: maximum recursion" in letter.rejection.message
    assert await _applied_orders(settings) == [f"SO-{n}" for n in range(9) if n != 4]


async def test_a_deadlock_is_retried_never_dead_lettered(settings: Settings) -> None:
    """SQLSTATE 40P01 on the first attempt: the batch is tried again and applies whole."""
    await _trap(settings, "", "40P01")
    traffic = _traffic("P-1", 5, -1, "")
    async with _pool(settings) as pool:
        run = Run(settings, pool)
        report = await run.isolating.process(
            _batch(settings, ("partners", traffic[0]), *[("sales", m) for m in traffic[1:-1]])
        )
    assert (report.applied, report.dead_letters, run.retries) == (6, [], [Failure.CONFLICT])
    assert run.narrowed == 0


async def test_a_lost_connection_is_retried_never_dead_lettered(settings: Settings) -> None:
    """The server ends the batch's backend while it works (as a restart does); the batch is
    retried on a new connection and applies whole, with nothing dead-lettered."""
    await _trap(settings, "", "sleep")
    traffic = _traffic("P-1", 5, -1, "")
    batch = _batch(settings, ("partners", traffic[0]), *[("sales", m) for m in traffic[1:-1]])
    async with _pool(settings) as pool:
        run = Run(settings, pool)
        task = asyncio.create_task(run.isolating.process(batch))
        superuser = await asyncpg.connect(admin(settings))
        try:
            for _ in range(200):
                sleeping = await superuser.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                    " AND datname = current_database()"
                )
                if sleeping is not None:
                    break
                await asyncio.sleep(0.05)
            assert sleeping is not None, "the batch never reached the trap"
            assert await superuser.fetchval("SELECT pg_terminate_backend($1)", sleeping)
        finally:
            await superuser.close()
        report = await asyncio.wait_for(task, 60)
    assert (report.applied, report.dead_letters, run.retries) == (6, [], [Failure.TRANSIENT])


async def test_a_run_of_failing_messages_stops_the_worker(settings: Settings) -> None:
    """A hook that fails every sale (a bug of the worker, not of the messages): after
    poison_run_max (3) sales dead-lettered in a row, the worker stops instead of going on,
    and a restart stops at the same message."""

    async def broken(conn: asyncpg.Connection, accepted: list[Accepted]) -> list[Accepted]:
        if any(isinstance(a.message, SaleRecorded) for a in accepted):
            raise KeyError("rate")
        return []

    traffic = _traffic("P-1", 6, -1, "")
    batch = _batch(settings, ("partners", traffic[0]), *[("sales", m) for m in traffic[1:-1]])
    async with _pool(settings) as pool:
        with pytest.raises(WorkerStop, match="and so did the 3 messages before it"):
            await Run(settings, pool, broken).isolating.process(batch)
        fates = await _fates(settings)
        assert fates == dict.fromkeys(range(3), ("dead_lettered", "processing_failed"))
        with pytest.raises(WorkerStop, match="sales/0@3 failed on its own"):
            await Run(settings, pool, broken).isolating.process(batch)
    assert await _fates(settings) == fates


async def test_a_parked_event_that_fails_when_released_costs_only_itself(
    settings: Settings,
) -> None:
    """Sales of a partner that is not registered yet wait; one of them fails when its
    registration releases them. The registration and the other released sales apply, in
    their order; the failing one is dead-lettered as processing_failed."""
    await _trap(settings, "SO-TRAP", "22023")
    traffic = _traffic("P-LATE", 12, 7, "SO-TRAP")
    sales = _batch(settings, *[("sales", m) for m in traffic[1:-1]])
    async with _pool(settings) as pool:
        run = Run(settings, pool)
        parked = await run.isolating.process(sales)
        assert parked.parked == 12
        report = await run.isolating.process(_batch(settings, ("partners", traffic[0])))
    assert (report.applied, report.released) == (12, 11)
    [letter] = report.dead_letters
    assert (letter.offset, letter.rejection.code) == (7, "processing_failed")
    assert await _applied_orders(settings) == [f"SO-{n}" for n in range(12) if n != 7]
    fates = await _fates(settings)
    assert fates.pop(7) == ("dead_lettered", "processing_failed")
    assert set(fates.values()) == {("applied", None)}
