"""Two writers at once on the real PostgreSQL: no failure, and the ledger one writer gives.

Two batch processors, each with its pool, as two workers of one group are: each owns one
source partition and so its own partners (partners are never shared), and both write the
rows every batch shares: the program's spend, which neither finds when they start (empty
tables, so both may create it at once), and the projections. They run many rounds side by
side; a conflict the database reports (a deadlock, a serialisation failure) is retried by
the worker's own policy and never dead-letters or stops a worker. The result must be the
ledger the pure runner gives for the same messages in one order: each partner's chain
record for record, hash for hash, and the program's spend to the cent (the budget is not
reached here, so the order between partners does not move it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from ingest_support import as_bytes, fetch, registration, sale, seed_ids, survey

from audit.replay import replay
from ledger import program_store
from processors.engine import compile_program
from processors.engine.runner import Books, run
from processors.intake.batch import BatchProcessor, SourceMessage
from processors.writer import ledger as ledger_writer
from processors.writer.isolation import Failure, Hooks, Isolating, RetryPolicy, pooled
from schemas.codec import Rejection, decode
from schemas.program_loader import load_program
from schemas.settings import Settings
from schemas.streams import Message

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
NOW = datetime(2026, 4, 1, tzinfo=UTC)
STREAMS = ("sales", "surveys", "partners")
PARTNERS = 16
SALES = 12
BATCH = 6
SMALL_BUDGET = 120_000  # EUR 1,200.00: a fraction of what the traffic would earn


def _traffic(partner: str) -> list[tuple[str, dict[str, Any]]]:
    sales = []
    for n in range(SALES):
        message = sale(partner, f"SO-{partner}-{n}", ("1", 1 + n % 3, 50_000 + 7_919 * n))
        message["lines"][0]["category"] = "hardware"  # the example program pays on it
        sales.append(("sales", message))
    return [("partners", registration(partner)), *sales, ("surveys", survey(partner))]


def _partition_traffic(partition: int) -> list[tuple[str, dict[str, Any]]]:
    """The partition's partners' messages, interleaved as a producer would send them."""
    streams = [_traffic(f"P-{n:02d}") for n in range(PARTNERS) if n % 2 == partition]
    return [m for step in zip(*streams, strict=True) for m in step]


def _batches(settings: Settings, partition: int) -> list[list[SourceMessage]]:
    offsets: dict[str, int] = {}
    messages = []
    for stream, body in _partition_traffic(partition):
        topic = settings.topic(stream)
        offset = offsets.get(topic, 0)
        offsets[topic] = offset + 1
        messages.append(SourceMessage(topic, partition, offset, body["partner_id"].encode(),
                                      as_bytes(body)))  # fmt: skip
    return [messages[i:i + BATCH] for i in range(0, len(messages), BATCH)]


class Writer:
    """One worker's batch path: the worker's processor and ledger hook inside its retries."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.retried: list[Failure] = []
        processor = BatchProcessor(
            group=settings.consumer_group,
            streams={settings.topic(s): s for s in STREAMS},
            limits=settings.limits(),
            apply_accepted=ledger_writer.hook(),
            clock=lambda: NOW,
        )

        async def pool_of() -> asyncpg.Pool:
            return pool

        self.isolating = Isolating(
            processor, lambda: pooled(pool_of), RetryPolicy(),
            hooks=Hooks(retried=self.retried.append, narrowed=lambda: None),
        )  # fmt: skip

    async def process(self, batches: list[list[SourceMessage]]) -> int:
        applied = 0
        for batch in batches:
            report = await self.isolating.process(batch)
            assert report.dead_letters == [], report.dead_letters
            applied += report.applied
            await asyncio.sleep(0)  # the other writer's turn to start a batch
        return applied


@contextlib.asynccontextmanager
async def _pools(settings: Settings, program: Path = EXAMPLE) -> AsyncIterator[list[asyncpg.Pool]]:
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    await program_store.publish(conn, load_program(program), published_by="test")
    await conn.close()
    pools = [await asyncpg.create_pool(settings.pg_dsn("writer"), min_size=1, max_size=2)
             for _ in range(2)]
    try:
        yield pools
    finally:
        for pool in pools:
            await pool.close()


def _reference(batches: list[list[list[SourceMessage]]], settings: Settings) -> Books:
    """The pure runner over every message, one writer's after the other's."""
    streams = {settings.topic(s): s for s in STREAMS}
    inputs: list[Message] = []
    for partition in batches:
        for batch in partition:
            for m in batch:
                message = decode(streams[m.topic], m.value, now=NOW, limits=settings.limits())
                assert not isinstance(message, Rejection), message
                inputs.append(message)
    books = Books()
    run(inputs, books, [compile_program(load_program(EXAMPLE).program)])
    return books


async def test_two_writers_from_empty_tables_give_the_ledger_of_one(settings: Settings) -> None:
    seed_ids(17)
    batches = [_batches(settings, partition) for partition in (0, 1)]
    async with _pools(settings) as pools:
        writers = [Writer(settings, pool) for pool in pools]
        applied = await asyncio.gather(*(w.process(b) for w, b in zip(writers, batches,
                                                                       strict=True)))
    total = sum(len(batch) for partition in batches for batch in partition)
    assert sum(applied) == total == PARTNERS * (SALES + 2)
    assert all(f is Failure.CONFLICT for w in writers for f in w.retried), [
        w.retried for w in writers]

    expected = _reference(batches, settings)
    rows = await fetch(settings, "SELECT partner_id, seq, hash FROM ledger_records"
                                 " ORDER BY partner_id, seq")  # fmt: skip
    assert len(rows) >= PARTNERS * SALES  # each sale pays at least one record
    heads = {r["partner_id"]: (r["seq"], bytes(r["hash"])) for r in rows}
    assert heads == {p: (h.seq, h.hash) for p, h in expected.heads.items()}
    spend = await fetch(settings, "SELECT program_id, version, spent FROM program_spend_totals")
    assert {(r["program_id"], r["version"]): int(r["spent"]) for r in spend} == expected.budgets
    assert sum(expected.budgets.values()) > 0


async def test_the_writers_rows_are_the_same_over_many_rounds(settings: Settings) -> None:
    """The same two writers, round after round on the same tables (each round other
    partners), keep every partner's chain and the spend exact."""
    seed_ids(29)
    rounds = 4
    async with _pools(settings) as pools:
        writers = [Writer(settings, pool) for pool in pools]
        everything: list[list[list[SourceMessage]]] = [[], []]
        for r in range(rounds):
            batches = [_batches(settings, p) for p in (0, 1)]
            batches = [[[_renamed(m, r) for m in batch] for batch in partition]
                       for partition in batches]
            await asyncio.gather(*(w.process(b) for w, b in zip(writers, batches, strict=True)))
            for p in (0, 1):
                everything[p].extend(batches[p])
    expected = _reference(everything, settings)
    rows = await fetch(settings, "SELECT partner_id, max(seq) AS seq FROM ledger_records"
                                 " GROUP BY partner_id")  # fmt: skip
    assert {r["partner_id"]: r["seq"] for r in rows} == {
        p: h.seq for p, h in expected.heads.items()}
    assert len(rows) == PARTNERS * rounds
    spend = await fetch(settings, "SELECT program_id, version, spent FROM program_spend_totals")
    assert {(r["program_id"], r["version"]): int(r["spent"]) for r in spend} == expected.budgets


def _renamed(message: SourceMessage, round_: int) -> SourceMessage:
    """The message for round ``round_``: other partners, later offsets of the partition."""
    body = msgspec.json.decode(message.value)
    body["partner_id"] = f"R{round_}-{body['partner_id']}"
    if "order_id" in body:
        body["order_id"] = f"R{round_}-{body['order_id']}"
    return SourceMessage(message.topic, message.partition, message.offset + round_ * 1_000,
                         body["partner_id"].encode(), as_bytes(body))  # fmt: skip


async def test_two_writers_share_a_budget_that_runs_out_and_the_replay_cuts_the_same(
    settings: Settings, tmp_path: Path
) -> None:
    """A budget the traffic spends many times over: both writers' lanes take grants, the
    last awards are cut, the spend ends at the budget and never above it, and the auditor's
    replay, applying the recorded grants where the writers applied them, gives the ledger
    record for record."""
    seed_ids(31)
    program = tmp_path / "small-budget.yaml"
    text = EXAMPLE.read_text()
    assert "budget: 300_000_000" in text
    program.write_text(text.replace("budget: 300_000_000", f"budget: {SMALL_BUDGET}"))
    batches = [_batches(settings, partition) for partition in (0, 1)]
    async with _pools(settings, program) as pools:
        writers = [Writer(settings, pool) for pool in pools]
        await asyncio.gather(*(w.process(b) for w, b in zip(writers, batches, strict=True)))

    spent = await fetch(settings, "SELECT spent FROM program_spend_totals")
    assert [int(r["spent"]) for r in spent] == [SMALL_BUDGET]
    grants = await fetch(settings, "SELECT topic, partition, amount FROM budget_grants")
    assert {r["partition"] for r in grants} == {0, 1}
    assert sum(int(r["amount"]) for r in grants) <= SMALL_BUDGET
    cut = await fetch(settings, "SELECT count(*) AS n FROM ledger_records WHERE"
                      " explanation::jsonb -> 'inputs' ? 'cut_by_budget'")
    assert cut[0]["n"] > 0
    auditor = await asyncpg.connect(settings.pg_dsn("auditor"))
    try:
        report = await replay(auditor)
    finally:
        await auditor.close()
    assert report.ok and report.replayed == report.stored > 0, report.shown
