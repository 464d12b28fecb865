"""Checkpoints held outside the database, against the real PostgreSQL and Kafka: a
superuser who rewrites the end of a chain and deletes the checkpoints that pinned it gets a
clean `audit verify`, and `audit verify --against` the topic or the exported file names
every checkpoint that is gone; rewritten checkpoints are named as differing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from ingest_support import admin, run_cli
from test_ledger_store import LENGTH, build, draft, triggers_disabled

from ledger import store
from ledger.core import seal
from schemas.settings import Settings


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection: what the attacker has."""
    connection = await asyncpg.connect(admin(settings))
    try:
        yield connection
    finally:
        await connection.close()


async def test_deleted_or_rewritten_checkpoints_are_named_against_their_anchors(
    settings: Settings, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    ledger = await build(conn)  # checkpoints 1 and 2 (after seq 4 and 8)
    exported = tmp_path / "anchors.jsonl"
    taken = run_cli(settings, "audit", "checkpoint", "--export", str(exported))
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert "published to" in taken.stdout and "checkpoint(s) 1, 2, 3" in taken.stdout
    again = run_cli(settings, "audit", "checkpoint", "--export", str(exported))
    assert "checkpoint(s) 4" in again.stdout, again.stdout  # only the new one is sent
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [a["checkpoint_seq"] for a in lines] == [3, 4]
    for against in ("topic", str(exported)):
        clean = run_cli(settings, "audit", "verify", "--against", against)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert clean.stdout.rstrip().endswith(": OK")

    # The superuser forges P-2's last record with a correct hash and removes every
    # checkpoint that pinned it.
    last, before = ledger.record("P-2", LENGTH), ledger.record("P-2", LENGTH - 1)
    async with triggers_disabled(conn):
        await conn.execute("ALTER TABLE chain_checkpoints DISABLE TRIGGER USER")
        await conn.execute("DELETE FROM ledger_postings WHERE record_id = $1", last.record_id)
        await conn.execute("DELETE FROM ledger_records WHERE record_id = $1", last.record_id)
        await conn.execute("DELETE FROM chain_checkpoints WHERE checkpoint_seq >= 2")
        await conn.execute("ALTER TABLE chain_checkpoints ENABLE TRIGGER USER")
        await conn.execute("UPDATE partner_state SET head_seq = $1, head_hash = $2"
                           " WHERE partner_id = 'P-2'", before.seq, before.hash)  # fmt: skip
        await store.append(conn, [seal(draft("P-2", 96, amount=1_000_000), LENGTH, before.hash)])
    fooled = run_cli(settings, "audit", "verify")
    assert fooled.returncode == 0, "the database alone cannot tell"
    caught = run_cli(settings, "audit", "verify", "--against", "topic")
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert _findings(caught.stdout) == [
        "FINDING checkpoint_missing: ledger checkpoint 2",
        "FINDING checkpoint_missing: ledger checkpoint 3",
        "FINDING checkpoint_missing: ledger checkpoint 4",
    ]
    from_file = run_cli(settings, "audit", "verify", "--against", str(exported))
    assert from_file.returncode == 1
    assert _findings(from_file.stdout) == [
        "FINDING checkpoint_missing: ledger checkpoint 3",
        "FINDING checkpoint_missing: ledger checkpoint 4",
    ]

    # New checkpoints over the forged chains, chained properly to checkpoint 1.
    for days in (60, 61, 62):
        await store.take_checkpoint(conn, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days))
    assert run_cli(settings, "audit", "verify").returncode == 0
    rewritten = run_cli(settings, "audit", "verify", "--against", str(exported))
    assert rewritten.returncode == 1
    assert _findings(rewritten.stdout) == [
        "FINDING checkpoint_anchor_mismatch: ledger checkpoint 3",
        "FINDING checkpoint_anchor_mismatch: ledger checkpoint 4",
    ]


async def test_verify_against_an_empty_or_broken_file_does_not_pass(
    settings: Settings, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = run_cli(settings, "audit", "verify", "--against", str(empty))
    assert result.returncode == 1 and "holds no checkpoint" in result.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"checkpoint_seq": "one"}\n')
    result = run_cli(settings, "audit", "verify", "--against", str(broken))
    assert result.returncode == 1 and f"{broken}:1: not a checkpoint anchor" in result.stderr
    assert run_cli(settings, "audit", "verify", "--against", "topic").returncode == 1


def _findings(stdout: str) -> list[str]:
    return [line.split(":", 2)[0] + ":" + line.split(":", 2)[1]
            for line in stdout.splitlines() if line.startswith("FINDING")]
