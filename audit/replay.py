"""The auditor's replay: rebuild the ledger from its stored inputs and compare.

The inbox holds the canonical bytes of every accepted input in the order the worker
applied them (``arrival_seq``). Run again through the same pure runner
(``processors.engine.runner``), with the program versions the worker had at the time, they must
give the stored ledger exactly: the same record ids, sequence numbers and hashes, chain by
chain. ``audit verify`` shows that the chains are intact; the replay shows that they are
the consequence of the inputs, which a rewritten but consistently rehashed ledger is not.

Content, not only hashes: each stored record is compared with the replay's by its record
id and hash column, and by its content as stored (fields, postings, explanation), rehashed
here. An amount edited on both legs of a record balances and leaves the hash column as it
was; the replay names the record and what of it differs from what the inputs give.

Program versions: an input is replayed with the versions published before it was received
(``program_versions.published_at`` <= ``inbox.received_at``), the versions the worker
loaded for its batch.

Budgets: an input spends its source partition's budget lease, and the grants the writer
recorded (``budget_grants``) are applied where it applied them, just before the input with
their arrival number (``processors.engine.leases``); so a replay cuts the awards it cut.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import asyncpg
import msgspec

from ledger import program_store
from ledger.core import Record, explanation_json, record_hash
from ledger.store import budgets, stream_records
from processors.engine import CompiledProgram, compile_program
from processors.engine.leases import Grant, Lane, Recorded
from processors.engine.runner import Books, run
from schemas.streams import ANY, Message

# Inputs run per call of the runner; bounds the decoded inputs held at once.
CHUNK = 2_000
# Differences listed in a report; the count covers all of them.
SHOWN = 20



class Sealed(NamedTuple):
    """What is compared of one record: where, its id and hash column, and its content."""

    partner_id: str
    seq: int
    record_id: uuid.UUID
    hash: bytes  # the hash column (the replay's: the hash it sealed)
    content: bytes  # the hash its content gives, recomputed; b"" if it cannot be encoded
    parts: tuple[bytes, bytes, bytes]  # short digests of its fields, postings, explanation


PARTS = ("fields", "postings", "explanation")
_ENCODER = msgspec.json.Encoder()


@dataclass(slots=True)
class ReplayReport:
    inputs: int = 0
    replayed: int = 0  # records the replay produced
    stored: int = 0  # records in the ledger
    differences: int = 0
    shown: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.differences == 0


async def replay(conn: asyncpg.Connection) -> ReplayReport:
    """Replay every stored input and compare with the stored ledger, in one snapshot."""
    report = ReplayReport()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        versions = sorted(await program_store.fetch_all(conn), key=lambda s: s.published_at)
        compiled = [(s.published_at, compile_program(s.load().program)) for s in versions]
        grants = await stored_grants(conn)
        books = Books()
        produced: list[Sealed] = []
        chunk: list[Message | Grant] = []
        lanes: list[Lane | None] = []
        programs: list[CompiledProgram] = []

        def flush() -> None:
            outcome = run(chunk, books, programs, lanes)
            produced.extend(_sealed(r, stored=False) for r in outcome.records)
            report.inputs += sum(not isinstance(c, Grant) for c in chunk)
            chunk.clear()
            lanes.clear()

        async for row in conn.cursor(INPUTS, prefetch=CHUNK):
            known = [c for at, c in compiled if at <= row["received_at"]]
            if len(known) != len(programs) or len(chunk) >= CHUNK:
                flush()
                programs = known
            for grant in grants.due(row["arrival_seq"]):
                chunk.append(grant)
                lanes.append(grant.lane)
            chunk.append(ANY.decode(bytes(row["body"])))
            lanes.append((row["topic"], row["partition"]))
        flush()
        grants.finish()

        produced.sort()
        report.replayed = len(produced)
        stored: list[Sealed] = []
        async for record in stream_records(conn):
            stored.append(_sealed(record, stored=True))
        report.stored = len(stored)
    _compare(produced, stored, report)
    return report


# The stored inputs in the order the writer applied them, with their source partitions.
INPUTS = "SELECT body, received_at, arrival_seq, topic, partition FROM inbox ORDER BY arrival_seq"


async def stored_grants(conn: asyncpg.Connection) -> Recorded:
    """The budget grants the writers recorded, to hand out in arrival order."""
    return Recorded(
        (r.before_seq, Grant(program_id=r.program_id, version=r.version, topic=r.topic,
                             partition=r.partition, amount=r.amount))
        for r in await budgets.grants(conn)
    )


def with_grants(
    rows: Iterable[asyncpg.Record], grants: Recorded
) -> tuple[list[Message | Grant], list[Lane | None]]:
    """The runner's inputs and lanes for rows of ``INPUTS``, the grants in their places."""
    items: list[Message | Grant] = []
    lanes: list[Lane | None] = []
    for row in rows:
        for grant in grants.due(row["arrival_seq"]):
            items.append(grant)
            lanes.append(grant.lane)
        items.append(ANY.decode(bytes(row["body"])))
        lanes.append((row["topic"], row["partition"]))
    grants.finish()
    return items, lanes


def _sealed(record: Record, *, stored: bool) -> Sealed:
    """The replay's records hash what they hold; a stored one is rehashed from its content."""
    try:
        content = record_hash(record) if stored else record.hash
        parts = (
            _digest(_ENCODER.encode((record.kind, record.occurred_at, record.recorded_at,
                                     record.program_id, record.program_version, record.rule_id,
                                     record.leg, record.source_event_ids, record.prev_hash))),
            _digest(_ENCODER.encode(record.postings)),
            _digest(explanation_json(record.explanation).encode()),
        )  # fmt: skip
    except (TypeError, ValueError, msgspec.EncodeError):  # an undecodable stored explanation
        content, parts = b"", (b"", b"", b"")
    return Sealed(record.partner_id, record.seq, record.record_id, record.hash, content, parts)


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


def _compare(produced: list[Sealed], stored: list[Sealed], report: ReplayReport) -> None:
    expected = {(s.partner_id, s.seq): s for s in produced}
    found = {(s.partner_id, s.seq): s for s in stored}
    for key in sorted(expected.keys() | found.keys()):
        want, have = expected.get(key), found.get(key)
        if want is not None and have is not None and _same(want, have):
            continue
        report.differences += 1
        if len(report.shown) < SHOWN:
            report.shown.append(_difference(*key, want, have))


def _same(want: Sealed, have: Sealed) -> bool:
    return (want.record_id, want.hash) == (have.record_id, have.hash) == (
        have.record_id, have.content
    )


def _difference(partner: str, seq: int, want: Sealed | None, have: Sealed | None) -> str:
    if have is None:
        assert want is not None
        return f"{partner} #{seq}: the replay gives record {want.record_id}, the ledger has none"
    if want is None:
        return (f"{partner} #{seq}: the ledger has record {have.record_id}, which no stored"
                " input gives")
    if (want.record_id, want.hash) == (have.record_id, have.hash):
        differ = [name for name, a, b in zip(PARTS, want.parts, have.parts, strict=True) if a != b]
        what = (" and ".join(differ) or "content") if have.content else (
            "an explanation that does not decode")
        return (f"{partner} #{seq}: record {have.record_id} holds other {what} than the replay"
                " gives, under the same hash: its stored content was edited")
    return (f"{partner} #{seq}: the replay gives record {want.record_id} hash"
            f" {want.hash.hex()[:16]}, the ledger has {have.record_id} hash {have.hash.hex()[:16]}")
