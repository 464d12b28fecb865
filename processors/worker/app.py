"""The ledger worker: one faust agent from the five source topics into PostgreSQL.

Ordering. One agent subscribes to all five source topics at once (sales, surveys,
trainings, partners, commands). They are co-partitioned: every topic has the same number of
partitions and every message is keyed by ``partner_id``, so partition *n* of each topic holds
the same partners and faust assigns partition *n* of all five to the same worker. One
partner's events, whatever their stream, are therefore taken by one worker and processed
sequentially, batch after batch. Per partner, events are applied in the order the worker
accepted them; that order is recorded as ``inbox.arrival_seq``, and a replay follows
``arrival_seq``, not event time or offsets, so it gives the same result as live processing.
Events of a partner that is not registered yet wait in ``parked_events`` and are accepted
right after the registration (see ``processors.intake.batch``), so that order does not depend on
how the partners topic interleaves with the others. The worker refuses to start when the
topics' partition counts differ, since the guarantee would not hold.

Each batch (at most ``batch_size_max`` messages, or what arrived within ``batch_within_ms``)
is one PostgreSQL transaction (``processors.intake.batch.BatchProcessor``), which stores the
consumer positions; a batch that fails is retried or narrowed down to the message that
fails, which is dead-lettered (``processors.writer.isolation``). PostgreSQL is the truth; Kafka's
committed offsets are a copy that the worker writes every second and on assignment (never
ahead of PostgreSQL), because on assignment faust seeks to Kafka's committed offsets after
the assignment signal, which overrides a seek made in it. Whatever Kafka delivers below the
stored positions is dropped.
If a batch fails for good (retries ran out, the failure is not a message's, or too many
messages in a row failed alone) the worker stops (exit status 1) instead of consuming on,
since what it consumes next would lie past the failed batch; a restarted worker resumes
from PostgreSQL.

Periods and time-driven work: a faust timer (every second) lets ``processors.worker.clock`` send a
``ClosePeriod`` or an ``AdvanceClock`` to the clock topic once event time on every
partition has passed a month's end (plus grace) or the next clock step; they are applied
like any command. A batch holding such a command for every partner takes the writers' lock
exclusively (``processors.intake.store.hold_writers``), so its place in ``arrival_seq`` is
its place in every partner's history.

Least privilege: the worker connects to PostgreSQL as the writer role and to Kafka as the
worker principal, which may read the source topics and write only the ledger's own
(``clock``, ``deadletters``, ``refusals``); it cannot publish a finance command.

``run_worker(settings)`` is the entry point (``incentives worker``); the program engine is
plugged in through its ``apply_accepted`` hook.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import faust
from faust.types import TP

from processors.intake import consumer_positions as positions
from processors.intake.batch import (
    ApplyHook,
    BatchProcessor,
    BatchReport,
    SourceMessage,
    apply_nothing,
)
from processors.outbox import deadletters, refusals
from processors.outbox.relay import Outbox
from processors.worker.clock import Timer
from processors.worker.endpoint import Operations, bind
from processors.worker.kafka_offsets import partitions
from processors.worker.resources import APPLICATION_NAME as APPLICATION_NAME  # re-exported
from processors.worker.resources import Resources
from processors.worker.telemetry import RecordTally, Telemetry, batch_fields, logging_config
from processors.writer.isolation import Hooks, Isolating, RetryPolicy, pooled
from schemas.outcomes import REFUSALS
from schemas.settings import Settings
from schemas.streams import CLOCK, COMMANDS, PARTNERS, SALES, SURVEYS, TRAININGS

log = logging.getLogger(__name__)

SOURCE_STREAMS = (SALES, SURVEYS, TRAININGS, PARTNERS, COMMANDS, CLOCK)
# How often the worker logs its throughput.
REPORT_INTERVAL_S = 10.0
# How often, and how long at most, the PostgreSQL positions are committed to Kafka.
MIRROR_INTERVAL_S = 1.0
MIRROR_TIMEOUT_S = 10.0
# How often the timer looks whether event time has made a close or a clock advance due.
TIMER_INTERVAL_S = 1.0


class WorkerError(Exception):
    """The worker cannot start; the message says why and what to do."""


class _Throughput:
    """Counts what batches did and logs a line every REPORT_INTERVAL_S."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.since = time.monotonic()
        self.messages = self.applied = self.duplicates = self.dead = self.parked = 0

    def add(self, report: BatchReport) -> None:
        self.messages += report.messages
        self.applied += report.applied
        self.duplicates += report.duplicates
        self.dead += len(report.dead_letters)
        self.parked += report.parked
        elapsed = time.monotonic() - self.since
        if elapsed >= REPORT_INTERVAL_S:
            log.info(
                "ingested %d messages in %.1fs (%.0f/s): %d applied, %d duplicates,"
                " %d dead letters, %d parked",
                self.messages, elapsed, self.messages / elapsed, self.applied,
                self.duplicates, self.dead, self.parked,
                extra={"messages": self.messages, "seconds": round(elapsed, 3),
                       "per_second": round(self.messages / elapsed, 1),
                       "applied": self.applied, "duplicates": self.duplicates,
                       "dead_letters": self.dead, "parked": self.parked},
            )  # fmt: skip
            self._reset()


def faust_app(settings: Settings, group: str) -> faust.App:
    """A faust app as every worker of ours configures it: the worker principal, no tables,
    no web server, no leader topic, and a short session so a killed worker's partitions
    move on quickly."""
    _worker_dir(settings).mkdir(parents=True, exist_ok=True)
    auth = settings.kafka_auth("worker")
    return faust.App(
        group,
        broker=f"kafka://{settings.bootstrap}",
        broker_credentials=faust.SASLCredentials(
            username=auth["sasl_plain_username"],
            password=auth["sasl_plain_password"],
            mechanism=auth["sasl_mechanism"],
            ssl_context=auth.get("ssl_context"),
        ),
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        # A killed worker's partitions move to a live one after this, not after a minute:
        # the broker's smallest allowed session (group.min.session.timeout.ms, 6 s).
        # Heartbeats come from the consumer's own thread, so a long batch does not miss them.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=2.0,
        # faust wants a data folder even without tables; keep it out of the working directory.
        datadir=str(_worker_dir(settings) / "{conf.name}-data"),
    )


def build_app(
    settings: Settings,
    *,
    partition_count: int,
    apply_accepted: ApplyHook = apply_nothing,
    on_fatal: Callable[[BaseException], None] | None = None,
    tally: RecordTally | None = None,
    metrics_socket: socket.socket | None = None,
) -> faust.App:
    """The worker's faust app. ``on_fatal`` is called when a batch fails (after which the
    agent consumes nothing more); the entry point stops the worker then. ``tally`` is where
    ``apply_accepted`` counts the ledger records it appends; with ``metrics_socket`` the
    app serves /metrics and /health on it (``processors.worker.endpoint``)."""
    topics = {settings.topic(stream): stream for stream in SOURCE_STREAMS}
    app = faust_app(settings, settings.consumer_group)
    # acks=False: faust never commits offsets of these topics itself. It would commit the
    # offsets of every event a batch took, also of a batch that failed or was cancelled at
    # shutdown, and then resume past it. The worker commits instead (``_mirror``), only
    # positions already committed in PostgreSQL, so Kafka's offset is never ahead of them.
    source = app.topic(*topics, value_serializer="raw", key_serializer="raw", acks=False)
    stage = _Stage(settings, app, topics, apply_accepted, tally or RecordTally(), on_fatal)
    resources = stage.resources
    timer = Timer(settings, list(topics), partition_count, resources.offsets.end_offsets)
    if metrics_socket is not None:
        Operations(settings, stage.telemetry, topics, metrics_socket).attach(app)

    # faust's stubs type a receiver as taking ``signal=`` and a stream without take_events;
    # both are documented API that faust calls and provides at run time.
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def resume(sender: Any, assigned: set[Any], **_: Any) -> None:
        await stage.resume(assigned)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close(sender: Any, **_: Any) -> None:
        await resources.close()

    @app.timer(interval=TIMER_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def send_due_commands() -> None:
        # Every worker looks; the clock_state row lets one send, the others find it done.
        await _tick(resources, timer)

    @app.agent(source)
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        await stage.ingest(stream)

    return app


class _Stage:
    """What the worker's handlers share, and what they do: the batch processor behind its
    retries and isolation, the pool and producer, the metrics, and the outboxes' topics."""

    def __init__(
        self,
        settings: Settings,
        app: faust.App,
        topics: dict[str, str],
        apply_accepted: ApplyHook,
        tally: RecordTally,
        on_fatal: Callable[[BaseException], None] | None,
    ) -> None:
        self.settings = settings
        self.app = app
        self.topics = topics
        self.group = settings.consumer_group
        self.tally = tally
        self.on_fatal = on_fatal
        self.resources = resources = Resources(settings)
        self.telemetry = telemetry = Telemetry(topics.values())
        processor = BatchProcessor(
            group=self.group, streams=topics, limits=settings.limits(),
            apply_accepted=apply_accepted,
        )  # fmt: skip
        self.isolating = Isolating(
            processor,
            lambda: pooled(resources.pool),
            retry_policy(settings),
            hooks=Hooks(
                retried=lambda failure: telemetry.batch_retried(failure.value),
                narrowed=lambda: telemetry.batch_narrowed(),
                rolled_back=tally.take,  # what a rolled-back attempt appended never was
            ),
        )
        self.dead_topic = settings.topic(deadletters.DEADLETTERS)
        self.refusals_topic = settings.topic(REFUSALS)

    async def resume(self, assigned: set[Any]) -> None:
        """On assignment: resume from the positions in PostgreSQL, and send what the
        outboxes of these partitions still hold."""
        mine = [tp for tp in assigned if tp.topic in self.topics]
        pairs = [(tp.topic, tp.partition) for tp in mine]
        pool = await self.resources.pool()
        async with pool.acquire() as conn:
            stored = await positions.load(conn, self.group, pairs)
        # After this signal faust seeks every partition to its committed offset in Kafka
        # (Recovery.perform_seek), overriding any seek made here. So the positions stored in
        # PostgreSQL are committed to Kafka now, and that is where consumption resumes.
        await mirror_positions(
            self.app, {tp: stored.get((tp.topic, tp.partition), 0) for tp in mine}
        )
        self.telemetry.partitions_assigned(len(mine))
        log.info(
            "assigned %d source partitions (partition numbers %s); resuming from positions"
            " stored in PostgreSQL (%d messages consumed so far)",
            len(mine), ", ".join(map(str, sorted({tp.partition for tp in mine}))) or "none",
            sum(stored.values()),
        )  # fmt: skip
        await _publish(self.resources, deadletters.OUTBOX, self.dead_topic, pairs)
        # Refusals a worker committed but did not publish before it died go out now.
        await _publish(self.resources, refusals.OUTBOX, self.refusals_topic, pairs)

    async def ingest(self, stream: faust.StreamT[bytes]) -> None:
        """The agent: batch after batch until the stream ends or a batch fails."""
        throughput = _Throughput()
        # Positions committed in PostgreSQL but not yet to Kafka (at most once a second).
        unmirrored: dict[TP, int] = {}
        mirrored_at = time.monotonic()
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.settings.batch_size_max, within=self.settings.batch_within_ms / 1000
        ):
            batch = [
                SourceMessage(m.topic, m.partition, m.offset, m.key, m.value)
                for m in (e.message for e in events)
            ]
            started = time.monotonic()
            report = await self._process(batch)
            if report is None:
                return
            records = self.tally.take()
            self.telemetry.batch_committed(report, time.monotonic() - started, records)
            throughput.add(report)
            unmirrored.update({TP(t, p): n for (t, p), n in report.positions.items()})
            if time.monotonic() - mirrored_at >= MIRROR_INTERVAL_S:
                await mirror_positions(self.app, unmirrored)
                unmirrored.clear()
                mirrored_at = time.monotonic()
            await self._announce(report, records)

    async def _process(self, batch: list[SourceMessage]) -> BatchReport | None:
        """The batch's report, or None when it failed for good (``on_fatal`` is told)."""
        try:
            return await self.isolating.process(batch)
        except Exception as exc:
            self.telemetry.batch_failed(exc)
            first = batch[0]
            log.critical(
                "batch of %d messages from %s/%s@%s failed and was rolled back; the"
                " worker stops so that it resumes from the positions in PostgreSQL: %r",
                len(batch), first.topic, first.partition, first.offset, exc,
                exc_info=True,
            )  # fmt: skip
            if self.on_fatal is not None:
                self.on_fatal(exc)
            return None

    async def _announce(self, report: BatchReport, records: int) -> None:
        """Log a batch that did more than apply, and send its dead letters and refusals."""
        if report.dead_letters or report.parked or report.released:
            log.info(
                "batch of %d: %d applied (%d released from parking), %d duplicates,"
                " %d parked, dead letters %s",
                report.messages, report.applied, report.released, report.duplicates,
                report.parked, _codes(report), extra=batch_fields(report, records),
            )  # fmt: skip
        if report.dead_letters:
            sources = {(d.topic, d.partition) for d in report.dead_letters}
            await _publish(self.resources, deadletters.OUTBOX, self.dead_topic, sources)
        if report.refused:
            sources = {(a.topic, a.partition) for a in report.refused}
            await _publish(self.resources, refusals.OUTBOX, self.refusals_topic, sources)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        transient_attempts_max=settings.batch_attempts_max,
        conflict_attempts_max=settings.conflict_attempts_max,
        backoff_max_s=settings.retry_backoff_max_ms / 1000,
        poison_run_max=settings.poison_run_max,
    )


async def mirror_positions(app: faust.App, offsets: dict[TP, int]) -> None:
    """Commit positions already stored in PostgreSQL to Kafka as the group's offsets.

    Kafka's offsets are only where a worker starts reading after an assignment: anything
    below the PostgreSQL positions is dropped by the batch, so an offset that is behind
    (this commit failed, or a worker died before it) costs re-reading, never correctness.
    """
    if not offsets:
        return
    try:
        # faust's consumer runs aiokafka on its own thread; _commit hands the call over to it.
        commit = app.consumer._commit(offsets)  # type: ignore[attr-defined]
        await asyncio.wait_for(commit, timeout=MIRROR_TIMEOUT_S)
    except Exception as exc:
        log.warning("could not commit positions to Kafka (%r); they stay in PostgreSQL", exc)


async def _tick(resources: Resources, timer: Timer) -> None:
    # The timer's state is in PostgreSQL; a failed tick is retried after the next batch.
    try:
        pool = await resources.pool()
        async with pool.acquire() as conn:
            await timer.tick(conn, await resources.producer())
    except Exception as exc:
        log.warning("timer: could not send due commands yet: %r", exc)


def _codes(report: BatchReport) -> dict[str, int]:
    codes: dict[str, int] = {}
    for letter in report.dead_letters:
        code = str(letter.rejection.code)
        codes[code] = codes.get(code, 0) + 1
    return codes


def _worker_dir(settings: Settings) -> Path:
    return Path(settings.stack_dir) / "worker"


async def _publish(resources: Resources, outbox: Outbox, topic: str, sources: Any) -> None:
    # The rows are committed; failing to send them now only delays them until the next
    # batch that writes such rows from these partitions, or the next assignment.
    try:
        pool = await resources.pool()
        async with pool.acquire() as conn:
            await outbox.publish_pending(conn, await resources.producer(), topic, sources)
    except Exception as exc:
        log.error("%s not yet published to %s: %r", outbox.what, topic, exc)


async def check_ready(settings: Settings) -> int:
    """Refuse to start on a database without the ingestion tables or with source topics
    that are missing or not co-partitioned; return their number of partitions."""
    conn = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        missing = await conn.fetchval("SELECT to_regclass('ingest_log') IS NULL")
    finally:
        await conn.close()
    if missing:
        raise WorkerError(
            f"the database {settings.pg_database} has no ingestion tables (migration 0003):"
            " run `incentives init` first"
        )
    names = [settings.topic(s) for s in SOURCE_STREAMS]
    counts: dict[str, int] = dict.fromkeys(names, 0)
    for tp in await partitions(settings, "worker", names):
        counts[tp.topic] = counts.get(tp.topic, 0) + 1
    absent = [t for t, n in counts.items() if n == 0]
    if absent:
        raise WorkerError(f"topics missing: {', '.join(absent)}; run `incentives init` first")
    if len(set(counts.values())) != 1:
        shown = ", ".join(f"{t}: {n}" for t, n in counts.items())
        raise WorkerError(
            "the source topics must have the same number of partitions, so that one partner's"
            f" events on every topic go to one worker; they have {shown}"
        )
    return next(iter(counts.values()))


# Our lines at INFO (assignments, throughput, batches with dead letters); faust's own and its
# libraries' only from WARNING, since at INFO they print every step of every rebalance.
_LOGGING: dict[str, Any] = {
    "merge": True,
    "loggers": {name: {"level": "WARNING"} for name in ("faust", "mode", "aiokafka")},
}


def run_worker(
    settings: Settings,
    *,
    apply_accepted: ApplyHook = apply_nothing,
    tally: RecordTally | None = None,
) -> int:
    """Run a worker until it is stopped (SIGTERM/SIGINT: exit 0) or a batch fails (exit 1).
    ``tally`` is where ``apply_accepted`` counts the ledger records it appends."""
    # faust runs on the thread's current loop; the start-up checks use the same one.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    partition_count = loop.run_until_complete(check_ready(settings))
    failures: list[BaseException] = []

    def fatal(exc: BaseException) -> None:
        failures.append(exc)
        # The worker's own SIGTERM handler stops it cleanly (consumer, pool, producer).
        os.kill(os.getpid(), signal.SIGTERM)

    # Bound now, so that a port in use stops the worker before it joins the group.
    metrics_socket = bind(settings.metrics_host, settings.metrics_port)
    app = build_app(
        settings, partition_count=partition_count, apply_accepted=apply_accepted, on_fatal=fatal,
        tally=tally, metrics_socket=metrics_socket,
    )  # fmt: skip
    worker = faust.Worker(
        app, loop=loop, loglevel="INFO", quiet=True,
        logging_config=logging_config(settings.log_format, _LOGGING),
    )  # fmt: skip
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    else:  # pragma: no cover - execute_from_commandline always raises SystemExit
        status = 0
    finally:
        metrics_socket.close()
    return 1 if failures else status
