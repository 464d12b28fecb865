"""Tamper detection through the real `incentives audit verify` command, against the real
PostgreSQL: each way a superuser can change the ledger built by ``test_ledger_store.build``
(an amount, an explanation, a deletion, a swap, a forged record) is named as exactly one
finding with the partner, seq and record; a clean ledger passes; and a ledger that cannot
be read exits 2, never reading as clean or as tampered."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

import asyncpg
import msgspec
import pytest
from ingest_support import admin
from test_ledger_store import LENGTH, Ledger, build, cli, draft, triggers_disabled

from ledger import store
from ledger.core import Record, seal
from ledger.verify import FindingCode
from schemas.settings import Settings


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection (the stack's postgres role): what the attacker has."""
    connection = await asyncpg.connect(admin(settings))
    try:
        yield connection
    finally:
        await connection.close()


# --- tampering, caught by `incentives audit verify` ------------------------------------------


class Expect(NamedTuple):
    code: FindingCode
    partner_id: str
    seq: int
    record_id: uuid.UUID | None
    found: str = ""  # a text the finding must show, if any


async def _delete(conn: asyncpg.Connection, record: Record) -> None:
    await conn.execute("DELETE FROM ledger_postings WHERE record_id = $1", record.record_id)
    assert await conn.execute("DELETE FROM ledger_records WHERE record_id = $1",
                              record.record_id) == "DELETE 1"


async def change_amount(conn: asyncpg.Connection, ledger: Ledger) -> Expect:
    """Both legs change, so the record still balances: only the hash can tell."""
    target = ledger.record("P-2", 3)
    assert await conn.execute("UPDATE ledger_postings SET amount = amount * 10 "
                              "WHERE record_id = $1", target.record_id) == "UPDATE 2"
    return Expect(FindingCode.HASH_MISMATCH, "P-2", 3, target.record_id)


async def change_explanation(conn: asyncpg.Connection, ledger: Ledger) -> Expect:
    """Reworded, still valid canonical JSON: why someone was paid is part of the hash."""
    target = ledger.record("P-1", 6)
    text = await conn.fetchval("SELECT explanation FROM ledger_records WHERE record_id = $1",
                               target.record_id)
    reworded = json.loads(text) | {"summary": "sale 6 (approved by the CEO)"}
    await conn.execute("UPDATE ledger_records SET explanation = $1 WHERE record_id = $2",
                       json.dumps(reworded, sort_keys=True, separators=(",", ":")),
                       target.record_id)
    return Expect(FindingCode.HASH_MISMATCH, "P-1", 6, target.record_id)


async def garble_explanation(conn: asyncpg.Connection, ledger: Ledger) -> Expect:
    """An explanation that is not JSON at all is reported, not a crash of the audit."""
    target = ledger.record("P-3", 2)
    await conn.execute("UPDATE ledger_records SET explanation = 'paid, trust me' "
                       "WHERE record_id = $1", target.record_id)
    return Expect(FindingCode.MALFORMED_RECORD, "P-3", 2, target.record_id,
                  "an explanation that does not decode (JSON is malformed: invalid character "
                  "(byte 0)): 'paid, trust me'")


async def delete_in_the_middle(conn: asyncpg.Connection, ledger: Ledger) -> Expect:
    """Record 3 gone: the finding names record 4, which now follows record 2."""
    await _delete(conn, ledger.record("P-2", 3))
    return Expect(FindingCode.SEQ_GAP, "P-2", 4, ledger.record("P-2", 4).record_id)


async def delete_the_last(conn: asyncpg.Connection, ledger: Ledger) -> Expect:
    """The chain itself is intact after the cut: only the checkpoint knows record 8."""
    await _delete(conn, ledger.record("P-3", LENGTH))
    return Expect(FindingCode.CHECKPOINT_HEAD_MISSING, "P-3", LENGTH, None)


async def swap_two(conn: asyncpg.Connection, ledger: Ledger) -> Expect:
    """Records 2 and 3 trade places; record 3, now at seq 2, does not link to record 1."""
    moved = ledger.record("P-1", 3)
    for old, new in ((2, 1000), (3, 2), (1000, 3)):
        await conn.execute("UPDATE ledger_records SET seq = $1 WHERE partner_id = 'P-1' "
                           "AND seq = $2", new, old)
    return Expect(FindingCode.PREV_HASH_MISMATCH, "P-1", 2, moved.record_id)


async def forge_the_last(conn: asyncpg.Connection, ledger: Ledger) -> Expect:
    """The last record is replaced by a forged one with a properly recomputed hash, written
    through the store itself: every chain check passes; the checkpoint does not."""
    last = ledger.record("P-2", LENGTH)
    await _delete(conn, last)
    before = ledger.record("P-2", LENGTH - 1)
    await conn.execute("UPDATE partner_state SET head_seq = $1, head_hash = $2 "
                       "WHERE partner_id = 'P-2'", before.seq, before.hash)
    forged = seal(draft("P-2", 96, amount=1_000_000), LENGTH, before.hash)
    await store.append(conn, [forged])
    return Expect(FindingCode.CHECKPOINT_HEAD_MISMATCH, "P-2", LENGTH, forged.record_id)


Tamper = Callable[[asyncpg.Connection, Ledger], Awaitable[Expect]]


@pytest.mark.parametrize("tamper", [change_amount, change_explanation, garble_explanation,
                                    delete_in_the_middle, delete_the_last, swap_two,
                                    forge_the_last])
async def test_audit_verify_names_the_tampered_record(
    settings: Settings, conn: asyncpg.Connection, tamper: Tamper
) -> None:
    """Exit 1 and exactly one finding, naming the partner, seq and (where it still exists)
    record id of the tampered record with the right code."""
    ledger = await build(conn)
    async with triggers_disabled(conn):
        expect = await tamper(conn, ledger)
    result = cli(settings, "audit", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    findings = [line for line in result.stdout.splitlines() if line.startswith("FINDING ")]
    assert len(findings) == 1, result.stdout
    assert findings[0].startswith(
        f"FINDING {expect.code.value}: partner {expect.partner_id} seq {expect.seq}"
    ), findings[0]
    if expect.record_id is not None:
        assert f"record {expect.record_id}" in findings[0]
    assert f"found {expect.found}" in findings[0]
    assert "1 finding(s)" in result.stdout.splitlines()[-1]
    # The trigger is back: the attacker's door is closed again.
    with pytest.raises(asyncpg.RestrictViolationError):
        await conn.execute("DELETE FROM ledger_records")


async def test_audit_verify_passes_a_clean_ledger_and_shows_progress(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    await build(conn)
    result = cli(settings, "audit", "verify", "--progress", "--chunk", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FINDING" not in result.stdout
    assert "verified 24 records of 3 partners against 2 checkpoint(s)" in result.stdout
    assert result.stdout.rstrip().endswith(": OK")
    assert "verified 24 records, 3 partners" in result.stderr


async def test_audit_verify_exits_2_when_it_cannot_look(settings: Settings) -> None:
    """'Could not verify' must never read as 'clean' nor as 'tampered'."""
    unreachable = msgspec.structs.replace(
        settings, pg_auditor_dsn="postgresql://nobody@127.0.0.1:1/x"
    )
    result = cli(unreachable, "audit", "verify")
    assert result.returncode == 2
    assert "cannot use the ledger database" in result.stderr
