"""A batch that fails: retried when the infrastructure failed, narrowed down when a
message may be the cause, so that no message can stop a partition.

``Isolating.process(messages)`` runs ``processors.intake.batch.BatchProcessor`` on a batch, each
attempt in a transaction of its own on a connection of its own, and tells failures apart
(``classify``):

- **transient** (the infrastructure: a lost connection or ``OSError``; SQLSTATE classes 08
  connection, 53 insufficient resources, 57 operator intervention such as an admin
  shutdown or "cannot connect now", 58 system error; 25006 a read-only standby): the whole
  batch again, after an exponential backoff with full jitter, at most
  ``transient_attempts_max`` times; then the worker stops (exit 1) for an orchestrator to
  restart it. Never dead-lettered.
- **conflict** (SQLSTATE class 40: serialization failure 40001, deadlock 40P01; and
  ``ChainConflict``, another writer moving a chain first): the whole batch again after a
  short jittered pause, up to ``conflict_attempts_max`` times, which a real conflict never
  reaches. Never dead-lettered; a deadlock is never fatal.
- **systemic** (the deployment or the code, not a message: SQLSTATE 42 undefined table or
  missing privilege, 28 authentication, 3D/3F missing database or schema, 0A, 55, XX):
  the worker stops at once, as every message would fail the same way.
- **suspect** (anything else: data exceptions 22xxx, integrity 23xxx, a trigger's error,
  any Python exception of decoding or the engine such as ``RecursionError``): the cause may
  lie in one message. The batch is split in halves, each tried in its own transaction, the
  first before the second, recursively, so every message that applies does, in its
  original order; a message that fails alone is dead-lettered with ``processing_failed``,
  the exception's type, SQLSTATE and words in the dead letter's message.

A code bug that fails every message must not silently dead-letter a partition: before it
dead-letters a message, the worker looks at the ingest log, and if the ``poison_run_max``
messages before it on its partition were all dead-lettered as ``processing_failed``, it
stops instead (exit 1). A restart meets the same message and stops again, so at most
``poison_run_max`` messages in a row are lost to a bug, and they can be sent again from the
dead-letter topic once it is fixed.

Each attempt that commits is final: a sub-batch's position and outcomes are stored with it,
so a worker killed while narrowing down resumes after what committed. A transaction whose
COMMIT was lost with the connection is retried like any transient failure; if it had
committed, the retry finds its messages below the stored positions and drops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from ledger.store.errors import ChainConflict
from processors.intake import store
from processors.intake.batch import BatchProcessor, BatchReport, SourceMessage
from processors.intake.types import Coordinates
from schemas.codec import RejectCode, Rejection
from schemas.screening import escape_controls

log = logging.getLogger(__name__)

Connect = Callable[[], contextlib.AbstractAsyncContextManager[asyncpg.Connection]]

# The longest text of an exception kept in a dead letter.
ERROR_TEXT_MAX = 1_000


class Failure(enum.Enum):
    TRANSIENT = "transient"
    CONFLICT = "conflict"
    SYSTEMIC = "systemic"
    SUSPECT = "suspect"


_TRANSIENT_CLASSES = frozenset({"08", "53", "57", "58"})
_CONFLICT_CLASSES = frozenset({"40"})
_SYSTEMIC_CLASSES = frozenset({"0A", "25", "28", "3D", "3F", "42", "55", "XX"})
_READ_ONLY_TRANSACTION = "25006"  # a standby after a failover: it will be a primary again


def classify(exc: BaseException) -> Failure:
    """What kind of failure ``exc`` is; see the module."""
    if isinstance(exc, ChainConflict):
        return Failure.CONFLICT
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        if sqlstate == _READ_ONLY_TRANSACTION or sqlstate[:2] in _TRANSIENT_CLASSES:
            return Failure.TRANSIENT
        if sqlstate[:2] in _CONFLICT_CLASSES:
            return Failure.CONFLICT
        if sqlstate[:2] in _SYSTEMIC_CLASSES:
            return Failure.SYSTEMIC
        return Failure.SUSPECT
    if isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, ValueError):
        # The connection was closed or released under us; a ValueError among them is the
        # driver refusing a value (an int beyond bigint), which a message may carry.
        return Failure.TRANSIENT
    if isinstance(exc, asyncpg.exceptions.InternalClientError | OSError):
        return Failure.TRANSIENT
    return Failure.SUSPECT


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds of the retries; built from settings by the worker."""

    transient_attempts_max: int = 10
    conflict_attempts_max: int = 50
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    conflict_backoff_max_s: float = 1.0
    poison_run_max: int = 5

    def attempts_max(self, failure: Failure) -> int:
        return self.conflict_attempts_max if failure is Failure.CONFLICT else (
            self.transient_attempts_max
        )

    def delay_s(self, failure: Failure, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform up to a cap that doubles with each attempt (1, 2, ...)."""
        cap = self.conflict_backoff_max_s if failure is Failure.CONFLICT else self.backoff_max_s
        initial = self.backoff_initial_s / 4 if failure is Failure.CONFLICT else (
            self.backoff_initial_s
        )
        return rng.uniform(0, min(cap, initial * 2 ** min(attempt - 1, 30)))


class WorkerStop(Exception):
    """The worker must stop: the failure is not one a message caused, or retries ran out.
    The message says why; ``__cause__`` is the failure."""


class _Suspect(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(repr(cause))
        self.cause = cause


@dataclass(slots=True)
class Hooks:
    """What the worker learns about retries (metrics); all optional."""

    retried: Callable[[Failure], None] = lambda failure: None
    narrowed: Callable[[], None] = lambda: None
    # An attempt rolled back: what it counted (the ledger records of RecordTally) is void.
    rolled_back: Callable[[], object] = lambda: None


class Isolating:
    """Runs batches through ``processor`` with the retries and isolation of the module."""

    def __init__(
        self,
        processor: BatchProcessor,
        connect: Connect,
        policy: RetryPolicy = RetryPolicy(),
        *,
        hooks: Hooks | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.processor = processor
        self.connect = connect
        self.policy = policy
        self.hooks = hooks or Hooks()
        self.sleep = sleep
        self.rng = rng or random.Random()

    async def process(self, messages: Sequence[SourceMessage]) -> BatchReport:
        """Process the batch; every message ends applied, duplicate, parked or dead-lettered
        (its own code, or ``processing_failed``) unless ``WorkerStop`` is raised."""
        try:
            return await self._attempt(messages)
        except _Suspect as failed:
            first = messages[0]
            log.warning(
                "batch of %d messages from %s/%s@%s failed (%s); narrowing it down to the"
                " message that fails, applying the others in order",
                len(messages), first.topic, first.partition, first.offset, _describe(failed.cause),
            )  # fmt: skip
            self.hooks.narrowed()
            reports: list[BatchReport] = []
            await self._narrow(messages, failed.cause, reports)
            return merge(reports)

    async def _narrow(
        self, messages: Sequence[SourceMessage], cause: Exception, reports: list[BatchReport]
    ) -> None:
        """``messages`` failed together with ``cause``: try each half on its own."""
        if len(messages) == 1:
            reports.append(await self._dead_letter(messages[0], cause))
            return
        half = len(messages) // 2
        for part in (messages[:half], messages[half:]):
            try:
                reports.append(await self._attempt(part))
            except _Suspect as failed:
                await self._narrow(part, failed.cause, reports)

    async def _dead_letter(self, message: SourceMessage, cause: Exception) -> BatchReport:
        where = f"{message.topic}/{message.partition}@{message.offset}"
        poisoned = await self._parked_poison(message)
        if poisoned is not None:
            log.error("%s releases parked events of which %d fail on their own; they are"
                      " dead-lettered as processing_failed: %s", where, len(poisoned),
                      "; ".join(r.message for r in poisoned.values()))  # fmt: skip
        else:
            await self._refuse_a_run_of_poison(message, cause)
            rejection = processing_failed(cause)
            log.error("%s failed on its own and is dead-lettered as processing_failed: %s",
                      where, rejection.message)  # fmt: skip
            poisoned = {(message.topic, message.partition, message.offset): rejection}
        try:
            return await self._attempt([message], poisoned)
        except _Suspect as failed:
            raise WorkerStop(
                f"{where} could not even be dead-lettered: {_describe(failed.cause)}"
            ) from failed.cause

    async def _parked_poison(self, message: SourceMessage) -> dict[Coordinates, Rejection] | None:
        """For a registration that fails on its own while it releases its partner's parked
        events: those that fail when released (trials, rolled back, narrow them down one by
        one), or None when the registration fails even releasing none of them."""
        partner_id = self.processor.registers(message)
        if partner_id is None:
            return None
        async with self.connect() as conn:
            parked = [(r.topic, r.partition, r.offset)
                      for r in await store.parked_of(conn, [partner_id])]  # fmt: skip
        if not parked:
            return None
        placeholder = processing_failed(Exception("not released in this trial"))
        if await self._trial(message, dict.fromkeys(parked, placeholder)) is not None:
            return None
        bad: dict[Coordinates, Rejection] = {}
        known_good = 0  # releasing parked[:known_good] (without the bad ones) applies
        for _ in range(len(parked) + 1):  # each round finds one more that fails, or ends
            cause = await self._trial(message, bad)
            if cause is None:
                return bad
            failing = len(parked)  # releasing parked[:failing] fails with `cause`
            while failing - known_good > 1:
                middle = (known_good + failing) // 2
                rest = dict.fromkeys(parked[middle:], placeholder)
                trial = await self._trial(message, {**rest, **bad})
                if trial is None:
                    known_good = middle
                else:
                    failing, cause = middle, trial
            if parked[failing - 1] in bad:
                break  # the trials disagree with each other: blame the registration
            bad[parked[failing - 1]] = processing_failed(cause)
            known_good = failing
        return None

    async def _trial(
        self, message: SourceMessage, poisoned: Mapping[Coordinates, Rejection]
    ) -> Exception | None:
        """What processing ``message`` with ``poisoned`` fails with, rolled back always."""
        try:
            await self._attempt([message], poisoned, trial=True)
        except _Suspect as failed:
            return failed.cause
        return None

    async def _refuse_a_run_of_poison(self, message: SourceMessage, cause: Exception) -> None:
        """Stop rather than dead-letter the next of a run of processing failures."""
        run_max = self.policy.poison_run_max
        async with self.connect() as conn:
            before = await store.outcomes_before(
                conn, message.topic, message.partition, message.offset, run_max
            )
        failed = [code for outcome, code in before if code == RejectCode.PROCESSING_FAILED]
        if len(before) == run_max and len(failed) == run_max:
            raise WorkerStop(
                f"{message.topic}/{message.partition}@{message.offset} failed on its own"
                f" ({_describe(cause)}), and so did the {run_max} messages before it on its"
                " partition: this looks like a fault of the worker, not of the messages, so"
                " it stops instead of dead-lettering more (poison_run_max)"
            ) from cause

    async def _attempt(
        self,
        messages: Sequence[SourceMessage],
        poisoned: Mapping[Coordinates, Rejection] | None = None,
        *,
        trial: bool = False,
    ) -> BatchReport:
        """One transaction, retried while the failure is transient or a conflict; raises
        ``_Suspect`` when a message may be the cause, ``WorkerStop`` when retries ran out
        or the failure is systemic. A ``trial`` is rolled back whatever happens."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.connect() as conn:
                    if not trial:
                        return await self.processor.process(conn, messages, poisoned=poisoned)
                    rollback = conn.transaction()
                    await rollback.start()
                    try:
                        return await self.processor.process(conn, messages, poisoned=poisoned)
                    finally:
                        self.hooks.rolled_back()
                        await rollback.rollback()
            except Exception as exc:
                self.hooks.rolled_back()
                failure = classify(exc)
                if failure is Failure.SUSPECT:
                    raise _Suspect(exc) from exc
                if failure is Failure.SYSTEMIC:
                    raise WorkerStop(f"{_describe(exc)}: not a fault of a message") from exc
                if attempt >= self.policy.attempts_max(failure):
                    raise WorkerStop(
                        f"{_describe(exc)}: still failing after {attempt} attempts"
                    ) from exc
                delay = self.policy.delay_s(failure, attempt, self.rng)
                log.warning(
                    "batch of %d messages failed (%s, %s); attempt %d of at most %d in %.2f s",
                    len(messages), failure.value, _describe(exc), attempt + 1,
                    self.policy.attempts_max(failure), delay,
                )  # fmt: skip
                self.hooks.retried(failure)
                await self.sleep(delay)


def processing_failed(cause: Exception) -> Rejection:
    return Rejection(
        code=RejectCode.PROCESSING_FAILED,
        path="$",
        message=f"applying this message failed: {_describe(cause)}"[:ERROR_TEXT_MAX],
    )


def _describe(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None) if isinstance(exc, asyncpg.PostgresError) else None
    kind = type(exc).__name__ + (f" (SQLSTATE {sqlstate})" if sqlstate else "")
    return escape_controls(f"{kind}: {exc}" if str(exc) else kind)


def merge(reports: Sequence[BatchReport]) -> BatchReport:
    """One report for the sub-batches of a batch, in their order."""
    total = BatchReport()
    for r in reports:
        total.messages += r.messages
        total.below_position += r.below_position
        total.applied += r.applied
        total.released += r.released
        total.duplicates += r.duplicates
        total.parked += r.parked
        total.dead_letters.extend(r.dead_letters)
        total.positions.update(r.positions)
        total.refused.extend(r.refused)
        for key, count in r.outcomes.items():
            total.outcomes[key] = total.outcomes.get(key, 0) + count
    return total


@contextlib.asynccontextmanager
async def pooled(pool: Callable[[], Awaitable[asyncpg.Pool]]) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the pool ``pool()`` gives, for one attempt."""
    async with (await pool()).acquire() as conn:
        yield conn
