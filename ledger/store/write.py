"""Appending sealed records: COPY for the rows, a compare-and-set for the chain heads.

Idempotency and zombies. `append` never skips a record: writing a record id, or a
(partner, seq), that already exists is a `ChainConflict`. A writer that replays events
filters its drafts first with `existing_record_ids` (ledger.core.append's `known_ids`); a
writer whose view of a chain is stale (a zombie after a rebalance) fails on the head
compare-and-set below, or, should ``partner_state`` itself be wrong, on the unique
constraints of ``ledger_records``. Either way nothing of its batch is committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from ledger.balances import PostingRow, posting_rows
from ledger.core import ChainHead, Record, empty_head, explanation_json
from ledger.store.errors import ChainConflict

RECORD_COLUMNS = (
    "record_id", "partner_id", "seq", "kind", "occurred_at", "recorded_at", "program_id",
    "program_version", "rule_id", "leg", "source_event_ids", "explanation", "prev_hash", "hash",
)

# Moves every partner's head from where the batch starts to where it ends, in one statement.
# The UPDATE only matches a head that is exactly where the batch expects it (seq and hash);
# its row lock makes a concurrent writer of the same partner wait for our commit and then
# match nothing. A partner's first batch inserts its row; ON CONFLICT DO NOTHING makes a
# racing first batch come back empty-handed instead of raising.
_ADVANCE_HEADS = """
WITH batch AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bigint[], $5::bytea[])
        AS b(partner_id, prev_seq, prev_hash, head_seq, head_hash)
), moved AS (
    UPDATE partner_state s
    SET head_seq = b.head_seq, head_hash = b.head_hash, updated_at = now()
    FROM batch b
    WHERE s.partner_id = b.partner_id AND s.head_seq = b.prev_seq
      AND s.head_hash = b.prev_hash
    RETURNING s.partner_id
), started AS (
    INSERT INTO partner_state (partner_id, head_seq, head_hash)
    SELECT b.partner_id, b.head_seq, b.head_hash FROM batch b WHERE b.prev_seq = 0
    ON CONFLICT (partner_id) DO NOTHING
    RETURNING partner_id
)
SELECT partner_id FROM moved UNION ALL SELECT partner_id FROM started
"""

_HEADS = """
SELECT partner_id, head_seq, head_hash FROM partner_state WHERE partner_id = ANY($1::text[])
"""


class _Span:
    """Where one partner's part of a batch starts (prev) and ends (head)."""

    __slots__ = ("prev_seq", "prev_hash", "head_seq", "head_hash")

    def __init__(self, record: Record) -> None:
        self.prev_seq, self.prev_hash = record.seq - 1, record.prev_hash
        self.head_seq, self.head_hash = record.seq, record.hash


async def append(conn: asyncpg.Connection, records: Sequence[Record]) -> None:
    """Write sealed records and their postings, inside the caller's transaction.

    Records of one partner must be consecutive links of its chain (as ledger.core.append
    makes them); partners may be interleaved. Raises `ChainConflict` when the batch does not
    continue the stored chains; the caller must then roll back.
    """
    assert conn.is_in_transaction(), "append must run inside the caller's transaction"
    if not records:
        return
    spans = _spans(records)
    await _advance_heads(conn, spans)
    try:
        await conn.copy_records_to_table(
            "ledger_records", records=[_record_row(r) for r in records], columns=RECORD_COLUMNS
        )
        await conn.copy_records_to_table(
            "ledger_postings", records=posting_rows(records), columns=PostingRow._fields
        )
    except asyncpg.UniqueViolationError as exc:
        raise ChainConflict(
            f"cannot append: {exc.detail or exc} (constraint {exc.constraint_name}); the "
            "ledger already holds this record or this position of the chain",
            constraint=exc.constraint_name,
        ) from exc


async def load_heads(conn: asyncpg.Connection, partner_ids: Iterable[str]) -> dict[str, ChainHead]:
    """The stored chain head of each partner; `empty_head` for a partner without records."""
    wanted = list(dict.fromkeys(partner_ids))
    heads = {p: empty_head(p) for p in wanted}
    for row in await conn.fetch(_HEADS, wanted):
        heads[row["partner_id"]] = ChainHead(row["partner_id"], row["head_seq"], row["head_hash"])
    return heads


async def existing_record_ids(
    conn: asyncpg.Connection, record_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of these record ids the ledger already holds (a replay's `known_ids`)."""
    rows = await conn.fetch(
        "SELECT record_id FROM ledger_records WHERE record_id = ANY($1::uuid[])", list(record_ids)
    )
    return {row["record_id"] for row in rows}


def _spans(records: Sequence[Record]) -> dict[str, _Span]:
    spans: dict[str, _Span] = {}
    for record in records:
        span = spans.get(record.partner_id)
        if span is None:
            spans[record.partner_id] = _Span(record)
            continue
        # A broken link inside a batch is a bug of the caller, not a race: assert.
        assert record.seq == span.head_seq + 1 and record.prev_hash == span.head_hash, (
            f"records of partner {record.partner_id!r} must be consecutive links: seq "
            f"{record.seq} follows seq {span.head_seq} in the batch"
        )
        span.head_seq, span.head_hash = record.seq, record.hash
    return spans


async def _advance_heads(conn: asyncpg.Connection, spans: dict[str, _Span]) -> None:
    partner_ids = list(spans)
    moved = await conn.fetch(
        _ADVANCE_HEADS,
        partner_ids,
        [s.prev_seq for s in spans.values()],
        [s.prev_hash for s in spans.values()],
        [s.head_seq for s in spans.values()],
        [s.head_hash for s in spans.values()],
    )
    stale = sorted(set(partner_ids) - {row["partner_id"] for row in moved})
    if not stale:
        return
    heads = await load_heads(conn, stale)
    shown = "; ".join(
        f"partner {p!r}: the batch starts after seq {spans[p].prev_seq}, the stored head is "
        f"seq {heads[p].seq} (hash {heads[p].hash.hex()[:16]}...)"
        for p in stale[:5]
    )
    more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
    raise ChainConflict(
        f"cannot append: another writer moved the chain first: {shown}{more}; reload the heads "
        "and process the batch again",
        partner_ids=tuple(stale),
    )


def _record_row(r: Record) -> tuple[Any, ...]:
    """One ``ledger_records`` row in RECORD_COLUMNS order."""
    return (
        r.record_id, r.partner_id, r.seq, r.kind.value, r.occurred_at, r.recorded_at,
        r.program_id, r.program_version, r.rule_id, r.leg, list(r.source_event_ids),
        explanation_json(r.explanation), r.prev_hash, r.hash,
    )
