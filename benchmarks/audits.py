"""The auditors' commands, timed as users run them: ``incentives audit replay``, ``incentives
audit verify`` and ``incentives projections rebuild``; and what they are compared with (a
raw asyncpg cursor read of the ledger table, the verifier alone in memory).

The rates come from the commands' own reports of their elapsed time, so the interpreter's
start-up (about a second, the same before and after any speed-up) is left out; the
command's wall time is kept beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import re
import sys
import time
from dataclasses import dataclass

import asyncpg

from benchmarks.ledger_fill import records_of
from benchmarks.scratch import BenchError, Scratch
from ledger.verify import verify
from schemas.settings import Settings, load_settings

COMMAND_TIMEOUT_S = 900.0
RAW_PREFETCH = 10_000
_REPLAYED = re.compile(r"replayed ([\d,]+) inputs into ([\d,]+) records in ([\d.]+)s; "
                       r"the ledger holds ([\d,]+): (\S+)")
_VERIFIED = re.compile(r"verified ([\d,]+) records of ([\d,]+) partners against .* in "
                       r"([\d.]+)s \(([\d,]+) records/s\): (.+)")
_REBUILT = re.compile(r"projections rebuilt from the ledger: .*; [\d,]+ rows differed")


@dataclass(frozen=True, slots=True)
class Timed:
    """What a command did: ``count`` items in ``seconds`` (its own report), ``wall_s`` from
    process start to exit, and its verdict line."""

    count: int
    seconds: float
    wall_s: float
    line: str

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


async def _cli(scratch: Scratch, settings: Settings, *args: str) -> tuple[str, float]:
    started = time.monotonic()
    status, out, err = await scratch.command(settings, ["-m", "incentives.cli", *args],
                                             COMMAND_TIMEOUT_S)
    wall = time.monotonic() - started
    if status != 0:
        raise BenchError(f"incentives {' '.join(args)} exited {status}:\n"
                         f"{out[-2000:]}{err[-2000:]}")
    return out, wall


def _number(text: str) -> int:
    return int(text.replace(",", ""))


async def replay(scratch: Scratch, settings: Settings) -> Timed:
    out, wall = await _cli(scratch, settings, "audit", "replay")
    found = _REPLAYED.search(out)
    if found is None or found[5] != "identical":
        raise BenchError(f"incentives audit replay did not report an identical ledger:\n{out}")
    return Timed(_number(found[1]), float(found[3]), wall, found[0])


async def verify_cli(scratch: Scratch, settings: Settings) -> Timed:
    out, wall = await _cli(scratch, settings, "audit", "verify")
    found = _VERIFIED.search(out)
    if found is None or found[5] != "OK":
        raise BenchError(f"incentives audit verify did not report OK:\n{out[-2000:]}")
    records, rate = _number(found[1]), _number(found[4])
    # The rate it prints is exact; its seconds are rounded to a tenth.
    return Timed(records, records / rate if rate else float(found[3]), wall, found[0])


async def rebuild(scratch: Scratch, settings: Settings, records: int) -> Timed:
    """``incentives projections rebuild``; ``records`` is what the ledger holds. It reports
    no time of its own, so its wall time is the figure."""
    out, wall = await _cli(scratch, settings, "projections", "rebuild")
    found = _REBUILT.search(out)
    if found is None:
        raise BenchError(f"incentives projections rebuild said:\n{out[-2000:]}")
    return Timed(records, wall, wall, found[0])


async def raw_read(scratch: Scratch, settings: Settings) -> Timed:
    """Every row of ``ledger_records`` through an asyncpg cursor, in the order verify reads
    them (partner, seq), in one read-only snapshot, doing nothing with them. In a process
    of its own with the cyclic GC paused, as ``incentives audit verify`` runs."""
    return await _child(scratch, settings, "raw-read")


async def verify_in_memory(scratch: Scratch, settings: Settings, records: int,
                           partners: int) -> Timed:
    """``ledger.verify`` over synthetic records already in memory: the verifier alone (in a
    process of its own, cyclic GC paused as the CLI pauses it)."""
    return await _child(scratch, settings, "verify-in-memory", str(records), str(partners))


async def _child(scratch: Scratch, settings: Settings, *args: str) -> Timed:
    status, out, err = await scratch.command(settings, ["-m", "benchmarks.audits", *args],
                                             COMMAND_TIMEOUT_S)
    if status != 0:
        raise BenchError(f"benchmarks.audits {' '.join(args)} exited {status}:\n{err[-2000:]}")
    found = json.loads(out.strip().splitlines()[-1])
    return Timed(found["count"], found["seconds"], found["seconds"], f"{found['count']:,}")


async def _raw_read(dsn: str) -> tuple[int, float]:
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        rows = 0
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            query = "SELECT * FROM ledger_records ORDER BY partner_id, seq"
            async for _ in conn.cursor(query, prefetch=RAW_PREFETCH):
                rows += 1
        return rows, time.perf_counter() - started
    finally:
        await conn.close()


def _verify_in_memory(records: int, partners: int) -> tuple[int, float]:
    per = max(records // partners, 1)
    chains = [list(records_of(n + 1, per)) for n in range(partners)]
    started = time.perf_counter()
    report = verify((r for chain in chains for r in chain), [])
    seconds = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"the in-memory verify found {report.findings[:3]}")
    return report.records, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the comparison reads, one per process")
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("raw-read", help="cursor read of ledger_records, as the auditor role")
    memory = sub.add_parser("verify-in-memory", help="ledger.verify over synthetic records")
    memory.add_argument("records", type=int)
    memory.add_argument("partners", type=int)
    args = parser.parse_args(argv)
    gc.disable()
    if args.what == "raw-read":
        count, seconds = asyncio.run(_raw_read(load_settings().pg_dsn("auditor")))
    else:
        count, seconds = _verify_in_memory(args.records, args.partners)
    print(json.dumps({"count": count, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
