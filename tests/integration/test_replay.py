"""`incentives audit replay`: the ledger a real worker wrote is exactly what its stored
inputs give; a record forged with a correct hash, which the chain checks cannot see, is
named as a difference, and so is an amount edited on both legs of a record."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import asyncpg
import msgspec
from ingest_support import Worker, admin, run_cli, wait_consumed

from incentives.publisher import Publisher
from incentives.sample_data import generate
from ledger import program_store
from ledger.core import (
    PAYOUT_CLEARING,
    ChainHead,
    Draft,
    Explanation,
    Posting,
    Record,
    RecordKind,
    append,
    partner_available,
)
from ledger.store import append as store_append
from schemas.program_loader import load_program
from schemas.settings import Settings
from schemas.streams import ANY

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"


async def _forge_a_payout(settings: Settings) -> tuple[ChainHead, list[Record]]:
    """A payout appended at the end of a chain by someone with write access, sealed with a
    correct hash and head: `audit verify` has no checkpoint after it to disagree with.
    Returns the chain's head before it and the records appended."""
    conn = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        row = await conn.fetchrow(
            "SELECT head_seq, head_hash FROM partner_state WHERE partner_id = 'P-00001'"
        )
        head = ChainHead("P-00001", row["head_seq"], bytes(row["head_hash"]))
        at = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
        forged = Draft(
            partner_id="P-00001", kind=RecordKind.PAYOUT, leg="payout", occurred_at=at,
            recorded_at=at, source_event_ids=(uuid.uuid4(),),
            explanation=Explanation(summary="payout", author="someone", reason="none"),
            postings=(Posting(partner_available("P-00001"), "EUR", -50_000),
                      Posting(PAYOUT_CLEARING, "EUR", 50_000)),
        )  # fmt: skip
        records, _ = append(head, [forged])
        async with conn.transaction():
            await store_append(conn, records)
    finally:
        await conn.close()
    return head, records


async def _edit_both_legs(settings: Settings) -> tuple[asyncpg.Record, str]:
    """An amount edited on both legs of a record: it still balances and its hash column is
    untouched, so only the stored content, compared with the replay's, can tell. Returns the
    record edited and the UPDATE's status."""
    conn = await asyncpg.connect(admin(settings))
    try:
        target = await conn.fetchrow(
            "SELECT r.record_id, r.partner_id, r.seq FROM ledger_records r"
            " JOIN ledger_postings p USING (record_id) WHERE r.partner_id = 'P-00002'"
            " ORDER BY r.seq LIMIT 1"
        )
        async with conn.transaction():
            await conn.execute("ALTER TABLE ledger_postings DISABLE TRIGGER USER")
            edited = await conn.execute(
                "UPDATE ledger_postings SET amount = amount * 10 WHERE record_id = $1",
                target["record_id"],
            )
            await conn.execute("ALTER TABLE ledger_postings ENABLE TRIGGER USER")
    finally:
        await conn.close()
    return target, edited


async def test_replay_of_a_workers_ledger_is_identical_and_a_forged_record_is_named(
    settings: Settings, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    await program_store.publish(conn, load_program(EXAMPLE), published_by="test")
    await conn.close()
    async with Publisher(settings) as publisher:
        for raw in generate(partners=12, sales=600):
            await publisher.publish(ANY.decode(msgspec.json.encode(raw)))
    with Worker(settings, tmp_path / "worker.log") as worker:
        await wait_consumed(settings, worker)

    clean = run_cli(settings, "audit", "replay")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.strip().endswith(": identical"), clean.stdout

    head, records = await _forge_a_payout(settings)
    assert run_cli(settings, "audit", "verify").returncode == 0, "the chains alone look fine"

    caught = run_cli(settings, "audit", "replay")
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert caught.stdout.splitlines()[0] == (
        f"DIFFERENCE P-00001 #{head.seq + 1}: the ledger has record {records[0].record_id},"
        " which no stored input gives"
    )
    assert caught.stdout.strip().endswith(": 1 difference(s)")

    target, edited = await _edit_both_legs(settings)
    assert edited == "UPDATE 2"
    edited_too = run_cli(settings, "audit", "replay")
    assert edited_too.returncode == 1, edited_too.stdout + edited_too.stderr
    assert (
        f"DIFFERENCE P-00002 #{target['seq']}: record {target['record_id']} holds other"
        " postings than the replay gives, under the same hash: its stored content was edited"
    ) in edited_too.stdout.splitlines()
    assert edited_too.stdout.strip().endswith(": 2 difference(s)")
