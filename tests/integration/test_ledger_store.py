"""The ledger store against the real PostgreSQL: append and read back, balances, uniqueness
against stale writers, immutability by privileges and trigger, and checkpoints. The ledger
built here (and the superuser's way around the trigger) is also what the tamper tests
(``test_ledger_tampering.py``) and the anchor tests start from."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import asyncpg
import pytest
from ingest_support import admin, env_for, run_cli

from ledger import store
from ledger.balances import account_balances, fold
from ledger.checkpoint import check_checkpoint
from ledger.core import (
    PAYOUT_CLEARING,
    Chain,
    ChainHead,
    Draft,
    Explanation,
    Posting,
    Record,
    RecordKind,
    Rounding,
    empty_head,
    partner_available,
    partner_pending,
    points,
    program_expense,
    seal,
)
from schemas.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PARTNERS = ("P-1", "P-2", "P-3")
LENGTH = 8  # records per partner: checkpoint 1 pins seq 4, checkpoint 2 pins seq 8
PROGRAM = "northwind"
# The workers' role (migration 0012).
APP_ROLE = "incentives_writer"


# --- building a ledger ------------------------------------------------------------------------


def draft(partner_id: str, n: int, amount: int = 1_000) -> Draft:
    """Record n of a partner; over eight records: commissions on hold, hold releases, points,
    a tier change (no postings) and a payout."""
    pending, available = partner_pending(partner_id), partner_available(partner_id)
    expense = program_expense(PROGRAM)
    common = dict(
        partner_id=partner_id, occurred_at=T0 + timedelta(days=n),
        recorded_at=T0 + timedelta(days=n, seconds=1, microseconds=n),
        source_event_ids=(uuid.uuid5(uuid.NAMESPACE_OID, f"{partner_id}/{n}"),),
    )
    program = dict(program_id=PROGRAM, program_version=2)
    step = n % 8
    if step in (0, 1, 5):
        return Draft(kind=RecordKind.ACCRUAL, leg="0", rule_id="per-sale", **program,
                     explanation=Explanation(summary=f"sale {n}", formula="net * 3%",
                                             inputs={"net_minor": amount * 33, "tier": "gold"},
                                             rounding=Rounding(mode="half_even",
                                                               exact=f"{amount}.2", result=amount)),
                     postings=(Posting(expense, "EUR", -amount), Posting(pending, "EUR", amount)),
                     **common)
    if step in (2, 6):
        return Draft(kind=RecordKind.HOLD_RELEASE, leg="release", rule_id="hold", **program,
                     explanation=Explanation(summary=f"hold of sale {n - 1} ended"),
                     postings=(Posting(pending, "EUR", -amount), Posting(available, "EUR", amount)),
                     **common)
    if step == 3:
        # Quotes, a newline and non-ASCII text must survive the round trip byte for byte.
        return Draft(kind=RecordKind.ACCRUAL, leg="points", rule_id="points", **program,
                     explanation=Explanation(summary="points \"welcome\"\nbonus, Zürich 渠道"),
                     postings=(Posting(expense, points(PROGRAM), -50),
                               Posting(available, points(PROGRAM), 50)),
                     **common)
    if step == 4:
        return Draft(kind=RecordKind.TIER_CHANGE, leg="tier", rule_id="tiers", **program,
                     explanation=Explanation(summary="promoted to gold"), **common)
    return Draft(kind=RecordKind.PAYOUT, leg="payout",
                 explanation=Explanation(summary="payout", author="finance", reason="run"),
                 postings=(Posting(available, "EUR", -amount // 2),
                           Posting(PAYOUT_CLEARING, "EUR", amount // 2)),
                 **common)


class Ledger(NamedTuple):
    chains: dict[str, list[Record]]

    def record(self, partner_id: str, seq: int) -> Record:
        return self.chains[partner_id][seq - 1]

    def all(self) -> list[Record]:
        return [r for p in sorted(self.chains) for r in self.chains[p]]


async def build(conn: asyncpg.Connection, *, checkpoints: bool = True) -> Ledger:
    """Three partners, written in two interleaved batches, a checkpoint after each."""
    chains = {p: Chain.empty(p) for p in PARTNERS}
    records: dict[str, list[Record]] = {p: [] for p in PARTNERS}
    for first, last in ((0, 4), (4, LENGTH)):
        batch: list[Record] = []
        for n in range(first, last):
            for p in PARTNERS:
                made = chains[p].append([draft(p, n, amount=1_000 + 10 * n)])
                records[p] += made
                batch += made
        async with conn.transaction():
            await store.append(conn, batch)
        if checkpoints:
            await store.take_checkpoint(conn, T0 + timedelta(days=30 + last))
    return Ledger(records)


@asynccontextmanager
async def triggers_disabled(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """What an attacker with superuser rights does; one transaction, so nobody else ever
    sees the trigger disabled."""
    async with conn.transaction():
        for table in ("ledger_records", "ledger_postings"):
            await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        yield
        for table in ("ledger_records", "ledger_postings"):
            await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection (the stack's postgres role) to this test's database."""
    connection = await asyncpg.connect(admin(settings))
    try:
        yield connection
    finally:
        await connection.close()


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "incentives.cli", *args],
        env=env_for(settings),
        capture_output=True, text=True, timeout=120, check=False,
    )


# --- append and read back ---------------------------------------------------------------------


async def test_append_then_stream_gives_back_the_same_records_which_verify(
    conn: asyncpg.Connection,
) -> None:
    """Records survive the round trip field for field (pages of 5 cross partner borders),
    so every hash recomputes, and the whole ledger verifies."""
    ledger = await build(conn)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        streamed = [r async for r in store.stream_records(conn, chunk=5)]
        pages = [len(page) async for page in store.stream_chunks(conn, chunk=5)]
    assert streamed == ledger.all()
    assert pages == [5, 5, 5, 5, 4]
    async with contextlib.aclosing(store.stream_chunks(conn, chunk=5)) as stream:
        async for _ in stream:
            break  # stopping early cancels the next page's query ...
    assert await conn.fetchval("SELECT count(*) FROM ledger_records") == 24  # ... conn is free
    report = await store.verify_ledger(conn, chunk=7)
    assert report.ok, report.findings
    assert (report.records, report.partners, report.checkpoints) == (24, 3, 2)


async def test_heads_and_known_ids_reflect_what_was_appended(conn: asyncpg.Connection) -> None:
    """load_heads gives each chain's last record (empty for an unknown partner);
    existing_record_ids finds exactly the stored ids, as a replaying writer needs."""
    ledger = await build(conn, checkpoints=False)
    heads = await store.load_heads(conn, ["P-2", "P-9"])
    last = ledger.record("P-2", LENGTH)
    assert heads == {"P-2": ChainHead("P-2", LENGTH, last.hash), "P-9": empty_head("P-9")}
    unknown = uuid.uuid4()
    assert await store.existing_record_ids(conn, [last.record_id, unknown]) == {last.record_id}


async def test_a_partner_row_made_in_advance_at_seq_0_is_moved_by_the_first_append(
    conn: asyncpg.Connection,
) -> None:
    """A writer may create and lock the partner_state row (seq 0, genesis hash) before it
    appends, as processors/writer/ledger.py does; the first append then moves that row."""
    await conn.execute("INSERT INTO partner_state (partner_id, head_seq, head_hash, state) "
                       "VALUES ('P-1', 0, $1, '{\"tier\": \"gold\"}')", empty_head("P-1").hash)
    chain = Chain.empty("P-1")
    async with conn.transaction():
        await store.append(conn, chain.append([draft("P-1", n) for n in range(2)]))
    assert (await store.load_heads(conn, ["P-1"]))["P-1"] == chain.head
    # append moves the head only: the engine's state column is the writer's.
    assert await conn.fetchval("SELECT state->>'tier' FROM partner_state") == "gold"


async def test_balances_as_of_equal_the_pure_fold(conn: asyncpg.Connection) -> None:
    """SQL balances equal ledger.balances.fold on the same records, per partner chain, per
    account prefix, at several event times and with a known-at cut."""
    ledger = await build(conn, checkpoints=False)
    every = ledger.all()
    moments = [None, T0 - timedelta(days=1), T0, T0 + timedelta(days=3, hours=1),
               T0 + timedelta(days=LENGTH)]
    for as_of in moments:
        chain = [r for r in every if r.partner_id == "P-2"]
        assert await store.balances(conn, partner_id="P-2", as_of=as_of) == fold(chain,
                                                                                as_of=as_of)
        prefixed = await store.balances(conn, account_prefix="partner:P-3:", as_of=as_of)
        assert prefixed == account_balances(fold(every, as_of=as_of), "partner:P-3:")
    known_at = T0 + timedelta(days=2, seconds=1, microseconds=1)  # drops record 3 on
    assert await store.balances(conn, known_at=known_at) == fold(every, known_at=known_at)
    assert await store.balances(conn, partner_id="P-2", as_of=T0 + timedelta(days=3)) == {
        ("program:northwind:expense", "EUR"): -2_010,
        ("partner:P-2:pending", "EUR"): 990,
        ("partner:P-2:available", "EUR"): 1_020,
        ("program:northwind:expense", "PTS:northwind"): -50,
        ("partner:P-2:available", "PTS:northwind"): 50,
    }


async def test_balance_command_prints_the_partners_accounts(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    """`incentives balance` shows the fold's amounts; a naive --as-of is refused."""
    await build(conn, checkpoints=False)
    result = cli(settings, "balance", "--partner", "P-2", "--as-of", "2026-01-04T00:00:00Z")
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()[1:]]
    assert lines[0] == ["partner:P-2:available", "EUR", "1020"]
    assert ["partner:P-2:pending", "EUR", "990"] in lines
    assert ["program:northwind:expense", "EUR", "-2010"] in lines
    naive = cli(settings, "balance", "--partner", "P-2", "--as-of", "2026-01-04T00:00:00")
    assert naive.returncode == 2 and "has no time zone" in naive.stderr


# --- uniqueness: replays and stale writers ----------------------------------------------------


async def test_appending_the_same_batch_twice_fails_and_writes_nothing(
    conn: asyncpg.Connection,
) -> None:
    """append never skips: a repeated batch is a ChainConflict (the head moved past it)."""
    batch = Chain.empty("P-1").append([draft("P-1", n) for n in range(3)])
    async with conn.transaction():
        await store.append(conn, batch)
    with pytest.raises(store.ChainConflict, match="the batch starts after seq 0, the stored "
                       "head is seq 3") as caught:
        async with conn.transaction():
            await store.append(conn, batch)
    assert caught.value.partner_ids == ("P-1",)
    assert await conn.fetchval("SELECT count(*) FROM ledger_records") == 3
    assert await conn.fetchval("SELECT count(*) FROM ledger_postings") == 6


async def test_a_stale_writer_appending_seq_n_again_fails(conn: asyncpg.Connection) -> None:
    """Two writers load the same head; the one that commits second (a zombie) is refused
    and none of its records are kept, even for partners it did not conflict on."""
    first = Chain.empty("P-1").append([draft("P-1", 0)])
    async with conn.transaction():
        await store.append(conn, first)
    head = (await store.load_heads(conn, ["P-1"]))["P-1"]
    live = Chain(head).append([draft("P-1", 1)])
    zombie = Chain(head).append([draft("P-1", 2)]) + Chain.empty("P-3").append([draft("P-3", 0)])
    async with conn.transaction():
        await store.append(conn, live)
    with pytest.raises(store.ChainConflict, match="partner 'P-1'"):
        async with conn.transaction():
            await store.append(conn, zombie)
    rows = await conn.fetch("SELECT record_id FROM ledger_records ORDER BY partner_id, seq")
    assert [r["record_id"] for r in rows] == [first[0].record_id, live[0].record_id]


async def test_a_concurrent_writer_waits_for_the_first_and_then_fails(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    """The head row lock serialises two writers of one partner: the second blocks until the
    first commits, then finds the head moved and fails."""
    other = await asyncpg.connect(admin(settings))
    try:
        first = Chain.empty("P-1").append([draft("P-1", 0)])
        second = Chain.empty("P-1").append([draft("P-1", 1)])
        async with conn.transaction():
            await store.append(conn, first)

            async def second_writer() -> None:
                async with other.transaction():
                    await store.append(other, second)

            waiting = asyncio.ensure_future(second_writer())
            await asyncio.sleep(0.5)
            assert not waiting.done(), "the second writer must wait for the first one's commit"
        with pytest.raises(store.ChainConflict):
            await asyncio.wait_for(waiting, timeout=10)
    finally:
        await other.close()
    assert await conn.fetchval("SELECT count(*) FROM ledger_records") == 1


@pytest.mark.parametrize(("same_record", "constraint"), [
    (True, "ledger_records_pkey"),
    (False, "ledger_records_partner_seq_key"),
])
async def test_unique_constraints_refuse_seq_n_again_even_when_partner_state_lies(
    conn: asyncpg.Connection, same_record: bool, constraint: str
) -> None:
    """partner_state is a mutable cache; if it is rewound, the record-id primary key and
    the (partner_id, seq) unique constraint still refuse a second record at seq N."""
    chain = Chain.empty("P-1")
    records = chain.append([draft("P-1", n) for n in range(3)])
    async with conn.transaction():
        await store.append(conn, records)
    await conn.execute("UPDATE partner_state SET head_seq = 2, head_hash = $1",
                       records[1].hash)
    again = records[2] if same_record else seal(draft("P-1", 7), 3, records[1].hash)
    with pytest.raises(store.ChainConflict) as caught:
        async with conn.transaction():
            await store.append(conn, [again])
    assert caught.value.constraint == constraint
    assert isinstance(caught.value.__cause__, asyncpg.UniqueViolationError)
    assert await conn.fetchval("SELECT count(*) FROM ledger_records") == 3


# --- immutability -----------------------------------------------------------------------------

LEDGER_TABLES = ("ledger_records", "ledger_postings", "chain_checkpoints", "inbox")
# CASCADE: a plain TRUNCATE of ledger_records is already stopped by the foreign key from
# ledger_postings, which would prove nothing about the trigger.
CHANGES = ("UPDATE {table} SET {column} = {column}", "DELETE FROM {table}",
           "TRUNCATE {table} CASCADE")
FIRST_COLUMN = {"ledger_records": "leg", "ledger_postings": "amount",
                "chain_checkpoints": "taken_at", "inbox": "stream"}


def _statements() -> list[str]:
    return [change.format(table=table, column=FIRST_COLUMN[table])
            for table in LEDGER_TABLES for change in CHANGES]


async def test_the_application_role_may_append_and_checkpoint(conn: asyncpg.Connection) -> None:
    """The control for the refusals below: as the writer the workers' work succeeds; the
    checkpoints are the auditor's."""
    await conn.execute(f"SET ROLE {APP_ROLE}")
    await build(conn, checkpoints=False)
    await conn.execute("SET ROLE incentives_auditor")
    await store.take_checkpoint(conn, T0)
    assert (await store.verify_ledger(conn)).ok


@pytest.mark.parametrize("statement", _statements())
async def test_the_application_role_cannot_change_the_ledger(
    conn: asyncpg.Connection, statement: str
) -> None:
    """UPDATE, DELETE and TRUNCATE are refused by privileges (SQLSTATE 42501) before any
    trigger runs, so disabling the trigger would not help the application role."""
    await build(conn)
    await conn.execute(f"SET ROLE {APP_ROLE}")
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as caught:
        await conn.execute(statement)
    assert caught.value.sqlstate == "42501"
    await conn.execute("RESET ROLE")
    assert await conn.fetchval("SELECT count(*) FROM ledger_records") == 3 * LENGTH


@pytest.mark.parametrize("statement", _statements())
async def test_a_superuser_is_refused_by_the_trigger(
    conn: asyncpg.Connection, statement: str
) -> None:
    """Privileges do not bind a superuser; the trigger does, with a message saying why."""
    await build(conn)
    assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    with pytest.raises(asyncpg.RestrictViolationError) as caught:
        await conn.execute(statement)
    assert caught.value.sqlstate == "23001"
    verb = statement.split()[0]
    assert "is append-only: " + verb + " rejected; corrections are new records" in str(
        caught.value)
    assert await conn.fetchval("SELECT count(*) FROM ledger_records") == 3 * LENGTH


# --- checkpoints ------------------------------------------------------------------------------


async def test_checkpoints_chain_and_time_never_goes_back(conn: asyncpg.Connection) -> None:
    """Two checkpoints pin the heads after each batch, link to each other, and a third one
    dated before the second is refused."""
    ledger = await build(conn)
    first, second = await store.load_checkpoints(conn)
    assert check_checkpoint(first, None) == [] and check_checkpoint(second, first) == []
    assert [h.seq for h in first.heads] == [4, 4, 4]
    assert [h.hash for h in second.heads] == [ledger.record(p, LENGTH).hash for p in PARTNERS]
    with pytest.raises(store.CheckpointError, match="checkpoint 2 was taken later"):
        await store.take_checkpoint(conn, T0)


async def test_checkpoint_command_prints_the_stored_root(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    await build(conn)
    result = run_cli(settings, "audit", "checkpoint")  # on the test's own topics
    assert result.returncode == 0, result.stderr
    third = (await store.load_checkpoints(conn))[-1]
    assert third.checkpoint_seq == 3
    assert "checkpoint 3 at " in result.stdout and third.root.hex() in result.stdout
    assert f"published to {settings.topic('checkpoints')}: checkpoint(s) 1, 2, 3" in result.stdout
