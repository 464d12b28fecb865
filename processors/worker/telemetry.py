"""What a worker tells its operators: Prometheus metrics, a health verdict, JSON log lines.

Everything here is pure bookkeeping: no sockets, no database, no faust. The worker's batch
path reports to ``Telemetry`` (a few counter increments per batch, never I/O), and
``processors.worker.endpoint`` serves the figures over HTTP and refreshes the consumer lag from
a background task. Keeping the decisions here lets the unit tests drive them with made-up
figures and a fake clock.

The metrics live in a ``CollectorRegistry`` of their own rather than prometheus-client's
global default, so that two ``Telemetry`` objects in one process (tests, or several apps)
never share counters, and ``/metrics`` shows the worker's figures and nothing else.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from processors.intake.types import BatchReport, Outcome
from schemas.events import RejectCode

TopicPartition = tuple[str, int]

OUTCOMES = tuple(Outcome)
# Why a batch is attempted again (processors.writer.isolation.Failure, the retried kinds).
RETRY_CAUSES = ("transient", "conflict")
# A batch is one transaction of up to batch_size_max messages: milliseconds when healthy,
# seconds when PostgreSQL struggles; beyond a minute only "very slow" matters.
BATCH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Messages may wait this long with no batch committed, and a worker may hold no partition
# this long, before /health says "failing". Far above the lag refresh interval (seconds),
# a batch (under a second) and a rebalance (the 10 s session timeout), so that none of
# these normal pauses trips it.
STALL_AFTER_S = 60.0


class RecordTally:
    """Ledger records appended by the apply hook since the worker last took the count.

    The hook cannot return the count: its answer is already the refused commands, and
    changing what every hook returns would touch every hook for a metric. So the ledger
    hook adds to this tally (``processors.writer.ledger.hook(on_appended=tally.add)``) and
    the worker takes it after each committed batch. Batches run one after another in one
    agent, so what is taken is that batch's records; a failed batch stops the worker, so
    records of a rolled-back transaction are never taken.
    """

    def __init__(self) -> None:
        self._records = 0

    def add(self, records: int) -> None:
        assert records >= 0, records
        self._records += records

    def take(self) -> int:
        records, self._records = self._records, 0
        return records


class Telemetry:
    """The worker's metrics and the state its health verdict needs.

    Metric names (each counter is exposed with the ``_total`` suffix):

    - ``incentives_worker_messages_total{stream, outcome}``: messages consumed, by the
      outcome they had when their batch committed (applied, duplicate, dead_lettered,
      parked). A parked event released by a later batch is not counted again, so the
      ``parked`` count is "ever parked", while ``ingest_log`` shows the current outcome;
    - ``incentives_worker_redelivered_messages_total``: messages Kafka delivered again
      below the position stored in PostgreSQL, dropped without effect;
    - ``incentives_worker_ledger_records_total``: ledger records appended;
    - ``incentives_worker_dead_letters_total{code}``: dead letters written, by reject code
      (including parked events that failed a check when released);
    - ``incentives_worker_batches_total`` and ``incentives_worker_batch_failures_total``:
      batches committed, batches that failed for good (the worker stops after one);
    - ``incentives_worker_batch_retries_total{cause}``: attempts of a batch repeated after a
      ``transient`` failure (the infrastructure) or a ``conflict`` (a deadlock, a
      serialization failure), see ``processors.writer.isolation``;
    - ``incentives_worker_batches_narrowed_total``: batches that failed for a reason that
      may lie in a message and were narrowed down to it (it is then dead-lettered as
      ``processing_failed``);
    - ``incentives_worker_batch_duration_seconds``: histogram of a batch's time, from
      taking a connection to the commit;
    - ``incentives_worker_consumer_lag{topic, partition}``: per assigned partition, Kafka's
      end offset minus the position stored in PostgreSQL, refreshed every few seconds;
    - ``incentives_worker_assigned_partitions``: source partitions assigned to the worker;
    - ``incentives_worker_last_batch_timestamp_seconds``: Unix time of the last commit.
    """

    def __init__(
        self,
        streams: Iterable[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self.registry = CollectorRegistry()
        self._declare_metrics(self.registry)
        self._start_series_at_zero(streams)

        started = clock()
        self._assigned = 0
        self._last_batch_at: float | None = None
        self._progress_at = started  # last batch, assignment or start
        self._unassigned_since: float | None = started
        self._lag_total: int | None = None
        self._lag_positive_since: float | None = None
        self._lag_tps: set[TopicPartition] = set()
        self.failure: str | None = None

    def _declare_metrics(self, r: CollectorRegistry) -> None:
        """The metrics of the class's docstring, registered with ``r``."""
        self.messages = Counter(
            "incentives_worker_messages", "Messages consumed, by stream and outcome.",
            ["stream", "outcome"], registry=r,
        )  # fmt: skip
        self.redelivered = Counter(
            "incentives_worker_redelivered_messages",
            "Messages delivered again below the stored position, dropped.", registry=r,
        )  # fmt: skip
        self.ledger_records = Counter(
            "incentives_worker_ledger_records", "Ledger records appended.", registry=r
        )
        self.dead_letters = Counter(
            "incentives_worker_dead_letters", "Dead letters written, by reject code.",
            ["code"], registry=r,
        )  # fmt: skip
        self.batches = Counter("incentives_worker_batches", "Batches committed.", registry=r)
        self.batch_failures = Counter(
            "incentives_worker_batch_failures", "Batches that stopped the worker.", registry=r
        )
        self.batch_retries = Counter(
            "incentives_worker_batch_retries", "Batch attempts repeated, by cause.", ["cause"],
            registry=r,
        )  # fmt: skip
        self.batches_narrowed = Counter(
            "incentives_worker_batches_narrowed",
            "Batches narrowed down to the message that failed.", registry=r,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "incentives_worker_batch_duration_seconds", "Time of a batch, including commit.",
            buckets=BATCH_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.lag = Gauge(
            "incentives_worker_consumer_lag",
            "Kafka end offset minus the position stored in PostgreSQL.",
            ["topic", "partition"], registry=r,
        )  # fmt: skip
        self.assigned = Gauge(
            "incentives_worker_assigned_partitions", "Source partitions assigned.", registry=r
        )
        self.last_batch = Gauge(
            "incentives_worker_last_batch_timestamp_seconds",
            "Unix time of the last committed batch.", registry=r,
        )  # fmt: skip

    def _start_series_at_zero(self, streams: Iterable[str]) -> None:
        # Every series exists from the start at 0, so that rate() and alerts see the first
        # increment instead of a series appearing out of nowhere.
        for stream in streams:
            for outcome in OUTCOMES:
                self.messages.labels(stream, outcome)
        for code in RejectCode:
            if code is not RejectCode.DUPLICATE:  # a duplicate is never a dead letter
                self.dead_letters.labels(str(code))
        for cause in RETRY_CAUSES:
            self.batch_retries.labels(cause)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format, as ``GET /metrics`` serves them."""
        return generate_latest(self.registry)

    def batch_committed(self, report: BatchReport, seconds: float, records: int) -> None:
        """A batch committed after ``seconds``, having appended ``records`` ledger records."""
        for (stream, outcome), count in report.outcomes.items():
            self.messages.labels(stream, outcome).inc(count)
        self.redelivered.inc(report.below_position)
        self.ledger_records.inc(records)
        for letter in report.dead_letters:
            self.dead_letters.labels(str(letter.rejection.code)).inc()
        self.batches.inc()
        self.batch_seconds.observe(seconds)
        self.last_batch.set(self._wall_clock())
        self._last_batch_at = self._progress_at = self._clock()

    def batch_retried(self, cause: str) -> None:
        self.batch_retries.labels(cause).inc()

    def batch_narrowed(self) -> None:
        self.batches_narrowed.inc()

    def batch_failed(self, exc: BaseException) -> None:
        self.batch_failures.inc()
        self.failure = f"a batch failed and was rolled back: {exc!r}"

    def partitions_assigned(self, count: int) -> None:
        """A rebalance gave the worker ``count`` partitions. It counts as progress: lag on
        partitions just taken over is not this worker's fault yet."""
        self._progress_at = self._clock()
        self._assignment_seen(count)

    def lag_refreshed(self, assigned: int, lags: Mapping[TopicPartition, int] | None) -> None:
        """The background refresh's findings; ``lags`` is None when Kafka or PostgreSQL did
        not answer. Unknown lag removes the series instead of showing stale figures."""
        self._assignment_seen(assigned)
        for topic, partition in self._lag_tps - set(lags or {}):
            self.lag.remove(topic, str(partition))
        self._lag_tps = set(lags or {})
        if lags is None:
            self._lag_total = self._lag_positive_since = None
            return
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic, str(partition)).set(lag)
        self._lag_total = sum(lags.values())
        if self._lag_total == 0:
            self._lag_positive_since = None
        elif self._lag_positive_since is None:
            self._lag_positive_since = self._clock()

    def health_inputs(self, postgres_error: str | None, consumer_state: str) -> HealthInputs:
        now = self._clock()
        waiting_s: float | None = None
        if self._lag_total and self._lag_positive_since is not None:
            waiting_s = now - max(self._progress_at, self._lag_positive_since)
        unassigned_s = None if self._unassigned_since is None else now - self._unassigned_since
        since_batch_s = None if self._last_batch_at is None else now - self._last_batch_at
        return HealthInputs(
            postgres_error=postgres_error,
            consumer_state=consumer_state,
            assigned_partitions=self._assigned,
            unassigned_s=unassigned_s,
            since_batch_s=since_batch_s,
            lag=self._lag_total,
            waiting_s=waiting_s,
            batch_failure=self.failure,
        )

    def _assignment_seen(self, count: int) -> None:
        self._assigned = count
        self.assigned.set(count)
        if count:
            self._unassigned_since = None
        elif self._unassigned_since is None:
            self._unassigned_since = self._clock()


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """What the health verdict is decided from; the probes fill it in.

    ``unassigned_s``: how long the worker has held no partition (None while it holds some).
    ``waiting_s``: how long messages have been waiting on its partitions with no batch
    committed (None when the last lag refresh found none, or could not tell).
    """

    postgres_error: str | None
    consumer_state: str
    assigned_partitions: int
    unassigned_s: float | None
    since_batch_s: float | None
    lag: int | None
    waiting_s: float | None
    batch_failure: str | None


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Health:
    checks: dict[str, Check]
    figures: dict[str, Any]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks.values())

    @property
    def http_status(self) -> int:
        return 200 if self.ok else 503

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "failing",
            "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in self.checks.items()},
            **self.figures,
        }


def decide(inputs: HealthInputs, *, stall_after_s: float = STALL_AFTER_S) -> Health:
    """The health verdict: failing when any check fails.

    A worker without partitions for longer than ``stall_after_s`` is failing on purpose:
    it consumes nothing, which means more workers than partitions or a group that cannot
    rebalance, and either is worth an operator's look. Messages waiting is not failing by
    itself (a busy worker always has some); waiting that long with no batch committed is.
    """
    i = inputs
    checks = {
        "postgres": Check(i.postgres_error is None, i.postgres_error or "reachable"),
        "consumer": Check(i.consumer_state == "running", f"consumer {i.consumer_state}"),
        "partitions": _partitions_check(i, stall_after_s),
        "progress": _progress_check(i, stall_after_s),
        "batches": Check(i.batch_failure is None, i.batch_failure or "no batch failed"),
    }
    since = None if i.since_batch_s is None else round(i.since_batch_s, 3)
    figures = {
        "assigned_partitions": i.assigned_partitions,
        "seconds_since_last_batch": since,
        "consumer_lag": i.lag,
    }
    return Health(checks, figures)


def _partitions_check(i: HealthInputs, stall_after_s: float) -> Check:
    if i.assigned_partitions:
        return Check(True, f"{i.assigned_partitions} assigned")
    waited = i.unassigned_s or 0.0
    return Check(
        waited <= stall_after_s,
        f"none assigned for {waited:.0f}s (limit {stall_after_s:.0f}s): more workers than"
        " partitions, or the consumer group cannot rebalance",
    )


def _progress_check(i: HealthInputs, stall_after_s: float) -> Check:
    if i.waiting_s is None or i.waiting_s <= stall_after_s:
        last = "no batch yet" if i.since_batch_s is None else f"{i.since_batch_s:.1f}s ago"
        lag = "unknown" if i.lag is None else str(i.lag)
        return Check(True, f"last batch {last}; consumer lag {lag}")
    return Check(
        False,
        f"{i.lag} messages waiting for {i.waiting_s:.0f}s with no batch committed"
        f" (limit {stall_after_s:.0f}s)",
    )


def batch_fields(report: BatchReport, records: int) -> dict[str, Any]:
    """A batch's figures as ``extra=`` fields of its log line (the JSON log's keys)."""
    codes: dict[str, int] = {}
    for letter in report.dead_letters:
        code = str(letter.rejection.code)
        codes[code] = codes.get(code, 0) + 1
    return {
        "messages": report.messages,
        "applied": report.applied,
        "released": report.released,
        "duplicates": report.duplicates,
        "parked": report.parked,
        "dead_letters": len(report.dead_letters),
        "dead_letter_codes": codes,
        "records": records,
    }


# ---------------------------------------------------------------------------------------
# Log lines


# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    then every ``extra=`` field; ``exc`` holds a traceback.

    The fixed keys win over an ``extra`` field of the same name, so a collector can rely on
    them. Values JSON cannot hold are written as their ``str``; non-ASCII is escaped, so no
    line separator other than the final newline can appear in a line.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = _encodable(value)
        return json.dumps(entry, default=str)


def _encodable(value: Any) -> Any:
    """``value``, or its repr when JSON cannot hold it even as text (a dict with keys that
    are not strings, a value that contains itself): a log line must always come out."""
    try:
        json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _iso_utc(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


LOG_FORMATS = ("text", "json")


def logging_config(log_format: str, base: Mapping[str, Any]) -> dict[str, Any]:
    """The ``logging_config`` for ``faust.Worker``: ``base`` as is for "text", or with
    mode's console handler replaced by one that writes JSON lines, for "json".

    mode (faust's service library) builds a configuration with a handler named "default"
    on the root logger and merges ours into it key by key when ours has ``"merge": True``;
    so replacing "default" changes the format of every line, faust's included, while
    keeping the levels of ``base``. The handler writes to standard error, like mode's own.
    A copy is returned because mode pops "merge" out of the dict it is given.
    """
    assert log_format in LOG_FORMATS, log_format
    assert base.get("merge") is True, "mode must merge the config into its own"
    config = copy.deepcopy(dict(base))
    if log_format == "json":
        config.setdefault("formatters", {})["json"] = {"()": JsonFormatter}
        config.setdefault("handlers", {})["default"] = {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    return config
