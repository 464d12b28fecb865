"""The ledger stage against the real PostgreSQL: batch by batch, it builds exactly the
ledger the pure runner builds offline, and the stored ledger verifies."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncpg
import msgspec

from incentives.sample_data import generate
from ledger import program_store
from ledger.store import verify_ledger
from processors.engine import compile_program
from processors.engine.runner import Books, run
from processors.writer import ledger as ledger_writer
from schemas.codec import Limits, decode
from schemas.program_loader import load_program
from schemas.settings import Settings
from schemas.streams import MESSAGE_TYPES, Message, stream_of

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _messages(partners: int, sales: int) -> list[Message]:
    out = []
    for raw in generate(partners=partners, sales=sales):
        stream = stream_of(MESSAGE_TYPES[raw["type"]])
        out.append(decode(stream, msgspec.json.encode(raw), now=NOW, limits=Limits()))
    return out  # type: ignore[return-value]


async def test_batches_in_postgres_equal_the_offline_reference(settings: Settings) -> None:
    messages = _messages(15, 400)
    loaded = load_program(EXAMPLE)
    reference = Books()
    expected = run(messages, reference, [compile_program(loaded.program)])

    owner = await asyncpg.connect(settings.pg_dsn("owner"))
    try:
        await program_store.publish(owner, loaded, published_by="test")
    finally:
        await owner.close()
    # The ledger stage as the worker runs it, as the workers' role.
    conn = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        programs = await ledger_writer.Programs().refresh(conn)
        for start in range(0, len(messages), 97):
            async with conn.transaction():
                await ledger_writer.write(conn, messages[start : start + 97], programs)
        heads = {
            r["partner_id"]: (r["head_seq"], bytes(r["head_hash"]))
            for r in await conn.fetch("SELECT * FROM partner_state WHERE head_seq > 0")
        }
        count = await conn.fetchval("SELECT count(*) FROM ledger_records")
        spend = await conn.fetch("SELECT program_id, version, spent FROM program_spend_totals")
    finally:
        await conn.close()
    auditor = await asyncpg.connect(settings.pg_dsn("auditor"))
    try:
        report = await verify_ledger(auditor)
    finally:
        await auditor.close()

    assert count == len(expected.records) > 500
    assert heads == {p: (h.seq, h.hash) for p, h in reference.heads.items()}
    assert {(r["program_id"], r["version"]): r["spent"] for r in spend} == reference.budgets
    assert report.findings == []
