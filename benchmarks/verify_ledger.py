"""End-to-end verify benchmark: PostgreSQL read + Record rebuild + ledger.verify.

Builds a ledger of N records over M partners in a fresh database (dropped first) on the
local stack, with a realistic mix of records (commissions on hold, hold releases, points,
multi-asset bonuses, payouts, tier changes) written through ledger.store.append (COPY),
takes a checkpoint, then times `incentives audit verify` as a user runs it, in a child
process, and reports its wall time, rate and peak RSS.

    .venv/bin/python benchmarks/verify_ledger.py --records 1000000 --partners 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import store  # noqa: E402
from ledger.core import (  # noqa: E402
    PAYOUT_CLEARING,
    Chain,
    Draft,
    Explanation,
    Posting,
    Record,
    RecordKind,
    Rounding,
    mdf,
    partner_available,
    partner_pending,
    points,
    program_expense,
)
from ledger.migrate import migrate  # noqa: E402
from schemas.settings import load_settings  # noqa: E402
from stack.postgres import admin_dsn  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROGRAM = "northwind-emea-2026"
EVENTS = uuid.UUID("6f0c1d9e-5b7a-4e8a-9d2b-3c4e5f6a7b8c")


def drafts(partner_id: str, count: int) -> Iterator[Draft]:
    """One partner's history: a cycle of ten kinds of record, a tier change every 250."""
    pending, available = partner_pending(partner_id), partner_available(partner_id)
    expense = program_expense(PROGRAM)
    for i in range(count):
        at = T0 + timedelta(minutes=37 * i)
        event = uuid.uuid5(EVENTS, f"{partner_id}/{i}")
        net = 10_000 + (i * 7919) % 990_000
        amount = net * 3 // 100
        common = dict(partner_id=partner_id, occurred_at=at,
                      recorded_at=at + timedelta(seconds=2, microseconds=i % 1000),
                      source_event_ids=(event,), program_id=PROGRAM, program_version=3)
        step = i % 10
        if i % 250 == 249:
            yield Draft(kind=RecordKind.TIER_CHANGE, leg="tier", rule_id="tiers",
                        explanation=Explanation(summary="promoted to gold",
                                                inputs={"from": "silver", "to": "gold",
                                                        "quarter_net_minor": net * 40}),
                        **common)  # type: ignore[arg-type]
        elif step < 6:
            yield Draft(kind=RecordKind.ACCRUAL, leg="0", rule_id="per-sale",
                        explanation=Explanation(
                            summary="3% commission on a sale", formula="net * rate",
                            inputs={"net_minor": net, "rate_bp": 300, "category": "servers",
                                    "sku": f"SRV-{i % 97:03d}", "hold_days": 30},
                            rounding=Rounding(mode="half_even", exact=f"{net * 3 / 100:.2f}",
                                              result=amount)),
                        postings=(Posting(expense, "EUR", -amount),
                                  Posting(pending, "EUR", amount)),
                        **common)  # type: ignore[arg-type]
        elif step == 6:
            pts = net // 100
            yield Draft(kind=RecordKind.ACCRUAL, leg="points", rule_id="points",
                        explanation=Explanation(summary="1 point per 100 EUR of net sales",
                                                formula="floor(net / 100)",
                                                inputs={"net_minor": net}),
                        postings=(Posting(expense, points(PROGRAM), -pts),
                                  Posting(available, points(PROGRAM), pts)),
                        **common)  # type: ignore[arg-type]
        elif step == 7:
            yield Draft(kind=RecordKind.HOLD_RELEASE, leg="release", rule_id="hold",
                        explanation=Explanation(summary="return window passed",
                                                inputs={"hold_days": 30}),
                        postings=(Posting(pending, "EUR", -amount),
                                  Posting(available, "EUR", amount)),
                        **common)  # type: ignore[arg-type]
        elif step == 8:
            fund = amount // 2 + 1
            yield Draft(kind=RecordKind.ACCRUAL, leg="bonus", rule_id="launch-bonus",
                        explanation=Explanation(summary="launch bonus: cash and MDF",
                                                inputs={"net_minor": net, "mdf_share_bp": 5000}),
                        postings=(Posting(expense, "EUR", -amount), Posting(pending, "EUR", amount),
                                  Posting(expense, mdf("EUR"), -fund),
                                  Posting(available, mdf("EUR"), fund)),
                        **common)  # type: ignore[arg-type]
        else:
            yield Draft(kind=RecordKind.PAYOUT, leg="payout", partner_id=partner_id,
                        occurred_at=at, recorded_at=at + timedelta(seconds=1),
                        source_event_ids=(event,),
                        explanation=Explanation(summary="monthly payout",
                                                author="finance-ops", reason="payout run"),
                        postings=(Posting(available, "EUR", -amount),
                                  Posting(PAYOUT_CLEARING, "EUR", amount)))


def ledger(records: int, partners: int) -> Iterator[Record]:
    per, extra = divmod(records, partners)
    for p in range(partners):
        partner_id = f"P-{p:06d}"
        yield from Chain.empty(partner_id).append(drafts(partner_id, per + (p < extra)))


async def build(args: argparse.Namespace) -> str:
    settings = load_settings()
    admin = await asyncpg.connect(admin_dsn(settings, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{args.database}"')
    finally:
        await admin.close()
    dsn = admin_dsn(settings, args.database)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        started, written, batch = time.perf_counter(), 0, []
        for record in ledger(args.records, args.partners):
            batch.append(record)
            if len(batch) >= args.batch:
                written += await write(conn, batch)
        written += await write(conn, batch)
        elapsed = time.perf_counter() - started
        print(f"built and appended {written:,} records in {elapsed:.1f}s "
              f"({written / elapsed:,.0f} records/s, generation included)", flush=True)
        checkpoint = await store.take_checkpoint(conn, datetime.now(UTC))
        print(f"checkpoint {checkpoint.checkpoint_seq}: {checkpoint.partner_count} heads")
        # A freshly loaded table has no statistics and no hint bits; production tables have
        # both (autovacuum), so measure the steady state.
        await conn.execute("VACUUM (ANALYZE) ledger_records, ledger_postings")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        print(f"database {args.database}: {size}")
    finally:
        await conn.close()
    return dsn


async def write(conn: asyncpg.Connection, batch: list[Record]) -> int:
    async with conn.transaction():
        await store.append(conn, batch)
    count = len(batch)
    batch.clear()
    return count


def time_verify(dsn: str, chunk: int, records: int) -> None:
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "processors.cli", "audit", "verify", "--progress",
               "--chunk", str(chunk)]
    print(f"$ INCENTIVES_PG_DSN={dsn} {' '.join(command)}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, env=dict(os.environ, INCENTIVES_PG_DSN=dsn), cwd=root,
                            check=False)
    elapsed = time.perf_counter() - started
    # ru_maxrss of the children is that of the verify process, in KiB on Linux.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if result.returncode != 0:
        sys.exit(f"audit verify exited {result.returncode}")
    print(f"end to end (process start to exit): {records:,} records in {elapsed:.2f}s = "
          f"{records / elapsed:,.0f} records/s; peak RSS of the verify process "
          f"{peak_mib:,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partners", type=int, default=1_000)
    parser.add_argument("--database", default="bench_verify")
    parser.add_argument("--batch", type=int, default=20_000, help="records per append")
    parser.add_argument("--chunk", type=int, default=store.CHUNK_DEFAULT,
                        help="records per page read by verify")
    parser.add_argument("--verify-only", action="store_true",
                        help="reuse the database built by an earlier run")
    args = parser.parse_args()
    if args.verify_only:
        dsn = admin_dsn(load_settings(), args.database)
    else:
        dsn = asyncio.run(build(args))
    time_verify(dsn, args.chunk, args.records)


if __name__ == "__main__":
    main()
