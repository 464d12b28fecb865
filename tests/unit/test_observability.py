"""The worker's metrics, health verdict and JSON log lines, without Kafka or PostgreSQL:
batch reports and probes are made up, the clock is a fake one."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from processors.intake.batch import BatchReport, DeadLetter
from processors.worker.endpoint import bind, check_health, url_of, web_app
from processors.worker.telemetry import (
    STALL_AFTER_S,
    HealthInputs,
    JsonFormatter,
    RecordTally,
    Telemetry,
    batch_fields,
    decide,
    logging_config,
)
from schemas.events import RejectCode, Rejection

STREAMS = ("sales", "surveys", "trainings", "partners", "commands")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def telemetry(clock: FakeClock | None = None) -> Telemetry:
    return Telemetry(STREAMS, clock=clock or FakeClock(), wall_clock=lambda: 1_770_000_000.0)


def dead(code: RejectCode, offset: int = 0) -> DeadLetter:
    rejection = Rejection(code=code, path="$", message="bad")
    return DeadLetter("t.sales", 0, offset, "sales", None, None, b"x", rejection)


def value(t: Telemetry, name: str, **labels: str) -> float | None:
    return t.registry.get_sample_value(name, labels)


# ---------------------------------------------------------------------------------------
# Metrics


def test_every_stream_outcome_and_reject_code_is_exposed_at_zero_before_any_batch() -> None:
    t = telemetry()
    for stream in STREAMS:
        for outcome in ("applied", "duplicate", "dead_lettered", "parked"):
            assert value(t, "incentives_worker_messages_total", stream=stream,
                         outcome=outcome) == 0.0  # fmt: skip
    assert value(t, "incentives_worker_dead_letters_total", code="not_json") == 0.0
    # A duplicate is counted as an outcome, never as a dead letter.
    assert value(t, "incentives_worker_dead_letters_total", code="duplicate") is None


def test_a_committed_batch_adds_its_figures_to_the_counters() -> None:
    t = telemetry()
    report = BatchReport(
        messages=7,
        below_position=2,
        outcomes={
            ("sales", "applied"): 2, ("sales", "dead_lettered"): 2, ("partners", "applied"): 1
        },
        dead_letters=[dead(RejectCode.NOT_JSON), dead(RejectCode.NOT_JSON, 1),
                      dead(RejectCode.UNKNOWN_ORDER, 2)],
    )  # fmt: skip
    t.batch_committed(report, 0.03, records=11)
    t.batch_committed(BatchReport(messages=1, outcomes={("sales", "applied"): 1}), 2.0, 0)

    assert value(t, "incentives_worker_messages_total", stream="sales", outcome="applied") == 3
    assert value(t, "incentives_worker_messages_total", stream="sales",
                 outcome="dead_lettered") == 2  # fmt: skip
    assert value(t, "incentives_worker_messages_total", stream="partners", outcome="applied") == 1
    assert value(t, "incentives_worker_redelivered_messages_total") == 2
    assert value(t, "incentives_worker_ledger_records_total") == 11
    assert value(t, "incentives_worker_dead_letters_total", code="not_json") == 2
    assert value(t, "incentives_worker_dead_letters_total", code="unknown_order") == 1
    assert value(t, "incentives_worker_batches_total") == 2
    assert value(t, "incentives_worker_batch_failures_total") == 0
    assert value(t, "incentives_worker_batch_duration_seconds_count") == 2
    assert value(t, "incentives_worker_batch_duration_seconds_sum") == pytest.approx(2.03)
    assert value(t, "incentives_worker_batch_duration_seconds_bucket", le="0.05") == 1
    assert value(t, "incentives_worker_last_batch_timestamp_seconds") == 1_770_000_000.0


def test_two_telemetries_do_not_share_counters() -> None:
    first, second = telemetry(), telemetry()
    first.batch_committed(BatchReport(messages=1, outcomes={("sales", "applied"): 1}), 0.1, 4)
    assert value(second, "incentives_worker_ledger_records_total") == 0
    assert value(second, "incentives_worker_batches_total") == 0


def test_lag_series_follow_the_assignment_and_vanish_when_unknown() -> None:
    t = telemetry()
    t.lag_refreshed(2, {("t.sales", 0): 5, ("t.sales", 1): 0})
    assert value(t, "incentives_worker_consumer_lag", topic="t.sales", partition="0") == 5
    assert value(t, "incentives_worker_assigned_partitions") == 2

    t.lag_refreshed(1, {("t.sales", 1): 3})  # partition 0 went to another worker
    assert value(t, "incentives_worker_consumer_lag", topic="t.sales", partition="0") is None
    assert value(t, "incentives_worker_consumer_lag", topic="t.sales", partition="1") == 3

    t.lag_refreshed(1, None)  # Kafka or PostgreSQL did not answer
    assert value(t, "incentives_worker_consumer_lag", topic="t.sales", partition="1") is None
    assert value(t, "incentives_worker_assigned_partitions") == 1


def test_exposition_is_prometheus_text_with_every_metric_and_its_type() -> None:
    text = telemetry().exposition().decode()
    types = {
        "incentives_worker_messages_total": "counter",
        "incentives_worker_redelivered_messages_total": "counter",
        "incentives_worker_ledger_records_total": "counter",
        "incentives_worker_dead_letters_total": "counter",
        "incentives_worker_batches_total": "counter",
        "incentives_worker_batch_failures_total": "counter",
        "incentives_worker_batch_retries_total": "counter",
        "incentives_worker_batches_narrowed_total": "counter",
        "incentives_worker_batch_duration_seconds": "histogram",
        "incentives_worker_consumer_lag": "gauge",
        "incentives_worker_assigned_partitions": "gauge",
        "incentives_worker_last_batch_timestamp_seconds": "gauge",
    }
    declared = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    # prometheus-client adds a "_created" timestamp beside each counter and histogram.
    assert {k: v for k, v in declared.items() if not k.endswith("_created")} == types


def test_the_tally_hands_out_what_was_added_since_it_was_last_taken() -> None:
    tally = RecordTally()
    tally.add(3)
    tally.add(4)
    assert tally.take() == 7
    assert tally.take() == 0


def test_batch_fields_carry_the_figures_of_a_batch_log_line() -> None:
    report = BatchReport(messages=4, applied=1, parked=1, duplicates=1,
                         dead_letters=[dead(RejectCode.NOT_JSON)])  # fmt: skip
    assert batch_fields(report, 9) == {
        "messages": 4, "applied": 1, "released": 0, "duplicates": 1, "parked": 1,
        "dead_letters": 1, "dead_letter_codes": {"not_json": 1}, "records": 9,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------
# Health


def healthy(**changes: Any) -> HealthInputs:
    fields: dict[str, Any] = dict(
        postgres_error=None, consumer_state="running", assigned_partitions=6,
        unassigned_s=None, since_batch_s=1.5, lag=0, waiting_s=None, batch_failure=None,
    )  # fmt: skip
    fields.update(changes)
    return HealthInputs(**fields)


def test_a_worker_with_every_check_passing_is_ok() -> None:
    health = decide(healthy())
    body = health.to_json()
    assert (health.http_status, body["status"]) == (200, "ok")
    assert set(body["checks"]) == {"postgres", "consumer", "partitions", "progress", "batches"}
    figures = (body["assigned_partitions"], body["seconds_since_last_batch"], body["consumer_lag"])
    assert figures == (6, 1.5, 0)


@pytest.mark.parametrize(
    ("changes", "failing_check"),
    [
        ({"postgres_error": "PostgreSQL unreachable: OSError()"}, "postgres"),
        ({"consumer_state": "stopping"}, "consumer"),
        ({"assigned_partitions": 0, "unassigned_s": STALL_AFTER_S + 1}, "partitions"),
        ({"lag": 40, "waiting_s": STALL_AFTER_S + 1}, "progress"),
        ({"batch_failure": "a batch failed and was rolled back: X"}, "batches"),
    ],
)
def test_any_failing_check_makes_the_worker_failing_with_503(
    changes: dict[str, Any], failing_check: str
) -> None:
    health = decide(healthy(**changes))
    body = health.to_json()
    assert (health.http_status, body["status"]) == (503, "failing")
    assert [name for name, c in body["checks"].items() if not c["ok"]] == [failing_check]


def test_short_pauses_are_not_failures() -> None:
    # A rebalance (no partitions for a few seconds), an idle worker (no batch for an hour,
    # nothing waiting) and a busy one (messages waiting, batches committing) are all fine.
    assert decide(healthy(assigned_partitions=0, unassigned_s=STALL_AFTER_S - 1)).ok
    assert decide(healthy(since_batch_s=3600.0, lag=0, waiting_s=None)).ok
    assert decide(healthy(lag=5000, waiting_s=0.2)).ok
    assert decide(healthy(lag=None, since_batch_s=None)).ok


def test_messages_waiting_without_a_batch_for_too_long_is_a_stall() -> None:
    clock = FakeClock()
    t = telemetry(clock)
    t.partitions_assigned(6)
    clock.now += 3600  # idle for an hour: nothing waits
    t.lag_refreshed(6, {("t.sales", 0): 0})
    assert decide(t.health_inputs(None, "running")).ok

    t.lag_refreshed(6, {("t.sales", 0): 10})  # messages arrive; the lag counts from now
    clock.now += STALL_AFTER_S - 1
    assert decide(t.health_inputs(None, "running")).ok
    t.batch_committed(BatchReport(messages=3, outcomes={("sales", "applied"): 3}), 0.1, 0)
    clock.now += STALL_AFTER_S - 1
    t.lag_refreshed(6, {("t.sales", 0): 7})
    assert decide(t.health_inputs(None, "running")).ok  # a batch committed meanwhile

    clock.now += 2
    verdict = decide(t.health_inputs(None, "running"))
    assert not verdict.checks["progress"].ok
    assert "7 messages waiting" in verdict.checks["progress"].detail


def test_retries_and_narrowed_batches_are_counted_without_failing_the_health() -> None:
    t = telemetry()
    t.partitions_assigned(6)
    assert value(t, "incentives_worker_batch_retries_total", cause="conflict") == 0
    t.batch_retried("transient")
    t.batch_retried("transient")
    t.batch_retried("conflict")
    t.batch_narrowed()
    assert value(t, "incentives_worker_batch_retries_total", cause="transient") == 2
    assert value(t, "incentives_worker_batch_retries_total", cause="conflict") == 1
    assert value(t, "incentives_worker_batches_narrowed_total") == 1
    assert decide(t.health_inputs(None, "running")).checks["batches"].ok


def test_a_failed_batch_is_counted_and_fails_the_health() -> None:
    t = telemetry()
    t.partitions_assigned(6)
    t.batch_failed(RuntimeError("deadlock"))
    assert value(t, "incentives_worker_batch_failures_total") == 1
    verdict = decide(t.health_inputs(None, "running"))
    assert not verdict.checks["batches"].ok
    assert "deadlock" in verdict.checks["batches"].detail


def test_a_worker_without_partitions_since_start_fails_after_the_limit() -> None:
    clock = FakeClock()
    t = telemetry(clock)
    clock.now += STALL_AFTER_S - 1
    assert decide(t.health_inputs(None, "running")).ok
    clock.now += 2
    assert not decide(t.health_inputs(None, "running")).checks["partitions"].ok


class Probes:
    """Injected probes: PostgreSQL answers, raises, or never answers."""

    def __init__(self, postgres: str = "ok", consumer: str = "running") -> None:
        self.mode = postgres
        self.consumer = consumer

    async def postgres(self) -> None:
        if self.mode == "raise":
            raise ConnectionRefusedError(111, "Connection refused")
        if self.mode == "hang":
            await asyncio.Event().wait()

    def consumer_state(self) -> str:
        return self.consumer


async def test_check_health_fails_when_postgres_refuses_or_does_not_answer() -> None:
    t = telemetry()
    t.partitions_assigned(6)
    assert (await check_health(t, Probes())).ok

    refused = await check_health(t, Probes("raise"))
    assert not refused.checks["postgres"].ok
    assert "Connection refused" in refused.checks["postgres"].detail

    hung = await check_health(t, Probes("hang"), postgres_timeout_s=0.05)
    assert hung.checks["postgres"].detail == "PostgreSQL did not answer within 0.05s"


async def test_the_endpoint_serves_metrics_and_a_failing_health_as_503() -> None:
    t = telemetry()
    t.partitions_assigned(6)
    sock = bind("127.0.0.1", 0)
    runner = web.AppRunner(web_app(t, Probes("raise")), access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        async with aiohttp.ClientSession() as session:
            async with session.get(url_of(sock) + "/health") as response:
                assert response.status == 503
                body = await response.json()
            async with session.get(url_of(sock) + "/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await response.text()
    finally:
        await runner.cleanup()
        sock.close()
    assert body["status"] == "failing"
    assert body["checks"]["postgres"]["ok"] is False
    assert "incentives_worker_assigned_partitions 6.0" in text


def test_a_port_in_use_names_the_setting_to_change() -> None:
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}.*INCENTIVES_METRICS_PORT"):
            bind("127.0.0.1", port)
    finally:
        taken.close()


# ---------------------------------------------------------------------------------------
# Log lines


def record(message: str, *args: Any, extra: dict[str, Any] | None = None,
           exc_info: Any = None) -> logging.LogRecord:  # fmt: skip
    logger = logging.getLogger("processors.worker.app")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, args, exc_info,
                             extra=extra)  # fmt: skip


def test_a_json_line_has_the_fixed_keys_then_the_extra_fields() -> None:
    logged = record("batch of %d", 4, extra={"messages": 4, "dead_letter_codes": {"not_json": 1}})
    logged.created = datetime(2026, 3, 2, 8, 15, 0, 123000, tzinfo=UTC).timestamp()
    line = JsonFormatter().format(logged)
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "2026-03-02T08:15:00.123Z",
        "level": "INFO",
        "logger": "processors.worker.app",
        "message": "batch of 4",
        "messages": 4,
        "dead_letter_codes": {"not_json": 1},
    }


def test_a_json_line_survives_awkward_values_and_keeps_its_fixed_keys() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        exc_info = sys.exc_info()
    line = JsonFormatter().format(
        record("odd ünïcode\u2028", exc_info=exc_info,
               extra={"level": "spoofed", "when": datetime(2026, 1, 1, tzinfo=UTC),
                      "codes": ("a", "b"), "by_pair": {("t", 0): 1}})
    )  # fmt: skip
    # Escaped non-ASCII: no line separator (U+2028 counts as one for splitlines) but the end.
    assert line.isascii() and len(line.splitlines()) == 1
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["message"] == "odd ünïcode\u2028"
    assert "ValueError: boom" in entry["exc"]
    assert entry["when"] == "2026-01-01 00:00:00+00:00"  # as text
    assert entry["codes"] == ["a", "b"]
    assert entry["by_pair"] == "{('t', 0): 1}"  # JSON has no tuple keys: its repr


def test_logging_config_swaps_the_console_handler_for_json_and_leaves_the_base_alone() -> None:
    base: dict[str, Any] = {"merge": True, "loggers": {"faust": {"level": "WARNING"}}}
    text = logging_config("text", base)
    assert text == base and text is not base
    as_json = logging_config("json", base)
    assert as_json["handlers"]["default"]["formatter"] == "json"
    assert as_json["formatters"]["json"]["()"] is JsonFormatter
    assert as_json["loggers"] == base["loggers"]
    assert base == {"merge": True, "loggers": {"faust": {"level": "WARNING"}}}
