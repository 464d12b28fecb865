"""The projections against the real PostgreSQL: batches written by the ledger stage keep
``account_balances`` equal to the fold of every posting and ``partner_tiers`` equal to the
partner states; `incentives projections check` names a tampered row with both amounts and
`rebuild` repairs it; concurrent writers add up; the application role may do all of it;
migration 0008 fills the projections of a ledger that predates it."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import pytest
from ingest_support import admin, run_cli

import projections
from ledger import program_store, store
from ledger.balances import fold
from ledger.core import Draft, Explanation, Posting, Record, RecordKind, append, empty_head
from ledger.migrate import migrate
from ledger.store import stream_records
from processors import ledger_writer
from processors.engine import compile_program, decode_state
from processors.engine.state import PartnerState, TierState
from processors.runner import Books, run
from processors.sample_data import generate
from projections import balances, tiers
from projections.tiers import Tier
from schemas.codec import Limits, decode
from schemas.program_loader import load_program
from schemas.settings import Settings
from schemas.streams import MESSAGE_TYPES, Message, stream_of

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
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
    await program_store.publish(conn, load_program(EXAMPLE), published_by="test")
    programs = await ledger_writer.Programs().refresh(conn)
    for start in range(0, len(messages), BATCH):
        async with conn.transaction():
            await ledger_writer.write(conn, messages[start : start + BATCH], programs)


async def _account_balances(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    rows = await conn.fetch("SELECT account, asset, amount FROM account_balances")
    amounts = {(r["account"], r["asset"]): r["amount"] for r in rows}
    # numeric since migration 0010 (sums over every partner cannot overflow), so Decimal,
    # exact and whole; int where a test re-created the table of migration 0008.
    assert all(v == int(v) for v in amounts.values()), "whole minor units"
    return {key: int(value) for key, value in amounts.items()}


async def _ledger_fold(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    """The auditor's fold: every record as sealed, summed in Python (ledger.balances.fold)."""
    return fold([record async for record in stream_records(conn)])


async def _partner_state_tiers(conn: asyncpg.Connection) -> dict[tuple[str, str], Tier]:
    """The tiers in partner_state, decoded as the engine decodes its states."""
    found = {}
    for row in await conn.fetch("SELECT partner_id, state FROM partner_state"):
        if row["state"] in (None, "{}"):
            continue
        for program_id, entry in decode_state(row["state"]).tiers.items():
            found[(row["partner_id"], program_id)] = Tier(entry.tier, entry.since)
    return found


async def _partner_tiers(conn: asyncpg.Connection) -> dict[tuple[str, str], Tier]:
    rows = await conn.fetch("SELECT partner_id, program_id, tier, since FROM partner_tiers")
    return {(r["partner_id"], r["program_id"]): Tier(r["tier"], r["since"]) for r in rows}


async def test_batches_keep_the_projections_equal_to_the_ledger(
    conn: asyncpg.Connection,
) -> None:
    messages = _messages(15, 400)
    await _write_batches(conn, messages)

    stored = await _account_balances(conn)
    folded = await _ledger_fold(conn)
    # Every account, every asset, exactly; zero sums are left out of a fold, not of the table.
    assert {key: amount for key, amount in stored.items() if amount != 0} == folded
    posted = await conn.fetch("SELECT DISTINCT account, asset FROM ledger_postings")
    assert set(stored) == {(r["account"], r["asset"]) for r in posted}
    # Not a trivial ledger: partner and shared accounts, cash and points.
    assert len(folded) > 40
    assert {a.split(":")[0] for a, _ in folded} >= {"partner", "program"}
    assert {s.split(":")[0] for _, s in folded} >= {"EUR", "PTS"}
    # And the offline reference (the pure runner over the same messages) agrees.
    reference = run(messages, Books(), [compile_program(load_program(EXAMPLE).program)])
    assert fold(reference.records) == folded

    expected_tiers = await _partner_state_tiers(conn)
    assert expected_tiers, "the sample quarter promotes some partners"
    assert await _partner_tiers(conn) == expected_tiers

    report = await projections.diff(conn)
    assert report.ok, report
    assert (report.balances, report.tiers) == (len(folded), len(expected_tiers))


async def test_check_names_a_tampered_balance_and_rebuild_repairs_it(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    await _write_batches(conn, _messages(8, 150))
    good = await _account_balances(conn)
    account, asset = min(k for k, v in good.items() if k[0].endswith(":available") and v)
    tampered = good[(account, asset)] + 1_000_003
    await conn.execute("UPDATE account_balances SET amount = $3 WHERE account = $1 AND asset = $2",
                       account, asset, tampered)
    gone = min(await _partner_tiers(conn))
    await conn.execute("DELETE FROM partner_tiers WHERE partner_id = $1 AND program_id = $2",
                       *gone)

    check = run_cli(settings, "projections", "check")
    assert check.returncode == 1, check
    line = (f"DIFFERENCE balance {account} {asset}: stored {tampered}, "
            f"expected {good[(account, asset)]}")
    assert line in check.stdout.splitlines(), check.stdout
    assert f"DIFFERENCE tier of partner {gone[0]} in program {gone[1]}: stored none" in (
        check.stdout), check.stdout
    assert "1 of" in check.stdout and "projections differ from the ledger" in check.stdout

    rebuilt = run_cli(settings, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt
    assert f"repaired: {line}" in rebuilt.stdout.splitlines(), rebuilt.stdout
    assert await _account_balances(conn) == good
    assert await _partner_tiers(conn) == await _partner_state_tiers(conn)

    again = run_cli(settings, "projections", "check")
    assert again.returncode == 0, again
    nonzero = sum(1 for v in good.values() if v)
    tier_count = len(await _partner_state_tiers(conn))
    assert again.stdout.strip() == (f"projections agree with the ledger: {nonzero:,} balances, "
                                    f"{tier_count:,} tiers"), again.stdout


async def test_rebuild_gives_what_the_batches_gave(conn: asyncpg.Connection) -> None:
    """A rebuild of an intact projection changes no amount and no tier, and finds nothing
    to repair: the live path and the rebuild agree row for row, zero rows included."""
    await _write_batches(conn, _messages(8, 150))
    live_balances, live_tiers = await _account_balances(conn), await _partner_tiers(conn)
    rebuilt = await projections.rebuild(conn)
    assert rebuilt.repaired.ok
    assert rebuilt.balance_rows == len(live_balances) and rebuilt.tier_rows == len(live_tiers)
    assert await _account_balances(conn) == live_balances
    assert await _partner_tiers(conn) == live_tiers


async def test_a_tier_gone_from_the_state_is_deleted_and_unchanged_rows_are_not_rewritten(
    conn: asyncpg.Connection,
) -> None:
    """The engine never drops a tier today; the projection still follows the state if it
    does. Partners not handed over are left alone."""
    def state(partner_id: str, **entries: str) -> PartnerState:
        return PartnerState(partner_id=partner_id, tiers={
            program: TierState(tier=tier, since=T0) for program, tier in entries.items()})

    async with conn.transaction():
        await projections.apply(conn, [], {"P-1": state("P-1", a="gold", b="silver"),
                                           "P-2": state("P-2", a="bronze")})
    versions = {(r["partner_id"], r["program_id"]): r["xmin"] for r in await conn.fetch(
        "SELECT partner_id, program_id, xmin::text FROM partner_tiers")}
    async with conn.transaction():
        await projections.apply(conn, [], {"P-1": state("P-1", a="gold")})
    assert await _partner_tiers(conn) == {("P-1", "a"): Tier("gold", T0),
                                          ("P-2", "a"): Tier("bronze", T0)}
    after = {(r["partner_id"], r["program_id"]): r["xmin"] for r in await conn.fetch(
        "SELECT partner_id, program_id, xmin::text FROM partner_tiers")}
    assert after == {k: versions[k] for k in after}, "an unchanged tier keeps its row version"

    async with conn.transaction():
        await projections.apply(conn, [], {"P-1": state("P-1"), "P-2": state("P-2", a="gold")})
    assert await _partner_tiers(conn) == {("P-2", "a"): Tier("gold", T0)}


def _transfer_records(
    partner_id: str,
    amounts: list[int],
    source: str = "ledger:adjustments",
    target: str = "payout:clearing",
) -> list[Record]:
    """Adjustments from `source` to `target`, sealed in a new chain."""
    drafts = [
        Draft(partner_id=partner_id, kind=RecordKind.ADJUSTMENT, occurred_at=T0,
              recorded_at=T0, source_event_ids=(uuid.uuid4(),), leg=str(n),
              explanation=Explanation(summary="test", author="tester", reason="test"),
              postings=(Posting(source, "EUR", -amount),
                        Posting(target, "EUR", amount)))
        for n, amount in enumerate(amounts)
    ]
    return append(empty_head(partner_id), drafts)[0]


async def test_concurrent_writers_of_a_shared_account_add_up(settings: Settings) -> None:
    """Two writers of other partners post to the same shared accounts. The second waits on
    the first's row locks, then adds to what the first committed: no update is lost."""
    first = await asyncpg.connect(settings.pg_dsn("writer"))
    second = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        async with first.transaction():
            await projections.apply(first, _transfer_records("P-1", [100, 20]), {})
        one = first.transaction()
        await one.start()
        await projections.apply(first, _transfer_records("P-1", [3]), {})

        async def write_second() -> None:
            async with second.transaction():
                await projections.apply(second, _transfer_records("P-2", [4000]), {})

        waiting = asyncio.ensure_future(write_second())
        await _until_waiting_on_a_lock(first, second.get_server_pid(), waiting)
        await one.commit()
        await waiting
        assert await _account_balances(first) == {
            ("ledger:adjustments", "EUR"): -4123, ("payout:clearing", "EUR"): 4123}
    finally:
        await first.close()
        await second.close()


async def _until_waiting_on_a_lock(
    observer: asyncpg.Connection, pid: int, task: asyncio.Future[None]
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
    """The race the rebuild's lock is for: a batch appends its records while a rebuild
    holds the tables, so the rebuild cannot see them; the batch waits at its projection
    update and adds them on top of the rebuilt rows once the rebuild commits."""
    messages = _messages(8, 150)
    half = len(messages) // 2
    await _write_batches(conn, messages[:half])
    records_before = await conn.fetchval("SELECT count(*) FROM ledger_records")
    programs = await ledger_writer.Programs().refresh(conn)
    writer = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        rebuilding = conn.transaction()
        await rebuilding.start()
        await conn.execute("LOCK TABLE account_balances, partner_tiers IN EXCLUSIVE MODE")

        async def write_batch() -> None:
            async with writer.transaction():
                await ledger_writer.write(writer, messages[half:], programs)

        batch = asyncio.ensure_future(write_batch())
        await _until_waiting_on_a_lock(conn, writer.get_server_pid(), batch)
        rebuilt = await projections.rebuild(conn)  # in the transaction that holds the lock
        await rebuilding.commit()
        await batch
    finally:
        await writer.close()
    assert rebuilt.repaired.ok
    assert await conn.fetchval("SELECT count(*) FROM ledger_records") > records_before
    stored = await _account_balances(conn)
    assert {k: v for k, v in stored.items() if v} == await _ledger_fold(conn)
    assert await _partner_tiers(conn) == await _partner_state_tiers(conn)
    assert (await projections.diff(conn)).ok


async def test_a_rebuild_waits_for_a_batch_that_updated_the_projections(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    """The other order: a batch has appended and updated the projections (new accounts
    among them) but not committed. The rebuild waits for its lock until the batch commits,
    then rebuilds with the batch's records; without the lock it would miss the batch's new
    rows in its DELETE and collide with them in its INSERT."""
    await _write_batches(conn, _messages(5, 60))
    # From an account the rebuild will find (and delete) to one it will not.
    source = await conn.fetchval("SELECT min(account) FROM account_balances"
                                 " WHERE account LIKE 'program:%' AND asset = 'EUR'")
    records = _transfer_records("P-NEW", [70, 8], source=source,
                                target="partner:P-NEW:available")
    # The superuser: it watches the rebuild's backend in pg_stat_activity, which a role
    # without pg_read_all_stats may not see the wait of.
    writer = await asyncpg.connect(admin(settings))
    try:
        batch = writer.transaction()
        await batch.start()
        await store.append(writer, records)
        await projections.apply(writer, records, {})
        rebuild = asyncio.ensure_future(projections.rebuild(conn))
        await _until_waiting_on_a_lock(writer, conn.get_server_pid(), rebuild)
        await batch.commit()
        rebuilt = await rebuild
    finally:
        await writer.close()
    assert rebuilt.repaired.ok
    stored = await _account_balances(conn)
    assert stored[("partner:P-NEW:available", "EUR")] == 78
    assert {k: v for k, v in stored.items() if v} == await _ledger_fold(conn)


async def test_the_application_role_keeps_checks_and_rebuilds_the_projections(
    conn: asyncpg.Connection,
) -> None:
    """Migration 0010's grants are enough for the worker's role: a batch, a check and a
    rebuild all run as incentives_writer."""
    await program_store.publish(conn, load_program(EXAMPLE), published_by="test")
    programs = await ledger_writer.Programs().refresh(conn)
    messages = _messages(5, 60)
    await conn.execute(f"SET ROLE {APP_ROLE}")
    async with conn.transaction():
        await ledger_writer.write(conn, messages, programs)
    assert (await projections.diff(conn)).ok
    assert (await projections.rebuild(conn)).repaired.ok
    assert await conn.fetchval("SELECT current_user") == APP_ROLE
    await conn.execute("RESET ROLE")
    assert await conn.fetchval("SELECT count(*) FROM account_balances") > 0


async def test_migration_0008_fills_the_projections_of_an_existing_ledger(
    conn: asyncpg.Connection,
) -> None:
    """A database with a ledger from before 0008: the migration fills both tables, so the
    first batch after the upgrade adds to the right totals."""
    await _write_batches(conn, _messages(8, 150))
    live_balances, live_tiers = await _account_balances(conn), await _partner_tiers(conn)
    await conn.execute("DROP TABLE account_balances, partner_tiers")
    await conn.execute("DELETE FROM schema_migrations WHERE version = 8")

    assert await migrate(conn) == [8]
    assert await _account_balances(conn) == live_balances
    assert await _partner_tiers(conn) == live_tiers
    assert (await projections.diff(conn)).ok


async def test_balances_and_tiers_stored_and_expected_read_the_same_rows(
    conn: asyncpg.Connection,
) -> None:
    """The check's two sides, on an empty database and after a batch: no difference."""
    assert await balances.expected(conn) == await balances.stored(conn) == {}
    assert await tiers.expected(conn) == await tiers.stored(conn) == {}
    await _write_batches(conn, _messages(5, 60))
    assert await balances.expected(conn) == {
        k: v for k, v in (await balances.stored(conn)).items() if v}
    assert await tiers.expected(conn) == await tiers.stored(conn)
