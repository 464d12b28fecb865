"""A synthetic ledger of N sealed records over P partners, for the verify and growth figures.

The records are what the ledger holds after a busy year: commissions on hold, points, hold
releases, two-asset bonuses, payouts and tier changes, in a cycle of ten with a tier change
every 250 records, each with an explanation of realistic size. They are sealed as
``ledger.core`` seals them (the same canonical bytes, record ids and hashes, so `incentives
audit verify` finds them intact), but built directly as ``Record`` values: going through
``Draft`` would validate a million synthetic drafts, which takes minutes and measures
nothing of interest here. Partners are named ``F-000001`` and up, apart from the sample
data's ``P-00001``, so the live lane can run on top of a filled ledger.

Filling uses two processes (the machine's two cores), each sealing and appending (COPY,
through ``ledger.store.append``) the chains of half the partners.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from ledger import store
from ledger.core import (
    GENESIS_HASH,
    PAYOUT_CLEARING,
    Explanation,
    Posting,
    Record,
    RecordKind,
    Rounding,
    canonical_bytes,
    derive_record_id,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
PROGRAM = "fill-program"
APPEND_RECORDS = 20_000  # records per COPY transaction
PROCESSES = 2


@dataclass(frozen=True, slots=True)
class FillReport:
    records: int
    partners: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def partner_name(n: int) -> str:
    return f"F-{n:06d}"


def records_of(partner_index: int, count: int) -> Iterator[Record]:
    """One partner's chain of ``count`` records, sealed, from genesis."""
    partner_id = partner_name(partner_index)
    pending, available = f"partner:{partner_id}:pending", f"partner:{partner_id}:available"
    expense, pts = f"program:{PROGRAM}:expense", f"PTS:{PROGRAM}"
    prev_hash = GENESIS_HASH
    for i in range(count):
        at = T0 + timedelta(minutes=37 * i)
        event = uuid.UUID(int=(partner_index << 40) | i)
        net = 10_000 + (i * 7919) % 990_000
        amount = net * 3 // 100
        kind, rule, leg, explanation, postings = _body(
            i, net, amount, pending, available, expense, pts
        )
        program = None if kind is RecordKind.PAYOUT else PROGRAM
        unsealed = Record(
            record_id=derive_record_id(partner_id, event, program, rule, leg),
            partner_id=partner_id, seq=i + 1, kind=kind, occurred_at=at,
            recorded_at=at + timedelta(seconds=2, microseconds=i % 1000),
            program_id=program, program_version=None if program is None else 3, rule_id=rule,
            leg=leg, source_event_ids=(event,), explanation=explanation, postings=postings,
            prev_hash=prev_hash, hash=b"",
        )  # fmt: skip
        digest = hashlib.sha256(prev_hash + canonical_bytes(unsealed)).digest()
        yield msgspec.structs.replace(unsealed, hash=digest)
        prev_hash = digest


def _body(
    i: int, net: int, amount: int, pending: str, available: str, expense: str, pts: str
) -> tuple[RecordKind, str | None, str, Explanation, tuple[Posting, ...]]:
    step = i % 10
    if i % 250 == 249:
        return (RecordKind.TIER_CHANGE, "tiers", "tier", Explanation(
            summary="promoted to gold",
            inputs={"from": "silver", "to": "gold", "quarter_net_minor": net * 40}), ())
    if step < 6:
        return (RecordKind.ACCRUAL, "per-sale", "0", Explanation(
            summary="3% commission on a sale", formula="net * rate",
            inputs={"net_minor": net, "rate_bp": 300, "category": "hardware",
                    "sku": f"SKU-HAR-{i % 97:03d}", "hold_days": 30},
            rounding=Rounding(mode="half_even", exact=f"{net * 3 / 100:.2f}", result=amount)),
            (Posting(expense, "EUR", -amount), Posting(pending, "EUR", amount)))
    if step == 6:
        points = net // 100
        return (RecordKind.ACCRUAL, "points", "points", Explanation(
            summary="1 point per 100 EUR of net sales", formula="floor(net / 100)",
            inputs={"net_minor": net}),
            (Posting(expense, pts, -points), Posting(available, pts, points)))
    if step == 7:
        return (RecordKind.HOLD_RELEASE, "hold", "release", Explanation(
            summary="return window passed", inputs={"hold_days": 30}),
            (Posting(pending, "EUR", -amount), Posting(available, "EUR", amount)))
    if step == 8:
        fund = amount // 2 + 1
        return (RecordKind.ACCRUAL, "launch-bonus", "bonus", Explanation(
            summary="launch bonus: cash and MDF", inputs={"net_minor": net, "mdf_share_bp": 5000}),
            (Posting(expense, "EUR", -amount), Posting(pending, "EUR", amount),
             Posting(expense, "MDF:EUR", -fund), Posting(available, "MDF:EUR", fund)))
    return (RecordKind.PAYOUT, None, "payout", Explanation(
        summary="monthly payout", author="finance-ops", reason="payout run"),
        (Posting(available, "EUR", -amount), Posting(PAYOUT_CLEARING, "EUR", amount)))


def counts(records: int, partners: int) -> list[int]:
    """How many records each partner gets: as even as the division allows."""
    per, extra = divmod(records, partners)
    return [per + (n < extra) for n in range(partners)]


async def _append_part(dsn: str, part: int, parts: int, sizes: list[int]) -> int:
    conn = await asyncpg.connect(dsn)
    written, batch = 0, list[Record]()
    try:
        for index in range(part, len(sizes), parts):
            batch.extend(records_of(index + 1, sizes[index]))
            if len(batch) >= APPEND_RECORDS:
                written += await _write(conn, batch)
        written += await _write(conn, batch)
    finally:
        await conn.close()
    return written


async def _write(conn: asyncpg.Connection, batch: list[Record]) -> int:
    if not batch:
        return 0
    async with conn.transaction():
        await store.append(conn, batch)
    count = len(batch)
    batch.clear()
    return count


def _run_part(dsn: str, part: int, parts: int, sizes: list[int]) -> int:
    return asyncio.run(_append_part(dsn, part, parts, sizes))


def fill(dsn: str, records: int, partners: int, *, processes: int = PROCESSES) -> FillReport:
    """Append ``records`` synthetic records over ``partners`` chains to the ledger at
    ``dsn`` (migrated, without F- partners yet), in ``processes`` processes."""
    assert records >= partners >= 1
    sizes = counts(records, partners)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=processes) as pool:
        futures = [pool.submit(_run_part, dsn, part, processes, sizes)
                   for part in range(processes)]
        written = sum(f.result() for f in futures)
    return FillReport(written, partners, time.perf_counter() - started)


async def finish(dsn: str) -> None:
    """A checkpoint over every head, and the statistics and hint bits a production table
    has (autovacuum), so that the readers measure the steady state, not a fresh load."""
    conn = await asyncpg.connect(dsn)
    try:
        await store.take_checkpoint(conn, datetime.now(UTC))
        await conn.execute("VACUUM (ANALYZE) ledger_records, ledger_postings, partner_state")
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="append a synthetic ledger to a database")
    parser.add_argument("dsn")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--partners", type=int, default=1_000)
    args = parser.parse_args(argv)
    report = fill(args.dsn, args.records, args.partners)
    asyncio.run(finish(args.dsn))
    print(f"appended {report.records:,} records of {report.partners:,} partners in "
          f"{report.seconds:.1f} s ({report.per_second:,.0f} records/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
