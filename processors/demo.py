"""`incentives demo`: the whole system on the local stack, step by step, as a user runs it.

Brings up Kafka and PostgreSQL, publishes the example program, uploads a quarter of sample
traffic as a JSONL file, runs a worker until every message is consumed, then shows what
finance and auditors see: reconciliation, a checkpoint, a verified and replayed ledger, a
partner's balances and the projections checked. The sample traffic is deterministic, so
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
from processors.app import SOURCE_STREAMS
from processors.offsets import end_offsets
from processors.sample_data import generate, partner_ids
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
    upload.write_bytes(
        b"".join(
            msgspec.json.encode(m) + b"\n"
            for m in generate(partners=partners, sales=sales, hierarchy_and_targets=True)
        )
    )
    if _cli(f"4. upload {upload.name}", "publish", str(upload)) != 0:
        return 1
    _step("5. a worker consumes everything")
    log = upload.with_suffix(".worker.log")
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "processors.cli", "worker"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        started = time.monotonic()
        asyncio.run(_wait_consumed(settings, worker, timeout_s))
        print(f"   consumed in {time.monotonic() - started:.1f}s (worker log: {log})")
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
        (
            f"10. balances of {partner_ids(partners)[0]}",
            "balance",
            "--partner",
            partner_ids(partners)[0],
        ),
        ("11. the projections finance reads agree with the ledger", "projections", "check"),
    ):
        status |= _cli(title, *args)
    return status


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
        [sys.executable, "-m", "processors.cli", *args], env=os.environ, check=False
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
