"""The projections against the real PostgreSQL: batches written by the ledger stage keep every
read model equal to a fold of the ledger (and of the engine's facts); the balances agree
with an independent sum of the postings; `incentives projections check` names a tampered
row and `rebuild` repairs it; a rebuild is exact while a batch runs, in either order; two
writers of different partners never wait for each other; the application role may do all
of it."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import pytest
from ingest_support import admin, run_cli

import projections
from incentives.cli_projections import fact_source
from incentives.sample_data import generate
from ledger import program_store, store
from processors.writer import ledger as ledger_writer
from projections import balances
from schemas.codec import Limits, decode
from schemas.program_loader import load_program
from schemas.settings import Settings
from schemas.streams import MESSAGE_TYPES, Message, stream_of

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
# The workers' role (migration 0012).
APP_ROLE = "incentives_writer"
BATCH = 97
# How long a test waits for PostgreSQL to show a lock wait before it fails (not a timing
# assertion: the test passes as soon as the wait shows).
LOCK_WAIT_DEADLINE_S = 30.0


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """The superuser (some tests take the database back to before a migration); the test of
    the writer's grants sets its role."""
    connection = await asyncpg.connect(admin(settings))
    try:
        yield connection
    finally:
        await connection.close()


def _messages(partners: int, sales: int) -> list[Message]:
    out = []
    for raw in generate(partners=partners, sales=sales):
        stream = stream_of(MESSAGE_TYPES[raw["type"]])
        out.append(decode(stream, msgspec.json.encode(raw), now=NOW, limits=Limits()))
    return out  # type: ignore[return-value]


async def _write_batches(conn: asyncpg.Connection, messages: list[Message]) -> None:
    """The ledger stage, batch by batch, each in its own transaction, as the worker runs it."""
    if not await conn.fetchval("SELECT count(*) FROM program_versions"):
        await program_store.publish(conn, load_program(EXAMPLE), published_by="test")
    programs = await ledger_writer.Programs().refresh(conn)
    for start in range(0, len(messages), BATCH):
        async with conn.transaction():
            await ledger_writer.write(conn, messages[start : start + BATCH], programs)


async def _table(conn: asyncpg.Connection, name: str) -> list[tuple[object, ...]]:
    return sorted((tuple(r) for r in await conn.fetch(f"SELECT * FROM {name}")), key=repr)


async def _diff(conn: asyncpg.Connection) -> projections.Report:
    return await projections.diff(conn, await fact_source(conn))


async def test_batches_keep_every_projection_equal_to_a_fold_of_the_ledger(
    conn: asyncpg.Connection,
) -> None:
    await _write_batches(conn, _messages(15, 400))
    report = await _diff(conn)
    assert report.ok, report.lines()[:5]
    # Not a trivial ledger: every read model has rows.
    assert all(report.rows[t.name] > 0 for t in projections.TABLES
               if t.name not in ("partner_refusals", "partition_freshness")), report.rows
    # The balances, independently: per partner and asset, the months add up to the sum
    # of the postings to the partner's two accounts that the ledger store computes.
    months = await conn.fetch("""SELECT partner_id, asset, sum(pending) AS pending,
                                        sum(available) AS available
                                 FROM partner_months GROUP BY 1, 2""")
    assert len(months) > 15
    for row in months:
        ledger = await store.balances(conn, partner_id=row["partner_id"])
        pid, asset = row["partner_id"], row["asset"]
        assert row["pending"] == ledger.get((f"partner:{pid}:pending", asset), 0)
        assert row["available"] == ledger.get((f"partner:{pid}:available", asset), 0)
    # Every row's kinds add up to its net change.
    for row in await conn.fetch(f"SELECT {', '.join(balances.TABLE.values)} FROM partner_months"):
        assert balances.check_row(tuple(row))
    # Program spend summed over partners is the engine's own budget figure.
    spent = await conn.fetchval(
        """SELECT sum(awarded - returned) FILTER (WHERE asset = 'EUR') + sum(budget_cost)
           FROM partner_spend WHERE program_id = 'northwind-emea'""")
    assert spent == await conn.fetchval(
        "SELECT spent FROM program_spend_totals WHERE program_id = 'northwind-emea'")


async def test_check_names_a_tampered_row_and_rebuild_repairs_it(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    await _write_batches(conn, _messages(8, 150))
    good = await _table(conn, "partner_months")
    pid, asset, month = good[0][:3]
    await conn.execute("UPDATE partner_months SET available = available + 1000003"
                       " WHERE partner_id = $1 AND asset = $2 AND month = $3", pid, asset, month)
    gone = (await conn.fetchrow("SELECT partner_id, program_id FROM partner_tiers LIMIT 1"))
    await conn.execute("DELETE FROM partner_tiers WHERE partner_id = $1 AND program_id = $2",
                       *gone)

    check = run_cli(settings, "projections", "check")
    assert check.returncode == 1, check
    where = f"partner_months (partner_id={pid}, asset={asset}, month={month.isoformat()})"
    line = next(x for x in check.stdout.splitlines() if where in x)
    assert line.startswith("DIFFERENCE: ") and "stored (pending=" in line, line
    assert (f"partner_tiers (partner_id={gone[0]}, program_id={gone[1]}): stored no row"
            in check.stdout), check.stdout
    assert "projections differ from the ledger: 2 rows differ" in check.stdout, check.stdout

    rebuilt = run_cli(settings, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt
    assert f"repaired: {line.removeprefix('DIFFERENCE: ')}" in rebuilt.stdout.splitlines()
    assert await _table(conn, "partner_months") == good
    again = run_cli(settings, "projections", "check")
    assert again.returncode == 0, again
    assert again.stdout.startswith("projections agree with the ledger: partner_months ")


async def test_rebuild_gives_what_the_batches_gave(conn: asyncpg.Connection) -> None:
    """A rebuild of intact projections changes no row and finds nothing to repair."""
    await _write_batches(conn, _messages(8, 150))
    live = {t.name: await _table(conn, t.name) for t in projections.TABLES
            if t.name not in ("partner_tiers", "partners")}
    rebuilt = await projections.rebuild(conn, await fact_source(conn))
    assert rebuilt.repaired.ok, rebuilt.repaired.lines()[:5]
    for name, rows in live.items():
        assert await _table(conn, name) == rows, name


async def _until_waiting_on_a_lock(
    observer: asyncpg.Connection, pid: int, task: asyncio.Future[object]
) -> None:
    deadline = time.monotonic() + LOCK_WAIT_DEADLINE_S
    while time.monotonic() < deadline:
        assert not task.done(), "it finished without waiting for the other transaction"
        if await observer.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"backend {pid} did not wait on a lock within {LOCK_WAIT_DEADLINE_S}s")


async def test_a_batch_waiting_on_a_rebuild_adds_its_records_after_it(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    """A batch appends its records while a rebuild holds the tables, so the rebuild cannot
    see them; the batch waits at its projection update and adds them on top."""
    messages = _messages(8, 150)
    half = len(messages) // 2
    await _write_batches(conn, messages[:half])
    programs = await ledger_writer.Programs().refresh(conn)
    writer = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        rebuilding = conn.transaction()
        await rebuilding.start()
        names = ", ".join(t.name for t in projections.TABLES)
        await conn.execute(f"LOCK TABLE {names} IN EXCLUSIVE MODE")

        async def write_batch() -> None:
            async with writer.transaction():
                await ledger_writer.write(writer, messages[half:], programs)

        batch = asyncio.ensure_future(write_batch())
        await _until_waiting_on_a_lock(conn, writer.get_server_pid(), batch)
        rebuilt = await projections.rebuild(conn, await fact_source(conn))
        await rebuilding.commit()
        await batch
    finally:
        await writer.close()
    assert rebuilt.repaired.ok
    assert (await _diff(conn)).ok


async def test_a_rebuild_waits_for_a_batch_that_updated_the_projections(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    """The other order: a batch has updated the projections but not committed; the rebuild
    waits for its lock until the batch commits, then includes the batch."""
    messages = _messages(8, 150)
    half = len(messages) // 2
    await _write_batches(conn, messages[:half])
    programs = await ledger_writer.Programs().refresh(conn)
    # The superuser: it watches the rebuild's backend in pg_stat_activity, which a role
    # without pg_read_all_stats may not see the wait of.
    writer = await asyncpg.connect(admin(settings))
    try:
        batch = writer.transaction()
        await batch.start()
        await ledger_writer.write(writer, messages[half:], programs)
        rebuild = asyncio.ensure_future(projections.rebuild(conn, await fact_source(conn)))
        await _until_waiting_on_a_lock(writer, conn.get_server_pid(), rebuild)
        await batch.commit()
        rebuilt = await rebuild
    finally:
        await writer.close()
    assert rebuilt.repaired.ok, rebuilt.repaired.lines()[:5]
    assert (await _diff(conn)).ok


async def test_writers_of_different_partners_never_wait_for_each_other(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    """Every projection row belongs to one partner: a writer whose transaction is still
    open blocks no writer of other partners, whatever they post to shared accounts."""
    messages = _messages(10, 200)
    await _write_batches(conn, messages[:40])  # registrations and a first month
    programs = await ledger_writer.Programs().refresh(conn)
    rest = [m for m in messages[40:] if m.partner_id != "*"]
    partners = sorted({m.partner_id for m in rest})
    one = [m for m in rest if m.partner_id in partners[::2]]
    two = [m for m in rest if m.partner_id in partners[1::2]]
    first = await asyncpg.connect(settings.pg_dsn("writer"))
    second = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        held = first.transaction()
        await held.start()
        await projections.apply(first, await _batch_of(first, one[:BATCH], programs))
        # Not the writer's program_spend lock (issue of its own): the projections alone.
        async with second.transaction():
            await asyncio.wait_for(
                projections.apply(second, await _batch_of(second, two[:BATCH], programs)),
                LOCK_WAIT_DEADLINE_S)
        await held.rollback()
    finally:
        await first.close()
        await second.close()


async def _batch_of(conn: asyncpg.Connection, messages: list[Message],
                    programs: list[object]) -> projections.Batch:
    """What the ledger stage would hand the projections for these messages, computed
    without writing the ledger."""
    from processors.engine.runner import Books, run
    from processors.outbox import projection_feed

    books = Books()
    for s in await ledger_writer.stored_states(conn):
        books.states[s.partner_id] = s
    outcome = run(messages, books, programs)  # type: ignore[arg-type]
    return projection_feed.batch(messages, outcome, books.states, programs)  # type: ignore[arg-type]


async def test_the_application_role_keeps_checks_and_rebuilds_the_projections(
    conn: asyncpg.Connection,
) -> None:
    """Migration 0010's grants are enough for the worker's role: a batch, a check and a
    rebuild all run as incentives_writer."""
    await program_store.publish(conn, load_program(EXAMPLE), published_by="test")
    programs = await ledger_writer.Programs().refresh(conn)
    await conn.execute(f"SET ROLE {APP_ROLE}")
    async with conn.transaction():
        await ledger_writer.write(conn, _messages(5, 60), programs)
    assert (await _diff(conn)).ok
    assert (await projections.rebuild(conn, await fact_source(conn))).repaired.ok
    assert await conn.fetchval("SELECT current_user") == APP_ROLE
    await conn.execute("RESET ROLE")
    assert await conn.fetchval("SELECT count(*) FROM partner_months") > 0
