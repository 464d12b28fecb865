"""The worker's operations endpoint against the real stack: `incentives worker` started as a
user starts it (port 0, JSON logs) serves /metrics whose counters equal what PostgreSQL
recorded, a /health that is ok, and logs nothing but JSON objects."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from ingest_support import (
    Worker,
    fetch,
    keyed,
    registration,
    sale,
    send_raw,
    survey,
    wait_consumed,
)
from prometheus_client.parser import text_string_to_metric_families

from ledger import program_store
from processors.worker.app import SOURCE_STREAMS
from schemas.program_loader import load_program
from schemas.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
SOURCE_TOPICS = len(SOURCE_STREAMS)


async def test_metrics_equal_what_postgres_recorded_health_is_ok_and_logs_are_json(
    settings: Settings, tmp_path: Path
) -> None:
    """Counters per stream and outcome, dead letters per code and ledger records equal the
    rows of ingest_log, dead_letters and ledger_records; the lag of every assigned
    partition drops to 0; every line the worker wrote parses as a JSON log object."""
    await _publish_program(settings)
    started_at = time.time()
    # The timer stays off: a period close it sent while the test reads the figures would
    # add rows between the scrape and the queries.
    with Worker(
        settings, tmp_path / "worker.log", INCENTIVES_METRICS_PORT="0",
        INCENTIVES_LOG_FORMAT="json", INCENTIVES_AUTO_CLOSE="false",
        INCENTIVES_TIMER_INTERVAL_S="0",
    ) as worker:  # fmt: skip
        url = await _endpoint(worker)
        # Partners first: a sale taken before its partner's registration would be counted
        # as parked, and its ingest_log row changed to applied on release.
        await send_raw(settings, [keyed("partners", registration(p)) for p in ("P-1", "P-2")])
        await wait_consumed(settings, worker)
        sold = sale("P-1", "SO-1", ("1", 4, 2_500_000))
        sold["lines"][0]["category"] = "hardware"
        await send_raw(settings, [
            keyed("sales", sold),
            keyed("sales", sold),  # a duplicate
            keyed("sales", sale("P-2", "SO-2")),
            keyed("surveys", survey("P-2", score=4, scale="csat_1_5")),
            ("sales", b"P-1", b'{"type": "SaleRecorded", '),  # poison: not JSON
            keyed("sales", sale("P-GHOST", "SO-3")),  # parked: never registered
        ])  # fmt: skip
        await wait_consumed(settings, worker)
        metrics = await _until_lag_is_zero(url, worker)
        health, status = await _get_json(url + "/health")
        logged = await fetch(settings, "SELECT stream, outcome, count(*) FROM ingest_log"
                                       " GROUP BY 1, 2")  # fmt: skip
        dead = await fetch(settings, "SELECT code, count(*) FROM dead_letters GROUP BY 1")
        records = (await fetch(settings, "SELECT count(*) FROM ledger_records"))[0][0]

    messages = _series(metrics, "incentives_worker_messages_total", "stream", "outcome")
    assert {k: v for k, v in messages.items() if v} == {
        (r["stream"], r["outcome"]): r["count"] for r in logged
    }
    assert messages[("sales", "duplicate")] == messages[("sales", "parked")] == 1
    letters = _series(metrics, "incentives_worker_dead_letters_total", "code")
    assert {k: v for k, v in letters.items() if v} == {(r["code"],): r["count"] for r in dead}
    assert letters[("not_json",)] == 1
    assert _one(metrics, "incentives_worker_ledger_records_total") == records > 0
    batches = _one(metrics, "incentives_worker_batches_total")
    assert batches >= 2
    assert _one(metrics, "incentives_worker_batch_duration_seconds_count") == batches
    assert _one(metrics, "incentives_worker_batch_failures_total") == 0
    assert _one(metrics, "incentives_worker_assigned_partitions") == (
        SOURCE_TOPICS * settings.topic_partitions
    )
    assert started_at <= _one(metrics, "incentives_worker_last_batch_timestamp_seconds") \
        <= time.time()  # fmt: skip

    assert (status, health["status"]) == (200, "ok"), health
    assert health["assigned_partitions"] == SOURCE_TOPICS * settings.topic_partitions
    assert health["consumer_lag"] == 0

    lines = (tmp_path / "worker.log").read_text().splitlines()
    entries = [_json_line(line) for line in lines if line.strip()]
    for entry in entries:
        assert {"ts", "level", "logger", "message"} <= entry.keys(), entry
        assert datetime.fromisoformat(entry["ts"]).utcoffset() == timedelta(0), entry
    batch_lines = [e for e in entries if e["message"].startswith("batch of")]
    assert any(e["dead_letter_codes"] == {"not_json": 1} for e in batch_lines), batch_lines


def _json_line(line: str) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except ValueError:
        raise AssertionError(f"not a JSON log line: {line!r}") from None
    assert isinstance(entry, dict), line
    return entry


async def _publish_program(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    try:
        await program_store.publish(conn, load_program(EXAMPLE), published_by="test")
    finally:
        await conn.close()


async def _endpoint(worker: Worker, timeout_s: float = 60) -> str:
    """The URL the worker logged, once it did (it picked the port itself)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.check_alive()
        # Complete lines only: the worker may be writing the last one. Whether every line
        # is JSON is checked at the end, when the worker has stopped.
        for line in worker.log_path.read_text().split("\n")[:-1]:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("message", "").startswith("metrics and health on http://"):
                return str(entry["url"])
        await asyncio.sleep(0.2)
    raise AssertionError(f"no metrics address logged within {timeout_s}s\n{worker.log_tail()}")


async def _get_json(url: str) -> tuple[dict[str, Any], int]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json(), response.status


async def _scrape(url: str) -> dict[str, dict[tuple[str, ...], float]]:
    """Every sample of /metrics: name -> {label values, in label-name order: value}."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = tuple(v for _, v in sorted(s.labels.items()))
            samples.setdefault(s.name, {})[key] = s.value
    return samples


async def _until_lag_is_zero(
    url: str, worker: Worker, timeout_s: float = 60
) -> dict[str, dict[tuple[str, ...], float]]:
    """Scrape until the background refresh has seen every assigned partition caught up
    (it runs every few seconds, so right after consuming it may still show the old lag)."""
    deadline = time.monotonic() + timeout_s
    lag: dict[tuple[str, ...], float] = {}
    while time.monotonic() < deadline:
        worker.check_alive()
        metrics = await _scrape(url)
        lag = metrics.get("incentives_worker_consumer_lag", {})
        assigned = _one(metrics, "incentives_worker_assigned_partitions")
        if lag and len(lag) == assigned and not any(lag.values()):
            return metrics
        await asyncio.sleep(0.5)
    raise AssertionError(f"consumer lag not 0 within {timeout_s}s: {lag}\n{worker.log_tail()}")


def _series(
    metrics: dict[str, dict[tuple[str, ...], float]], name: str, *labels: str
) -> dict[tuple[str, ...], float]:
    """The samples of ``name`` keyed by the values of ``labels`` in the order given."""
    order = sorted(labels)
    return {
        tuple(key[order.index(label)] for label in labels): value
        for key, value in metrics[name].items()
    }


def _one(metrics: dict[str, dict[tuple[str, ...], float]], name: str) -> float:
    return metrics[name][()]
