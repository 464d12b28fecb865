"""Reading the ledger back: records in verifier order, the whole-ledger verify, balances.

Speed. Verifying a million records is bound by CPU on both sides: PostgreSQL spends most
of its time probing the postings of each record, Python rebuilding and verifying records.
The two must overlap. Each page of `chunk` records is therefore one query that returns a
single row of column arrays (one array per column, in asyncpg's binary format, decoded in
C): PostgreSQL builds the whole page before it sends anything, so while Python verifies
page k, PostgreSQL is building page k+1, whose query was sent before page k was handed out.
A query returning one row per record would stall as soon as the socket buffer is full, and
then the two sides take turns instead (measured on a million records: 34k records/s
against 50k for the arrays, before the CLI paused the cyclic GC). Pages follow the unique
index on (partner_id, seq) by keyset. Postings and source event ids come as small JSON texts
built by PostgreSQL from typed columns, decoded for the whole page in one msgspec call each.

Not JSON for whole records: json_build_object costs PostgreSQL about three times what the
arrays cost it, which made the server the bottleneck.

Robustness. The stored explanation is decoded per record: a tampered one that is not JSON,
or not an Explanation, becomes an `UndecodableExplanation`, which the verifier reports as a
malformed record instead of the audit crashing; `verify_ledger` then puts the decode error
and the stored text into the finding.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, cast

import asyncpg
import msgspec

from ledger.balances import Balances
from ledger.checkpoint import CheckpointAnchor
from ledger.core import Explanation, Posting, Record, RecordKind, decode_explanation
from ledger.store.checkpoints import load_checkpoints
from ledger.verify import FindingCode, ProgressFn, Verifier, VerifyReport

CHUNK_DEFAULT = 10_000

# One array per column, in this order (_rebuild unpacks them by position). The aggregates
# have no ORDER BY of their own: fifteen of them would be fifteen sorts. They all consume
# the ordered subquery's rows in one pass, so the arrays agree with each other row by row,
# and _fetch checks the order instead of trusting it.
_PAGE = """
SELECT array_agg(r.record_id), array_agg(r.partner_id), array_agg(r.seq), array_agg(r.kind),
    array_agg(r.occurred_at), array_agg(r.recorded_at), array_agg(r.program_id),
    array_agg(r.program_version), array_agg(r.rule_id), array_agg(r.leg),
    array_agg(array_to_json(r.source_event_ids)::text), array_agg(r.explanation),
    array_agg((SELECT coalesce(json_agg(json_build_array(p.account, p.asset, p.amount)
                                        ORDER BY p.leg), '[]'::json)
               FROM ledger_postings p WHERE p.record_id = r.record_id)::text),
    array_agg(r.prev_hash), array_agg(r.hash)
FROM (SELECT * FROM ledger_records {where} ORDER BY partner_id, seq LIMIT {limit}) r
"""
_FIRST_PAGE = _PAGE.format(where="", limit="$1")
# Keyset pagination: the page after the last (partner_id, seq) seen.
_NEXT_PAGE = _PAGE.format(where="WHERE (partner_id, seq) > ($1, $2)", limit="$3")

_PAGE_POSTINGS = msgspec.json.Decoder(list[tuple[Posting, ...]])
_PAGE_SOURCES = msgspec.json.Decoder(list[tuple[uuid.UUID, ...]])
_KINDS = {kind.value: kind for kind in RecordKind}

_Key = tuple[str, int]  # (partner_id, seq) of the last record read
_Columns = list[list[Any]]  # a page: one list per column of _PAGE


class UndecodableExplanation:
    """Stands in for a stored explanation that is not a valid Explanation.

    The canonical encoder cannot encode it, so the verifier reports the record as
    ``malformed_record``; `text` and `error` say what was stored and why it was refused.
    """

    __slots__ = ("text", "error")

    def __init__(self, text: str, error: str) -> None:
        self.text = text
        self.error = error

    def __repr__(self) -> str:
        return f"UndecodableExplanation({self.text!r}, error={self.error!r})"


async def stream_chunks(
    conn: asyncpg.Connection, *, chunk: int = CHUNK_DEFAULT
) -> AsyncIterator[list[Record]]:
    """The ledger in pages of up to `chunk` records, ordered by (partner_id, seq).

    Pages are separate statements: for one consistent snapshot, iterate inside a
    REPEATABLE READ transaction (as `verify_ledger` does). The next page's query is in
    flight while the caller works on a page, so the connection is busy until the iteration
    ends: to stop early, iterate under ``contextlib.aclosing``, which cancels that query.
    """
    assert chunk >= 1
    pending: asyncio.Future[_Columns] | None = asyncio.ensure_future(_fetch(conn, None, chunk))
    try:
        while pending is not None:
            columns = await pending
            pending = None
            count = len(columns[0])
            if count == chunk:  # a shorter page is the last one
                after = (columns[1][-1], columns[2][-1])
                pending = asyncio.ensure_future(_fetch(conn, after, chunk))
                # Let the query go out now, so that PostgreSQL builds the next page while
                # Python rebuilds and the caller verifies this one.
                await asyncio.sleep(0)
            if count:
                yield _rebuild(columns)
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending


async def stream_records(
    conn: asyncpg.Connection, *, chunk: int = CHUNK_DEFAULT
) -> AsyncIterator[Record]:
    """Every record, ordered by (partner_id, seq); see `stream_chunks`."""
    async for records in stream_chunks(conn, chunk=chunk):
        for record in records:
            yield record


async def verify_ledger(
    conn: asyncpg.Connection,
    *,
    chunk: int = CHUNK_DEFAULT,
    progress: ProgressFn | None = None,
    progress_every: int = 100_000,
    anchors: Iterable[CheckpointAnchor] = (),
) -> VerifyReport:
    """Run ledger.verify over the whole ledger and all checkpoints, in one snapshot, and
    the checkpoints against ``anchors`` held outside the database.

    Opens its own REPEATABLE READ, read-only transaction, so the connection must not be in
    one already.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # The page query's estimated cost (a postings probe per record) passes
        # jit_above_cost, but compiling it takes ~10 ms a page and makes it no faster.
        await conn.execute("SET LOCAL jit = off")
        verifier = Verifier(await load_checkpoints(conn), anchors=anchors, progress=progress,
                            progress_every=progress_every)
        undecodable: dict[uuid.UUID, UndecodableExplanation] = {}
        async for records in stream_chunks(conn, chunk=chunk):
            verifier.feed(records)
            undecodable.update(_undecodable(records))
    return _with_decode_errors(verifier.finish(), undecodable)


async def balances(
    conn: asyncpg.Connection,
    *,
    partner_id: str | None = None,
    account_prefix: str | None = None,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
) -> Balances:
    """Balances per (account, asset) summed in SQL, equal to ledger.balances.fold on the
    same records: `partner_id` restricts to that partner's chain, `account_prefix` to the
    accounts starting with it, `as_of` to records with occurred_at <= it, `known_at` to
    records with recorded_at <= it. Zero balances are left out, as fold does."""
    where: list[str] = ["TRUE"]
    args: list[object] = []
    if partner_id is not None:
        args.append(partner_id)
        where.append(f"r.partner_id = ${len(args)}")
    if account_prefix:
        # A range on the (account, asset) index: in code point order ("C"), the accounts
        # that start with a prefix lie in [prefix, prefix with its last character + 1).
        args += [account_prefix, account_prefix[:-1] + chr(ord(account_prefix[-1]) + 1)]
        where.append(f"p.account >= ${len(args) - 1} AND p.account < ${len(args)}")
    for column, moment in (("occurred_at", as_of), ("recorded_at", known_at)):
        if moment is not None:
            args.append(moment)
            where.append(f"r.{column} <= ${len(args)}")
    rows = await conn.fetch(
        f"""SELECT p.account, p.asset, sum(p.amount) AS amount
            FROM ledger_postings p JOIN ledger_records r USING (record_id)
            WHERE {' AND '.join(where)}
            GROUP BY p.account, p.asset HAVING sum(p.amount) <> 0""",
        *args,
    )
    # sum(bigint) is numeric in SQL, so a total beyond 64 bits stays exact; int() keeps it so.
    return {(row["account"], row["asset"]): int(row["amount"]) for row in rows}


async def _fetch(conn: asyncpg.Connection, after: _Key | None, chunk: int) -> _Columns:
    if after is None:
        row = await conn.fetchrow(_FIRST_PAGE, chunk)
    else:
        row = await conn.fetchrow(_NEXT_PAGE, after[0], after[1], chunk)
    assert row is not None  # an aggregate always returns a row: NULLs for an empty page
    columns = [[] if column is None else column for column in row]
    return columns if _in_order(columns[1], columns[2]) else _sorted(columns)


def _rebuild(columns: _Columns) -> list[Record]:
    """Records exactly as sealed, so that their hashes recompute (see ledger.core)."""
    (record_ids, partner_ids, seqs, kinds, occurred, recorded, program_ids, versions, rule_ids,
     legs, sources, explanations, postings, prev_hashes, hashes) = columns
    # PostgreSQL wrote these JSON texts from typed columns: a page always decodes whole.
    sources = _PAGE_SOURCES.decode(_json_list(sources))
    postings = _PAGE_POSTINGS.decode(_json_list(postings))
    return [
        Record(record_id=record_id, partner_id=partner_id, seq=seq,
               kind=_KINDS[kind],  # the table's CHECK admits only RecordKind values
               occurred_at=occurred_at, recorded_at=recorded_at, program_id=program_id,
               program_version=version, rule_id=rule_id, leg=leg, source_event_ids=source,
               explanation=_explanation(explanation), postings=legs_of_record,
               prev_hash=prev_hash, hash=record_hash)
        for (record_id, partner_id, seq, kind, occurred_at, recorded_at, program_id, version,
             rule_id, leg, source, explanation, legs_of_record, prev_hash, record_hash)
        in zip(record_ids, partner_ids, seqs, kinds, occurred, recorded, program_ids, versions,
               rule_ids, legs, sources, explanations, postings, prev_hashes, hashes,
               strict=True)
    ]


def _json_list(texts: Sequence[str]) -> str:
    return "[" + ",".join(texts) + "]"


def _in_order(partner_ids: Sequence[str], seqs: Sequence[int]) -> bool:
    # Python's str order is code point order, the same as the columns' COLLATE "C".
    keys = list(zip(partner_ids, seqs, strict=True))
    return all(a < b for a, b in zip(keys, keys[1:], strict=False))


def _sorted(columns: _Columns) -> _Columns:
    """The page in (partner_id, seq) order, should the server ever aggregate out of order."""
    order = sorted(range(len(columns[0])), key=lambda i: (columns[1][i], columns[2][i]))
    return [[column[i] for i in order] for column in columns]


def _undecodable(records: list[Record]) -> Iterator[tuple[uuid.UUID, UndecodableExplanation]]:
    for record in records:
        explanation: object = record.explanation  # not always an Explanation: see _explanation
        if type(explanation) is UndecodableExplanation:
            yield record.record_id, explanation


def _with_decode_errors(
    report: VerifyReport, undecodable: dict[uuid.UUID, UndecodableExplanation]
) -> VerifyReport:
    """Say why a record is malformed when its explanation is the reason: the verifier only
    saw that the record could not be encoded."""
    if not undecodable:
        return report
    findings = []
    for finding in report.findings:
        bad = undecodable.get(finding.record_id) if finding.record_id else None
        if bad is not None and finding.code is FindingCode.MALFORMED_RECORD:
            finding = msgspec.structs.replace(
                finding, found=f"an explanation that does not decode ({bad.error}): "
                f"{bad.text[:200]!r}",
                message="the stored explanation is not a valid Explanation")
        findings.append(finding)
    return msgspec.structs.replace(report, findings=findings)


def _explanation(text: str) -> Explanation:
    try:
        return decode_explanation(text)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        return cast(Explanation, UndecodableExplanation(text, str(exc)))
