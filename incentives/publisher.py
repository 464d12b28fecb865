"""Publishing for upstream teams: a small Python API and the upload of JSONL or CSV files.

Python::

    async with Publisher(settings) as publisher:
        await publisher.publish(sale)          # validated, keyed by partner_id
    # leaving the block waited for the broker's acknowledgement of every message

Files (``incentives publish FILE``): every line is validated by the same decoder the worker
uses (``schemas.files``), rejected lines are reported with their line number and not sent,
the rest is sent and acknowledged by the broker (acks=all, idempotent producer, so a retry
inside the producer never doubles a message). Re-publishing a file doubles nothing: event
ids are in the file or derived from the natural key, and the worker counts a second copy
as a duplicate.

Each message is sent as the principal that may write its topic (``schemas.principals``):
events as ``upstream``, commands as ``finance``. A producer per principal is started when
its first message comes, so an upstream system holding only the upstream credentials
publishes its events without ever needing finance's, and a file of commands fails,
naming the setting, where finance's credentials are not given.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.codec import Rejection, decode, encode
from schemas.files import Item, Outgoing, format_error, iter_jsonl
from schemas.files_csv import iter_csv
from schemas.principals import publisher_of
from schemas.settings import Principal, Settings
from schemas.streams import Message, stream_of

FORMATS = ("jsonl", "csv")
# Messages sent but not yet acknowledged; bounds memory on a large file.
MAX_IN_FLIGHT = 10_000
# Files at least this large (and standard input) get a progress line on stderr.
PROGRESS_MIN_BYTES = 1_000_000
PROGRESS_INTERVAL_S = 1.0


class PublishError(Exception):
    """Publishing could not go on: the file is unreadable, or the broker refused."""


class InvalidMessage(PublishError):
    """``Publisher.publish`` was given a message that the worker would reject."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(str(rejection))
        self.rejection = rejection


@dataclass(frozen=True, slots=True)
class Summary:
    """What a publication did: messages acknowledged, lines rejected, time taken."""

    sent: int
    rejected: int
    seconds: float

    @property
    def rate(self) -> float:
        """Messages acknowledged per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.sent} sent, {self.rejected} rejected in {self.seconds:.2f} s"
            f" ({self.rate:.0f} messages/s)"
        )


class Publisher:
    """An idempotent producer for the source topics; use as ``async with``.

    Leaving the block waits until the broker acknowledged every message sent in it
    (``flush``); an unacknowledged message raises ``PublishError``.
    """

    def __init__(self, settings: Settings, *, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        assert max_in_flight > 0
        self._settings = settings
        self._limits = settings.limits()
        self._max_in_flight = max_in_flight
        self._in_flight: list[asyncio.Future[Any]] = []
        self.acknowledged = 0
        self._producers: dict[Principal, AIOKafkaProducer] = {}

    async def __aenter__(self) -> Publisher:
        return self

    async def _producer(self, principal: Principal) -> AIOKafkaProducer:
        producer = self._producers.get(principal)
        if producer is not None:
            return producer
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            **self._settings.kafka_auth(principal),
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise PublishError(
                f"cannot reach Kafka at {self._settings.bootstrap} as {principal}"
                f" ({self._settings.kafka_user(principal)}): {exc}"
            ) from exc
        self._producers[principal] = producer
        return producer

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                await self.flush()
        finally:
            for producer in self._producers.values():
                await producer.stop()

    async def publish(self, message: Message) -> None:
        """Validate ``message`` as the worker will (size, timestamps, every rule) and send it
        to its stream's topic, keyed by its partner id."""
        result = decode(
            stream_of(type(message)), encode(message), now=datetime.now(UTC), limits=self._limits
        )
        if isinstance(result, Rejection):
            raise InvalidMessage(result)
        await self.send(
            Outgoing(
                stream=stream_of(type(result)),
                key=result.partner_id,
                event_id=result.event_id,
                value=encode(result),
            )
        )

    async def send(self, outgoing: Outgoing) -> None:
        """Send an already validated message (``schemas.files`` yields them)."""
        producer = await self._producer(publisher_of(outgoing.stream))
        future = await producer.send(
            self._settings.topic(outgoing.stream),
            value=outgoing.value,
            key=outgoing.key.encode(),
        )
        self._in_flight.append(future)
        if len(self._in_flight) >= self._max_in_flight:
            await self.flush()

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet acknowledged."""
        return len(self._in_flight)

    async def flush(self) -> None:
        """Wait until the broker acknowledged everything sent so far."""
        pending, self._in_flight = self._in_flight, []
        results = await asyncio.gather(*pending, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        self.acknowledged += len(results) - len(failed)
        if failed:
            raise PublishError(
                f"the broker did not acknowledge {len(failed)} of {len(results)} messages:"
                f" {failed[0]!r}"
            )


def format_of(source: str, fmt: str | None) -> str:
    """The format named, else the file's suffix (``.csv``), else JSONL."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise PublishError(f"unknown format {fmt!r}; formats are {', '.join(FORMATS)}")
        return fmt
    return "csv" if source != "-" and Path(source).suffix.lower() == ".csv" else "jsonl"


async def publish_file(
    source: str | Path,
    settings: Settings,
    *,
    fmt: str | None = None,
    message_type: str | None = None,
    errors: TextIO | None = None,
    progress: TextIO | None = None,
) -> Summary:
    """Validate and publish a JSONL or CSV file (``"-"``: standard input).

    Each rejected line is printed to ``errors`` (default stderr) as ``line N: path: message
    (code)`` and not sent. A progress line goes to ``progress`` (default stderr) for files
    of PROGRESS_MIN_BYTES or more and for standard input. Returns once the broker
    acknowledged every message sent.
    """
    errors = errors if errors is not None else sys.stderr
    progress_out = progress if progress is not None else sys.stderr
    name = str(source)
    kind = format_of(name, fmt)
    started = time.monotonic()
    rejected = line_no = 0
    with ExitStack() as stack:
        stream = _open(name, stack)
        meter = _Progress(progress_out, name) if _is_large(name) else None
        items = _items(stream, kind, settings, message_type)
        async with Publisher(settings) as publisher:
            for line_no, item in items:
                if isinstance(item, Rejection):
                    rejected += 1
                    if meter is not None:
                        meter.clear()
                    print(format_error(line_no, item), file=errors, flush=True)
                else:
                    await publisher.send(item)
                if meter is not None:
                    meter.tick(line_no, publisher.acknowledged + publisher.in_flight, rejected)
            await publisher.flush()
        if meter is not None:
            meter.tick(line_no, publisher.acknowledged, rejected, final=True)
    return Summary(publisher.acknowledged, rejected, time.monotonic() - started)


def _open(name: str, stack: ExitStack) -> IO[bytes]:
    if name == "-":
        return sys.stdin.buffer
    try:
        return stack.enter_context(open(name, "rb"))
    except OSError as exc:
        raise PublishError(f"cannot read {name}: {exc.strerror or exc}") from exc


def _is_large(name: str) -> bool:
    if name == "-":
        return True
    try:
        return Path(name).stat().st_size >= PROGRESS_MIN_BYTES
    except OSError:
        return False


def _items(
    stream: IO[bytes], kind: str, settings: Settings, message_type: str | None
) -> Iterator[Item]:
    now, limits = datetime.now(UTC), settings.limits()
    if kind == "csv":
        return iter_csv(stream, now=now, limits=limits, message_type=message_type)
    if message_type is not None:
        raise PublishError("--type is for CSV files; a JSONL line names its own type")
    return iter_jsonl(stream, now=now, limits=limits)


class _Progress:
    """One line on stderr, rewritten in place on a terminal, else printed now and then;
    the final state is always shown."""

    def __init__(self, out: TextIO, name: str) -> None:
        self._out = out
        self._name = name
        self._tty = out.isatty()
        self._started = self._last = time.monotonic()
        self._shown = False

    def tick(self, line_no: int, sent: int, rejected: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < PROGRESS_INTERVAL_S:
            return
        self._last = now
        rate = sent / max(now - self._started, 1e-9)
        text = f"{self._name}: line {line_no}, {sent} sent, {rejected} rejected, {rate:.0f}/s"
        if self._tty:
            self._out.write("\r" + text + ("\n" if final else ""))
            self._shown = not final
        else:
            self._out.write(text + "\n")
        self._out.flush()

    def clear(self) -> None:
        """End the in-place line so an error message starts on its own line."""
        if self._shown:
            self._out.write("\n")
            self._shown = False
