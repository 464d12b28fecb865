"""Read-side benchmark: balance lookups over the finance API, and statement rendering time.

`measure(dsn, base_url, key)` is the hook for a harness: given a database that holds a
ledger and its projections, and a running finance API over it, it returns the figures:

- ``balance_lookups``: GET /partners/{id}/balances for random partners at a fixed offered
  rate (open loop: requests start on schedule whatever the previous ones do), with the
  achieved requests/s and p50/p99/max latency; and the same lookups closed loop at full
  speed (the most requests/s the API gives);
- ``statement``: the busiest partner's statement of its busiest month and of its whole
  history, as JSON and as CSV: lines and seconds to the last byte.

Run as a script it also builds the data set (``--build``): a fresh database with N records
over P partners, one of them much busier, written through ledger.store.append (COPY) and
folded into the balance projection with the writer's own fold; then it starts
``incentives api`` on it (a free port) with a finance key, and measures:

    .venv/bin/python benchmarks/read_side.py --build --partners 100000 --records 3000000
    .venv/bin/python benchmarks/read_side.py --database bench_read   # reuse the data set
    .venv/bin/python benchmarks/read_side.py --dsn postgresql://... --api http://... --key ik_...

It prints a table and, with ``--json FILE``, writes the figures. Targets (issue): p99 under
10 ms at 1,000 requests/s at 100,000 partners and a few million records.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ledger_fill import partner_name, records_of  # noqa: E402
from ledger import store  # noqa: E402
from ledger.core import Record  # noqa: E402
from ledger.migrate import migrate  # noqa: E402
from projections import balances  # noqa: E402
from projections.rows import Rows  # noqa: E402
from schemas.settings import load_settings  # noqa: E402
from stack.postgres import admin_dsn  # noqa: E402

BUSIEST = partner_name(0)


def _pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


async def _open_loop(session: aiohttp.ClientSession, base: str, key: str, ids: list[str],
                     rate: int, seconds: float) -> dict[str, Any]:
    """``rate`` requests/s for ``seconds``, each started on schedule."""
    latencies: list[float] = []
    errors = 0
    headers = {"X-API-Key": key}

    async def one(pid: str) -> None:
        nonlocal errors
        started = time.perf_counter()
        async with session.get(f"{base}/partners/{pid}/balances", headers=headers) as r:
            await r.read()
            if r.status != 200:
                errors += 1
        latencies.append((time.perf_counter() - started) * 1000)

    tasks: list[asyncio.Task[None]] = []
    began = time.perf_counter()
    total = int(rate * seconds)
    for n in range(total):
        delay = began + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(random.choice(ids))))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"offered_per_s": rate, "requests": total, "achieved_per_s": round(total / elapsed),
            "errors": errors, "p50_ms": round(_pct(latencies, 0.5), 2),
            "p99_ms": round(_pct(latencies, 0.99), 2), "max_ms": round(latencies[-1], 2)}


async def _closed_loop(session: aiohttp.ClientSession, base: str, key: str, ids: list[str],
                       concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    headers = {"X-API-Key": key}

    async def client() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.get(f"{base}/partners/{random.choice(ids)}/balances",
                                   headers=headers) as r:
                await r.read()
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"concurrency": concurrency, "requests": len(latencies),
            "requests_per_s": round(len(latencies) / elapsed),
            "p50_ms": round(_pct(latencies, 0.5), 2), "p99_ms": round(_pct(latencies, 0.99), 2)}


async def _statement(session: aiohttp.ClientSession, base: str, key: str, partner: str,
                     query: dict[str, str], fmt: str) -> dict[str, Any]:
    """One whole statement (every page of up to 10,000 lines), timed to the last byte."""
    params = {**query, "limit": "10000", "format": fmt}
    lines = pages = 0
    started = time.perf_counter()
    while True:
        async with session.get(f"{base}/partners/{partner}/statement", params=params,
                               headers={"X-API-Key": key}) as r:
            body = await r.read()
            assert r.status == 200, body[:300]
        pages += 1
        if fmt == "csv":
            lines += body.count(b"\nline,")
            break  # CSV is one page of up to 10,000 lines; enough for a timing
        page = json.loads(body)
        lines += len(page["lines"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    return {"query": query, "format": fmt, "lines": lines, "pages": pages,
            "seconds": round(time.perf_counter() - started, 3)}


async def _busiest_month(dsn: str) -> tuple[list[str], str]:
    conn = await asyncpg.connect(dsn)
    try:
        ids = [r["partner_id"] for r in await conn.fetch("SELECT partner_id FROM partner_state")]
        month = await conn.fetchval(
            """SELECT month FROM partner_months WHERE partner_id = $1
               GROUP BY month ORDER BY sum(records) DESC LIMIT 1""", BUSIEST)
    finally:
        await conn.close()
    return ids, month.strftime("%Y-%m") if month else "2026-01"


async def measure(dsn: str, base_url: str, key: str, *, rate: int = 1000,
                  seconds: float = 20.0, concurrency: int = 32) -> dict[str, Any]:
    """The read side's figures (see the module docstring)."""
    ids, month = await _busiest_month(dsn)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _open_loop(session, base_url, key, ids, rate, 2.0)  # warm the pools and caches
        fixed = await _open_loop(session, base_url, key, ids, rate, seconds)
        full = await _closed_loop(session, base_url, key, ids, concurrency, seconds / 2)
        statements = [await _statement(session, base_url, key, BUSIEST, q, fmt)
                      for q, fmt in (({"period": month}, "json"), ({"period": month}, "csv"),
                                     ({"from": "2025-01-01", "to": "2030-12-31"}, "json"))]
    return {"partners": len(ids), "balance_lookups": {"fixed_rate": fixed, "full_speed": full},
            "statement_busiest_partner": statements}


# --- the data set -----------------------------------------------------------------------


def _ledger(records: int, partners: int, busiest: int) -> Iterator[Record]:
    per, extra = divmod(records - busiest, partners - 1)
    yield from records_of(0, busiest)
    for p in range(1, partners):
        yield from records_of(p, per + (p <= extra))


async def build(database: str, records: int, partners: int, busiest: int) -> str:
    settings = load_settings()
    admin = await asyncpg.connect(admin_dsn(settings, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    dsn = admin_dsn(settings, database)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        started, months, batch, written = time.perf_counter(), Rows(), [], 0
        for record in _ledger(records, partners, busiest):
            batch.append(record)
            if len(batch) >= 20_000:
                written += await _write(conn, batch, months)
        written += await _write(conn, batch, months)
        await conn.copy_records_to_table(
            balances.TABLE.name, records=[k + v for k, v in months.items()],
            columns=list(balances.TABLE.columns))
        await conn.execute("VACUUM (ANALYZE)")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        print(f"built {written:,} records of {partners:,} partners ({busiest:,} for {BUSIEST}) "
              f"and {len(months):,} balance rows in {time.perf_counter() - started:.0f}s; "
              f"database {database}: {size}", flush=True)
    finally:
        await conn.close()
    return dsn


# The same shapes in SQL, for millions of records in minutes: per partner a cycle of ten
# records (commissions on hold, points, a hold release, a bonus, a payout), 37 minutes apart
# for the busiest partner and spread over the year for the others. Hashes are not chained
# (a read benchmark does not verify); explanations are valid, so statements decode them.
_SYNTHETIC = """
WITH p AS (
    SELECT n, format('F-%s', lpad(n::text, 6, '0')) AS pid,
           CASE WHEN n = 0 THEN $2::int ELSE $3::int + (n <= $4)::int END AS records
    FROM generate_series(0, $1 - 1) AS n
), r AS (
    SELECT p.pid, s AS seq, md5(p.pid || ':' || s)::uuid AS record_id,
           CASE WHEN s % 10 IN (7) THEN 'hold_release' WHEN s % 10 = 9 THEN 'payout'
                ELSE 'accrual' END AS kind,
           timestamptz '2026-01-01 00:00:00+00' + CASE WHEN p.n = 0
               THEN s * interval '37 minutes'
               ELSE s * (interval '360 days' / greatest(p.records, 1)) END AS at,
           1000 + (s * 7919) % 99000 AS amount, s % 10 AS step
    FROM p CROSS JOIN LATERAL generate_series(1, p.records) AS s
), ins AS (
    INSERT INTO ledger_records (record_id, partner_id, seq, kind, occurred_at, recorded_at,
                                program_id, program_version, rule_id, leg, source_event_ids,
                                explanation, prev_hash, hash)
    SELECT record_id, pid, seq, kind, at, at + interval '2 seconds',
           CASE WHEN kind = 'payout' THEN NULL ELSE 'northwind-emea' END,
           CASE WHEN kind = 'payout' THEN NULL ELSE 1 END,
           CASE WHEN kind = 'payout' THEN NULL ELSE 'per-sale' END, 'bench',
           ARRAY[md5('e' || pid || seq)::uuid],
           '{"formula":"net * rate_bp / 10000","inputs":{"net":' || amount * 33 ||
           ',"rate_bp":300},"summary":"3% commission on a sale"}',
           decode(md5(pid || seq) || md5(seq || pid), 'hex'),
           decode(md5(seq || pid) || md5(pid || seq), 'hex')
    FROM r RETURNING 1
)
INSERT INTO ledger_postings (record_id, leg, account, asset, amount)
SELECT record_id, leg, account, asset, sign * amount FROM r CROSS JOIN LATERAL (VALUES
    (0, CASE step WHEN 9 THEN 'partner:' || pid || ':available'
                  WHEN 7 THEN 'partner:' || pid || ':pending'
                  ELSE 'program:northwind-emea:expense' END, -1),
    (1, CASE step WHEN 9 THEN 'payout:clearing' WHEN 7 THEN 'partner:' || pid || ':available'
                  WHEN 6 THEN 'partner:' || pid || ':available'
                  ELSE 'partner:' || pid || ':pending' END, 1)
) AS l(leg, account, sign) CROSS JOIN LATERAL (VALUES
    (CASE WHEN step = 6 THEN 'PTS:northwind-emea' ELSE 'EUR' END)) AS a(asset)
"""


async def build_synthetic(database: str, records: int, partners: int, busiest: int) -> str:
    """The data set in SQL; `rebuild` then folds the projections from it."""
    settings = load_settings()
    admin = await asyncpg.connect(admin_dsn(settings, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    dsn = admin_dsn(settings, database)
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        await migrate(conn)
        per, extra = divmod(records - busiest, partners - 1)
        await conn.execute("SET synchronous_commit = off")
        await conn.execute(_SYNTHETIC, partners, busiest, per, extra, timeout=3600)
        await conn.execute(
            """INSERT INTO partner_state (partner_id, head_seq, head_hash)
               SELECT partner_id, max(seq), decode(repeat('00', 32), 'hex') FROM ledger_records
               GROUP BY partner_id""")
        await conn.execute("VACUUM (ANALYZE)", timeout=3600)
        print(f"built {records:,} records of {partners:,} partners in SQL in "
              f"{time.perf_counter() - started:.0f}s", flush=True)
    finally:
        await conn.close()
    return dsn


def rebuild(dsn: str) -> None:
    """`incentives projections rebuild` as a user runs it, timed."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "incentives.cli", "projections", "rebuild"],
                          env=dict(os.environ, INCENTIVES_PG_DSN=dsn), cwd=ROOT, check=True,
                          capture_output=True, text=True)
    print(done.stdout.splitlines()[-1])
    print(f"projections rebuilt in {time.perf_counter() - began:.0f}s", flush=True)


async def _write(conn: asyncpg.Connection, batch: list[Record], months: Rows) -> int:
    async with conn.transaction():
        await store.append(conn, batch)
    balances.fold(batch, months)  # the writer's own fold
    count = len(batch)
    batch.clear()
    return count


def _serve(dsn: str, log: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    env = dict(os.environ, INCENTIVES_PG_DSN=dsn, INCENTIVES_API_PORT="0")
    made = subprocess.run([sys.executable, "-m", "incentives.cli", "api-keys", "create",
                           "--role", "finance", "--label", "bench"], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    with open(log, "wb") as out:  # fresh, so the address found is this run's
        api = subprocess.Popen([sys.executable, "-m", "incentives.cli", "api"], env=env, cwd=ROOT,
                               stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"finance API on (http://[0-9.]+:\d+)", log.read_text(errors="replace"))
        if found:
            return api, found.group(1), made.stdout.strip()
        time.sleep(0.2)
    api.kill()
    raise SystemExit(f"the API did not start; see {log}")


def _print(figures: dict[str, Any]) -> None:
    fixed = figures["balance_lookups"]["fixed_rate"]
    full = figures["balance_lookups"]["full_speed"]
    print(f"balance lookups over {figures['partners']:,} partners:")
    print(f"  offered {fixed['offered_per_s']:,}/s: achieved {fixed['achieved_per_s']:,}/s, "
          f"p50 {fixed['p50_ms']} ms, p99 {fixed['p99_ms']} ms, max {fixed['max_ms']} ms, "
          f"{fixed['errors']} errors ({fixed['requests']:,} requests)")
    print(f"  full speed, {full['concurrency']} clients: {full['requests_per_s']:,}/s, "
          f"p50 {full['p50_ms']} ms, p99 {full['p99_ms']} ms")
    print(f"statements of the busiest partner {BUSIEST}:")
    for s in figures["statement_busiest_partner"]:
        print(f"  {s['query']} as {s['format']}: {s['lines']:,} lines in {s['seconds']} s "
              f"({s['pages']} page(s))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="build the data set first, "
                        "through the ledger core (hashed chains; slow beyond a million)")
    parser.add_argument("--synthetic", action="store_true", help="build it in SQL instead "
                        "(unchained hashes; millions of records in minutes), then rebuild "
                        "the projections from it")
    parser.add_argument("--database", default="bench_read")
    parser.add_argument("--partners", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=3_000_000)
    parser.add_argument("--busiest", type=int, default=20_000,
                        help="records of the busiest partner")
    parser.add_argument("--dsn", help="measure this database (with --api and --key)")
    parser.add_argument("--api", help="base URL of a running finance API over --dsn")
    parser.add_argument("--key", help="a finance API key for --api")
    parser.add_argument("--rate", type=int, default=1000, help="offered lookups per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if args.dsn:
        dsn, base, key, api = args.dsn, args.api, args.key, None
        if not (base and key):
            parser.error("--dsn needs --api and --key")
    else:
        if args.synthetic:
            dsn = asyncio.run(build_synthetic(args.database, args.records, args.partners,
                                              args.busiest))
            rebuild(dsn)
        elif args.build:
            dsn = asyncio.run(build(args.database, args.records, args.partners, args.busiest))
        else:
            dsn = admin_dsn(load_settings(), args.database)
        api, base, key = _serve(dsn, Path(load_settings().stack_dir) / "bench-read-api.log")
    try:
        figures = asyncio.run(measure(dsn, base, key, rate=args.rate, seconds=args.seconds))
    finally:
        if api is not None:
            api.terminate()
            api.wait(timeout=30)
    _print(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
