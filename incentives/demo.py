"""`incentives demo`: the whole system on the local stack, step by step, as a user runs it.

Brings up Kafka and PostgreSQL, publishes the example program, uploads a quarter of sample
traffic as a JSONL file, runs a worker until every message is consumed, then shows what
finance and auditors see: reconciliation, a checkpoint, a verified and replayed ledger, a
partner's balances, tier, statement, the leaderboard and program spend, the same over the
finance API, and the projections checked. The sample traffic is deterministic, so
running the demo again adds nothing: the second upload is counted as duplicates.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import msgspec

import stack
from incentives.sample_data import generate, partner_ids
from processors.worker.app import SOURCE_STREAMS
from processors.worker.kafka_offsets import end_offsets
from schemas.settings import PROJECT_ROOT, Settings

EXAMPLE = PROJECT_ROOT / "programs" / "example-channel-2026.yaml"


def run(settings: Settings, *, partners: int, sales: int, timeout_s: float = 600) -> int:
    _step("1. the local stack", *stack.up(settings))
    for title, *args in (
        ("2. schema and topics", "init"),
        ("3. the example program", "programs", "publish", str(EXAMPLE), "--by", "demo"),
    ):
        if _cli(title, *args) != 0:
            return 1
    upload = Path(settings.stack_dir) / "demo" / "q1-2026.jsonl"
    upload.parent.mkdir(parents=True, exist_ok=True)
    # The month closes go in after the worker has applied the quarter's events, as finance
    # closes a month once its events are in: sent in the same upload, a close on the
    # commands topic can overtake the sales on theirs and close its month before them.
    traffic = generate(partners=partners, sales=sales, hierarchy_and_targets=True)
    closes = upload.with_name("q1-2026-closes.jsonl")
    for path, wanted in ((upload, False), (closes, True)):
        path.write_bytes(b"".join(msgspec.json.encode(m) + b"\n" for m in traffic
                                  if (m["type"] == "ClosePeriod") is wanted))
    if _cli(f"4. upload {upload.name}", "publish", str(upload)) != 0:
        return 1
    _step("5. a worker consumes everything")
    log = upload.with_suffix(".worker.log")
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "incentives.cli", "worker"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        started = time.monotonic()
        asyncio.run(_wait_consumed(settings, worker, timeout_s))
        print(f"   consumed in {time.monotonic() - started:.1f}s (worker log: {log})")
        if _cli("5b. finance closes January to March", "publish", str(closes)) != 0:
            return 1
        asyncio.run(_wait_consumed(settings, worker, timeout_s))
        _show_operations(settings)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    status = 0
    for title, *args in (
        ("6. reconciliation", "reconcile"),
        ("7. a checkpoint over every chain head", "audit", "checkpoint"),
        ("8. the auditor's verification, also against the checkpoints held in Kafka",
         "audit", "verify", "--against", "topic"),
        ("9. the auditor's replay from the stored inputs", "audit", "replay"),
        *_finance_steps(partner_ids(partners)[0]),
    ):
        status |= _cli(title, *args)
    status |= _show_api(settings, partner_ids(partners)[0])
    status |= _cli("18. the projections finance reads agree with the ledger", "projections",
                   "check")
    return status


def _finance_steps(partner: str) -> list[tuple[str, ...]]:
    """What finance asks: the CLI's answers, with formatted money."""
    return [
        (f"10. balances of {partner} now", "balances", "--partner", partner),
        (f"11. balances of {partner} as of 31 January, end of day (a month's closing awards "
         "are dated on its last day, so they count)",
         "balances", "--partner", partner, "--as-of", "2026-01-31"),
        (f"12. the tier of {partner} and the gap to the next tier", "tier", "--partner",
         partner),
        (f"13. the statement of {partner} for 31 January, the day January closed",
         "statement", "--partner", partner, "--from", "2026-01-31", "--to", "2026-01-31"),
        ("14. the quarter's leaderboard by net sales", "leaderboard", "--period", "2026-Q1",
         "--limit", "5"),
        ("15. team standings of the quarter", "teams", "--period", "2026-Q1"),
        ("16. program spend against budget, points issued and redeemed", "spend"),
    ]


def _show_api(settings: Settings, partner: str) -> int:
    """The finance API, as an integrator calls it: a key, then a balance over HTTP."""
    _step("17. the finance API: a finance key and a balance over HTTP")
    made = subprocess.run([sys.executable, "-m", "incentives.cli", "api-keys", "create",
                           "--role", "finance", "--label", "demo"], env=os.environ,
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        print(made.stderr)
        return 1
    key = made.stdout.strip()
    log = Path(settings.stack_dir) / "demo" / "api.log"
    env = dict(os.environ, INCENTIVES_API_PORT="0")
    with open(log, "wb") as out:  # a fresh log: the address read from it is this run's
        api = subprocess.Popen([sys.executable, "-m", "incentives.cli", "api"], env=env,
                               stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        base = _api_address(log, api)
        url = f"{base}/partners/{partner}/balances?as_of=2026-01-31"
        request = urllib.request.Request(url, headers={"X-API-Key": key})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        print(f"   $ incentives api-keys create --role finance  -> {key[:16]}... (shown once)")
        print(f"   $ curl -H 'X-API-Key: ...' {url}")
        for b in body["balances"]:
            print(f"     {b['asset']}: total {b['figures']['total']} minor units "
                  f"(pending {b['figures']['pending']}, available {b['figures']['available']})")
        print(f"   OpenAPI document: {base}/openapi.json")
        return 0
    except (OSError, TimeoutError) as exc:
        print(f"   (the API did not answer: {exc}; log {log})")
        return 1
    finally:
        api.terminate()
        api.wait(timeout=30)


def _api_address(log: Path, api: subprocess.Popen[bytes], timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines()[::-1]:
            if "finance API on http://" in line:
                return line.split("finance API on ", 1)[1].split()[0]
        if api.poll() is not None:
            raise OSError(f"the API exited with {api.returncode}")
        time.sleep(0.2)
    raise TimeoutError(f"the API did not log its address within {timeout_s:.0f}s")


def _show_operations(settings: Settings) -> None:
    """What operations sees of the running worker: its health and a few of its metrics."""
    base = f"http://{settings.metrics_host}:{settings.metrics_port}"
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            health = json.loads(response.read())
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    except OSError as exc:
        print(f"   (the worker's health endpoint {base} did not answer: {exc})")
        return
    print(f"   $ curl {base}/health -> {health['status']}")
    print(f"   $ curl {base}/metrics (the counters above zero)")
    shown = ("incentives_worker_messages_total{", "incentives_worker_ledger_records_total ",
             "incentives_worker_batches_total ")  # fmt: skip
    for line in metrics.splitlines():
        if line.startswith(shown) and float(line.rsplit(" ", 1)[1]):
            print(f"     {line}")


def _step(title: str, *lines: str) -> None:
    print(f"\n== {title}", flush=True)
    for line in lines:
        print(f"   {line}")


def _cli(title: str, *args: str) -> int:
    _step(title)
    print(f"   $ incentives {' '.join(args)}", flush=True)
    return subprocess.run(
        [sys.executable, "-m", "incentives.cli", *args], env=os.environ, check=False
    ).returncode


async def _wait_consumed(
    settings: Settings, worker: subprocess.Popen[bytes], timeout_s: float
) -> None:
    topics = [settings.topic(s) for s in SOURCE_STREAMS]
    ends = {tp: end for tp, end in (await end_offsets(settings, topics)).items()}
    deadline = time.monotonic() + timeout_s
    conn = await asyncpg.connect(settings.pg_dsn("auditor"))
    try:
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}")
            rows = await conn.fetch(
                "SELECT topic, partition, next_offset FROM consumer_positions WHERE group_id = $1",
                settings.consumer_group,
            )
            stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
            if all(stored.get(tp, 0) >= end for tp, end in ends.items()):
                return
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    raise TimeoutError(f"the worker did not consume everything within {timeout_s:.0f}s")
