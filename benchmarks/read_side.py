"""The read side's figures: the finance API's balance lookups and statement rendering.

``measure_read_side`` makes a database of the run's own, fills it in SQL with
``ReadSideSizes.records`` records over ``.partners`` partners, one of them far busier
(``benchmarks.finance_reads.SYNTHETIC``: the record and posting mix of a channel year;
hashes not chained, as a read benchmark does not verify), folds every projection from them
with ``incentives projections rebuild`` as a user runs it, makes a finance API key with
``incentives api-keys create``, starts ``incentives api`` on a free port, and measures:
balance lookups of random partners offered at ``lookup_rate_per_s`` for
``lookup_seconds`` (open loop) and at full speed, and the busiest partner's statements.
The target: p99 under 10 ms at an offered 1,000 requests/s, at 100,000 partners and a few
million records.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import finance_reads
from benchmarks.scratch import BenchError, Scratch, stop

# The keys measure_read_side returns (bench-results.json keys), with the table's labels.
FIGURES = {
    "read.balance_lookups_per_s": ("balance lookups at full speed", "/s"),
    "read.balance_lookup_p50_ms": ("balance lookup p50 (offered rate)", "ms"),
    "read.balance_lookup_p99_ms": ("balance lookup p99 (offered rate)", "ms"),
    "read.statement_render_ms": ("statement of the busiest partner's month", "ms"),
    "read.statement_history_ms": ("statement of its whole history", "ms"),
}

BUILD_TIMEOUT_S = 1_800.0
API_START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class ReadSideSizes:
    partners: int
    records: int
    busiest: int  # records of the busiest partner
    lookup_rate_per_s: int
    lookup_seconds: float


FULL = ReadSideSizes(partners=100_000, records=2_000_000, busiest=20_000,
                     lookup_rate_per_s=1_000, lookup_seconds=20)
QUICK = ReadSideSizes(partners=10_000, records=100_000, busiest=2_000,
                      lookup_rate_per_s=500, lookup_seconds=5)


async def _fill(dsn: str, sizes: ReadSideSizes) -> None:
    per, extra = divmod(sizes.records - sizes.busiest, sizes.partners - 1)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute(finance_reads.SYNTHETIC, sizes.partners, sizes.busiest, per, extra,
                           timeout=BUILD_TIMEOUT_S)
        await conn.execute(
            """INSERT INTO partner_state (partner_id, head_seq, head_hash)
               SELECT partner_id, max(seq), decode(repeat('00', 32), 'hex')
               FROM ledger_records GROUP BY partner_id""")
        await conn.execute("VACUUM (ANALYZE)", timeout=BUILD_TIMEOUT_S)
    finally:
        await conn.close()


async def _address(log: Path, child: Any) -> str:
    deadline = time.monotonic() + API_START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(log.read_text, errors="replace")
        found = re.search(r"finance API on (http://[0-9.]+:\d+)", text)
        if found:
            return found.group(1)
        if child.poll() is not None:
            break
        await asyncio.sleep(0.2)
    raise BenchError(f"incentives api did not start; see {log}")


async def measure_read_side(scratch: Scratch, sizes: ReadSideSizes) -> dict[str, float]:
    """The figures of ``FIGURES`` by key."""
    settings = await scratch.database("read")
    began = time.perf_counter()
    await _fill(settings.pg_dsn("owner"), sizes)
    filled = time.perf_counter() - began
    status, out, err = await scratch.command(settings, ["-m", "incentives.cli", "projections",
                                                        "rebuild"], BUILD_TIMEOUT_S)
    if status != 0:
        raise BenchError(f"projections rebuild exited {status}: {(out + err)[-800:]}")
    rebuilt = time.perf_counter() - began - filled
    status, out, err = await scratch.command(
        settings, ["-m", "incentives.cli", "api-keys", "create", "--role", "finance",
                   "--label", "bench"], 60)
    if status != 0:
        raise BenchError(f"api-keys create exited {status}: {(out + err)[-800:]}")
    key = out.strip().splitlines()[-1]
    log = scratch.folder / "read-api.log"
    log.write_bytes(b"")  # the address found must be this run's
    api = scratch.spawn(["-m", "incentives.cli", "api"], log,
                        scratch.env(settings, INCENTIVES_API_PORT="0"))
    try:
        base = await _address(log, api)
        found = await finance_reads.measure(
            settings.pg_dsn("reader"), base, key, rate=sizes.lookup_rate_per_s,
            seconds=sizes.lookup_seconds)
    finally:
        stop(api)
    fixed = found["balance_lookups"]["fixed_rate"]
    full = found["balance_lookups"]["full_speed"]
    month, _csv, history = found["statement_busiest_partner"]
    print(f"   {sizes.records:,} records of {found['partners']:,} partners built in "
          f"{filled:.0f} s, projections rebuilt in {rebuilt:.0f} s; offered "
          f"{fixed['offered_per_s']:,}/s, achieved {fixed['achieved_per_s']:,}/s, "
          f"{fixed['errors']} errors, max {fixed['max_ms']} ms; busiest partner's month "
          f"{month['lines']:,} lines, history {history['lines']:,} lines", flush=True)
    if fixed["errors"]:
        raise BenchError(f"{fixed['errors']} balance lookups failed; see {log}")
    return {
        "read.balance_lookups_per_s": full["requests_per_s"],
        "read.balance_lookup_p50_ms": fixed["p50_ms"],
        "read.balance_lookup_p99_ms": fixed["p99_ms"],
        "read.statement_render_ms": month["seconds"] * 1000,
        "read.statement_history_ms": history["seconds"] * 1000,
    }
