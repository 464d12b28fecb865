"""A stale worker cannot write: two workers that both believe they own a partition (one of
them left behind by a rebalance) process the same batch at the same time against the real
PostgreSQL; exactly one writes it, the other drops it and says so in its log."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ingest_support import as_bytes, fetch, registration, sale

from ledger import program_store
from processors.intake.batch import BatchProcessor, SourceMessage
from processors.writer import ledger as ledger_writer
from schemas.program_loader import load_program
from schemas.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"


def _hardware(message: dict[str, Any]) -> dict[str, Any]:
    """A sale the example program pays commission on."""
    for line in message["lines"]:
        line["category"] = "hardware"
    return message


def _worker(settings: Settings) -> BatchProcessor:
    return BatchProcessor(
        group=settings.consumer_group,
        streams={settings.topic(s): s for s in ("sales", "partners")},
        limits=settings.limits(),
        apply_accepted=ledger_writer.hook(),
        clock=lambda: datetime(2026, 4, 1, tzinfo=UTC),
    )


async def test_of_two_workers_on_one_partition_one_writes_and_the_stale_one_drops_its_batch(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    await program_store.publish(conn, load_program(EXAMPLE), published_by="test")
    await conn.close()
    partners, sales = settings.topic("partners"), settings.topic("sales")
    batch = [SourceMessage(partners, 0, 0, b"P-1", as_bytes(registration("P-1")))] + [
        SourceMessage(sales, 0, n, b"P-1", as_bytes(_hardware(sale("P-1", f"SO-{n}"))))
        for n in range(40)
    ]
    writer = settings.pg_dsn("writer")
    first, second = await asyncpg.connect(writer), await asyncpg.connect(writer)
    try:
        with caplog.at_level(logging.WARNING, logger="processors.intake.batch"):
            reports = await asyncio.gather(
                _worker(settings).process(first, batch), _worker(settings).process(second, batch)
            )
    finally:
        await first.close()
        await second.close()

    writer, stale = sorted(reports, key=lambda r: r.applied, reverse=True)
    assert (writer.applied, writer.below_position) == (41, 0)
    assert (stale.applied, stale.below_position) == (0, 41)
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped == [
        f"dropped 41 of 41 messages of {partners}/0@0-0, {sales}/0@0-39: below the positions"
        " stored in PostgreSQL, already written by another worker or an earlier run (stale"
        " worker or redelivery)"
    ]
    [inbox] = await fetch(settings, "SELECT count(*) AS n FROM inbox")
    assert inbox["n"] == 41
    records = await fetch(
        settings, "SELECT count(*) AS n, count(DISTINCT record_id) AS d FROM ledger_records"
    )
    assert records[0]["n"] == records[0]["d"] > 0
