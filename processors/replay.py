"""The auditor's replay: rebuild the ledger from its stored inputs and compare.

The inbox holds the canonical bytes of every accepted input in the order the worker
applied them (``arrival_seq``). Run again through the same pure runner
(``processors.runner``), with the program versions the worker had at the time, they must
give the stored ledger exactly: the same record ids, sequence numbers and hashes, chain by
chain. ``audit verify`` shows that the chains are intact; the replay shows that they are
the consequence of the inputs, which a rewritten but consistently rehashed ledger is not.

Program versions: an input is replayed with the versions published before it was received
(``program_versions.published_at`` <= ``inbox.received_at``), the versions the worker
loaded for its batch.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import asyncpg

from ledger import program_store
from ledger.store import stream_records
from processors.engine import CompiledProgram, compile_program
from processors.runner import Books, run
from schemas.streams import ANY, Message

# Inputs run per call of the runner; bounds the decoded inputs held at once.
CHUNK = 2_000
# Differences listed in a report; the count covers all of them.
SHOWN = 20

Sealed = tuple[str, int, uuid.UUID, bytes]  # partner_id, seq, record_id, hash


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
        books = Books()
        produced: list[Sealed] = []
        chunk: list[Message] = []
        programs: list[CompiledProgram] = []

        def flush() -> None:
            outcome = run(chunk, books, programs)
            produced.extend((r.partner_id, r.seq, r.record_id, r.hash) for r in outcome.records)
            report.inputs += len(chunk)
            chunk.clear()

        query = "SELECT body, received_at FROM inbox ORDER BY arrival_seq"
        async for row in conn.cursor(query, prefetch=CHUNK):
            known = [c for at, c in compiled if at <= row["received_at"]]
            if len(known) != len(programs) or len(chunk) >= CHUNK:
                flush()
                programs = known
            chunk.append(ANY.decode(bytes(row["body"])))
        flush()

        produced.sort()
        report.replayed = len(produced)
        stored: list[Sealed] = []
        async for record in stream_records(conn):
            stored.append((record.partner_id, record.seq, record.record_id, record.hash))
        report.stored = len(stored)
    _compare(produced, stored, report)
    return report


def _compare(produced: list[Sealed], stored: list[Sealed], report: ReplayReport) -> None:
    expected = {(p, s): (rid, h) for p, s, rid, h in produced}
    found = {(p, s): (rid, h) for p, s, rid, h in stored}
    for key in sorted(expected.keys() | found.keys()):
        want, have = expected.get(key), found.get(key)
        if want == have:
            continue
        report.differences += 1
        if len(report.shown) >= SHOWN:
            continue
        partner, seq = key
        if have is None:
            assert want is not None
            report.shown.append(f"{partner} #{seq}: the replay gives record {want[0]},"
                                " the ledger has none")  # fmt: skip
        elif want is None:
            report.shown.append(f"{partner} #{seq}: the ledger has record {have[0]},"
                                " which no stored input gives")  # fmt: skip
        else:
            report.shown.append(
                f"{partner} #{seq}: the replay gives record {want[0]} hash {want[1].hex()[:16]},"
                f" the ledger has {have[0]} hash {have[1].hex()[:16]}"
            )
