"""The read side's measurements: balance lookups over the finance API, and statements.

``measure(dsn, base_url, key)``, given a database that holds a ledger and its projections
and a finance API running over it, returns:

- ``balance_lookups``: GET /partners/{id}/balances for random partners at a fixed offered
  rate (open loop: requests start on schedule whatever the previous ones do), with the
  achieved requests/s and p50/p99/max latency; and the same lookups closed loop at full
  speed (the most requests/s the API gives);
- ``statement_busiest_partner``: the busiest partner's statement of its busiest month and
  of its whole history, as JSON and as CSV: lines and seconds to the last byte.

``SYNTHETIC`` builds such a ledger in SQL, millions of records in minutes (see there);
``benchmarks.read_side`` puts the two together for ``./dev.sh bench --only read``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import aiohttp
import asyncpg

from benchmarks.ledger_fill import partner_name

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


# --- the data set ---------------------------------------------------------------------


# The same shapes in SQL, for millions of records in minutes: per partner a cycle of ten
# records (commissions on hold, points, a hold release, a bonus, a payout), 37 minutes apart
# for the busiest partner and spread over the year for the others. Hashes are not chained
# (a read benchmark does not verify); explanations are valid, so statements decode them.
SYNTHETIC = """
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


