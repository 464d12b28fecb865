"""One partner's records over a span of event time: what statements and point-in-time
balances read of the ledger, in (occurred_at, seq) order, paged by that key (the index
``ledger_records_partner_occurred_idx``, migration 0013)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import NamedTuple

import asyncpg
import msgspec

from ledger.core import Posting, Record, RecordKind, decode_explanation

_POSTINGS = msgspec.json.Decoder(tuple[Posting, ...])
_KINDS = {kind.value: kind for kind in RecordKind}

_SELECT = """
SELECT r.record_id, r.partner_id, r.seq, r.kind, r.occurred_at, r.recorded_at, r.program_id,
       r.program_version, r.rule_id, r.leg, r.source_event_ids, r.explanation, r.prev_hash,
       r.hash,
       (SELECT coalesce(json_agg(json_build_array(p.account, p.asset, p.amount)
                                 ORDER BY p.leg), '[]'::json)
        FROM ledger_postings p WHERE p.record_id = r.record_id)::text AS postings
FROM ledger_records r
WHERE r.partner_id = $1 AND r.occurred_at >= $2 AND r.occurred_at < $3
  AND (r.occurred_at, r.seq) > ($4, $5)
ORDER BY r.occurred_at, r.seq
LIMIT $6
"""
_BEFORE_ANY = (dt.datetime(1, 1, 1, tzinfo=dt.UTC), 0)


async def partner_records(
    conn: asyncpg.Connection,
    partner_id: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    after: tuple[dt.datetime, int] | None = None,
    limit: int = 1000,
) -> list[Record]:
    """The partner's records with ``start <= occurred_at < end``, in (occurred_at, seq)
    order, after the key ``after`` (exclusive), at most ``limit``."""
    at, seq = after or _BEFORE_ANY
    rows = await conn.fetch(_SELECT, partner_id, start, end, at, seq, limit)
    return [_record(r) for r in rows]


async def partner_exists(conn: asyncpg.Connection, partner_id: str) -> bool:
    """Whether the ledger knows the partner (a chain, even an empty one)."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT FROM partner_state WHERE partner_id = $1)", partner_id))


def _record(r: asyncpg.Record) -> Record:
    sources: list[uuid.UUID] = r["source_event_ids"]
    return Record(
        record_id=r["record_id"], partner_id=r["partner_id"], seq=r["seq"],
        kind=_KINDS[r["kind"]], occurred_at=r["occurred_at"], recorded_at=r["recorded_at"],
        program_id=r["program_id"], program_version=r["program_version"],
        rule_id=r["rule_id"], leg=r["leg"], source_event_ids=tuple(sources),
        explanation=decode_explanation(r["explanation"]), postings=_POSTINGS.decode(
            r["postings"]), prev_hash=bytes(r["prev_hash"]), hash=bytes(r["hash"]))


class Moved(NamedTuple):
    """What a balance needs of a record: its partner, kind, event time and the postings to
    the partner's own accounts (the fields of `Record` that projections.balances folds)."""

    partner_id: str
    kind: RecordKind
    occurred_at: dt.datetime
    postings: tuple[Posting, ...]


_MOVED = """
SELECT r.kind, r.occurred_at,
       (SELECT coalesce(json_agg(json_build_array(p.account, p.asset, p.amount)), '[]'::json)
        FROM ledger_postings p
        WHERE p.record_id = r.record_id AND p.account IN ($4, $5))::text AS postings
FROM ledger_records r
WHERE r.partner_id = $1 AND r.occurred_at >= $2 AND r.occurred_at < $3
"""


async def partner_movements(
    conn: asyncpg.Connection, partner_id: str, start: dt.datetime, end: dt.datetime
) -> list[Moved]:
    """The partner's movements with ``start <= occurred_at < end`` (unordered)."""
    rows = await conn.fetch(_MOVED, partner_id, start, end, f"partner:{partner_id}:pending",
                            f"partner:{partner_id}:available")
    return [Moved(partner_id, _KINDS[r["kind"]], r["occurred_at"], _POSTINGS.decode(
        r["postings"])) for r in rows]
