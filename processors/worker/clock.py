"""The timer: event time closes periods and advances the clock, through Kafka.

Time-driven work must land in the same place of every chain live and in a replay, so the
worker never acts on a clock of its own inside a batch. Instead, after its batches, it
looks at the event-time watermark and *sends commands*: a ``ClosePeriod`` for each month
that event time has left behind (plus ``close_grace_s``), and an ``AdvanceClock`` when event
time has moved on by ``timer_interval_s``. They travel through Kafka like any finance
command, on the worker's own ``clock`` topic (the worker principal may not write
``commands``), so they are accepted into the inbox at one place in ``arrival_seq`` and a
replay meets them exactly where the live worker did.

- Watermark: each source partition's latest event time is stored with its position
  (``consumer_positions.event_time``). The topics are co-partitioned, so partition *n* of
  every topic holds the same partners; a partition number's time is the latest over the
  topics, and the watermark is the earliest over the partition numbers that are not idle
  (``watermark_of``). A partition number that has carried nothing yet holds the watermark
  back (nothing is known about its partners) until it is idle.
- Idle partitions: a partition number is idle once none of its topics consumed a message
  for ``idle_partition_s`` of wall-clock time (or, one that never carried anything, since
  the timer started) and none has a message waiting (Kafka's end offsets equal the stored
  positions). With fewer partners than partitions, the empty ones then stop time from
  standing still. The price: a partner that falls silent for longer than that and then
  sends events older than the watermark finds their month closed; they are late events
  (see the README). ``idle_partition_s = 0`` makes no partition idle, ever.
- Idempotent: a command's id derives from what it does (``close:2026-01``,
  ``advance:<moment>``), so sending it twice, from two workers or again after a crash, is
  a counted duplicate; closing a closed month changes nothing; advancing to a moment
  already passed posts nothing.
- Survives restarts: what was sent is recorded in ``clock_state`` after the broker
  acknowledged it; a restarted worker carries on from there.
- The first month closed automatically is the month of the earliest event accepted when
  the timer first has a watermark (a backlog is closed month by month as it is consumed);
  months before it are closed by hand.
- Records are dated when their work fell due (a hold's ``release_at``, a month's end), not
  when the command was sent; a command only says "by now".
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer

from schemas.codec import encode
from schemas.commands import ALL_PARTNERS, AdvanceClock, ClosePeriod
from schemas.settings import Settings
from schemas.streams import CLOCK

log = logging.getLogger(__name__)

NAMESPACE = uuid.UUID("0b7f3c52-93a4-5d1e-8c6f-3e2a9d4b7c10")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SEND_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class ClockState:
    """What the timer has sent so far (one row of ``clock_state``)."""

    next_close: str | None = None
    advanced_to: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    auto_close: bool
    grace: dt.timedelta
    interval: dt.timedelta | None  # None: the clock is not advanced by the timer
    idle: dt.timedelta | None = None  # None: no partition is ever idle

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        interval, idle = settings.timer_interval_s, settings.idle_partition_s
        return cls(
            auto_close=settings.auto_close,
            grace=dt.timedelta(seconds=settings.close_grace_s),
            interval=dt.timedelta(seconds=interval) if interval else None,
            idle=dt.timedelta(seconds=idle) if idle else None,
        )


def plan(
    mark: dt.datetime, state: ClockState, policy: Policy, *, first: dt.datetime | None = None
) -> tuple[list[ClosePeriod | AdvanceClock], ClockState]:
    """The commands due at watermark ``mark`` and the timer's state once they are sent
    (pure). ``first`` is the earliest event time, whose month is the first to close when
    nothing was closed yet (default: the watermark's month). Commands come in time order;
    a close before an advance at the same moment."""
    mark = mark.astimezone(dt.UTC)
    commands: list[ClosePeriod | AdvanceClock] = []
    next_close = state.next_close
    if policy.auto_close:
        month = next_close or _month_of(min(mark, first or mark).astimezone(dt.UTC))
        while (closes_at := _month_end(month) + policy.grace) <= mark:
            commands.append(close_command(month, closes_at))
            month = _next_month(month)
        next_close = month
    advanced_to = state.advanced_to
    if policy.interval is not None:
        step = _floor(mark, policy.interval)
        if advanced_to is None or step > advanced_to:
            commands.append(advance_command(step))
            advanced_to = step
    commands.sort(key=lambda c: (c.occurred_at, isinstance(c, AdvanceClock)))
    return commands, ClockState(next_close, advanced_to)


def close_command(month: str, at: dt.datetime) -> ClosePeriod:
    return ClosePeriod(
        event_id=uuid.uuid5(NAMESPACE, f"close:{month}"),
        occurred_at=at,
        partner_id="*",
        period=month,
    )


def advance_command(to: dt.datetime) -> AdvanceClock:
    return AdvanceClock(
        event_id=uuid.uuid5(NAMESPACE, f"advance:{to.isoformat()}"),
        occurred_at=to,
        partner_id="*",
    )


@dataclass(frozen=True, slots=True)
class PartitionTime:
    """What the timer knows of one partition number, over the topics."""

    event_time: dt.datetime | None  # the latest event time consumed, None if none yet
    consumed_at: dt.datetime | None  # wall-clock time of the last message consumed


def idle_partitions(
    partitions: int,
    known: Mapping[int, PartitionTime],
    *,
    now: dt.datetime,
    since: dt.datetime,
    idle: dt.timedelta | None,
) -> set[int]:
    """The partition numbers that consumed nothing for ``idle`` by ``now`` (one that never
    consumed anything: since ``since``), before looking at what waits in Kafka (pure)."""
    if idle is None:
        return set()
    quiet = set()
    for p in range(partitions):
        consumed_at = known[p].consumed_at if p in known else None
        if now - (consumed_at or since) >= idle:
            quiet.add(p)
    return quiet


def watermark_of(
    partitions: int, known: Mapping[int, PartitionTime], idle: Collection[int]
) -> dt.datetime | None:
    """The earliest event time over the partition numbers that are not ``idle``; None while
    one of them has carried no event. When every partition number is idle, time goes on
    to the latest event time known (pure)."""
    holding: list[dt.datetime] = []
    for p in range(partitions):
        if p in idle:
            continue
        at = known[p].event_time if p in known else None
        if at is None:
            return None
        holding.append(at)
    if holding:
        return min(holding)
    times = [k.event_time for k in known.values() if k.event_time is not None]
    return max(times, default=None)


async def partition_times(
    conn: asyncpg.Connection, group: str, topics: Sequence[str]
) -> dict[int, PartitionTime]:
    """Per partition number, the latest event time and consumption over the topics."""
    rows = await conn.fetch(
        """SELECT partition, max(event_time) AS at, max(updated_at) AS consumed_at
           FROM consumer_positions WHERE group_id = $1 AND topic = ANY($2::text[])
           GROUP BY partition""",
        group,
        list(topics),
    )
    return {r["partition"]: PartitionTime(r["at"], r["consumed_at"]) for r in rows}


EndOffsets = Callable[[list[tuple[str, int]]], Awaitable[dict[tuple[str, int], int]]]


class Timer:
    """Sends what ``plan`` says, at most once per ``tick`` call; see the module."""

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        partitions: int,
        end_offsets: EndOffsets | None = None,
    ) -> None:
        """``end_offsets`` tells what waits in Kafka; without it no partition is idle."""
        self.group = settings.consumer_group
        self.policy = Policy.of(settings)
        self.topics = list(topics)
        self.partitions = partitions
        self.commands_topic = settings.topic(CLOCK)
        self.end_offsets = end_offsets
        self.started_at: dt.datetime | None = None  # PostgreSQL's clock at the first tick
        self.idle: set[int] = set()

    @property
    def enabled(self) -> bool:
        return self.policy.auto_close or self.policy.interval is not None

    async def tick(
        self, conn: asyncpg.Connection, producer: AIOKafkaProducer
    ) -> list[ClosePeriod | AdvanceClock]:
        """Send the commands now due; return them. The ``clock_state`` row is locked while
        sending, so two workers do not both send (if they did, it would be a duplicate)."""
        if not self.enabled:
            return []
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO clock_state (group_id) VALUES ($1) ON CONFLICT DO NOTHING",
                self.group,
            )
            row = await conn.fetchrow(
                "SELECT next_close, advanced_to FROM clock_state WHERE group_id = $1 FOR UPDATE",
                self.group,
            )
            mark = await self._watermark(conn)
            if mark is None:
                return []
            before = ClockState(row["next_close"], row["advanced_to"])
            first = None
            if self.policy.auto_close and before.next_close is None:
                first = await conn.fetchval(
                    "SELECT min(occurred_at) FROM inbox WHERE partner_id <> $1", ALL_PARTNERS
                )
            commands, after = plan(mark, before, self.policy, first=first)
            if after == before:
                return []
            for command in commands:
                await producer.send_and_wait(
                    self.commands_topic, encode(command), key=ALL_PARTNERS.encode()
                )
            await conn.execute(
                """UPDATE clock_state SET next_close = $2, advanced_to = $3, updated_at = now()
                   WHERE group_id = $1""",
                self.group,
                after.next_close,
                after.advanced_to,
            )
        for command in commands:
            what = (f"close of {command.period}" if isinstance(command, ClosePeriod)
                    else "clock advance")  # fmt: skip
            log.info("timer: sent %s as of %s (event-time watermark %s)",
                     what, command.occurred_at.isoformat(), mark.isoformat())  # fmt: skip
        return commands


    async def _watermark(self, conn: asyncpg.Connection) -> dt.datetime | None:
        known = await partition_times(conn, self.group, self.topics)
        now: dt.datetime = await conn.fetchval("SELECT now()")
        self.started_at = self.started_at or now
        quiet = idle_partitions(self.partitions, known, now=now, since=self.started_at,
                                idle=self.policy.idle if self.end_offsets else None)
        idle = await self._nothing_waiting(conn, quiet) if quiet else set()
        if idle != self.idle:
            log.info("timer: partitions %s idle (nothing consumed for %s s and nothing"
                     " waiting): they no longer hold event time back",
                     sorted(idle) or "none",
                     self.policy.idle and int(self.policy.idle.total_seconds()))
            self.idle = idle
        return watermark_of(self.partitions, known, idle)

    async def _nothing_waiting(self, conn: asyncpg.Connection, quiet: set[int]) -> set[int]:
        """Of the quiet partition numbers, those whose every topic is consumed to its end.
        If Kafka does not answer, none: the safe side is to hold time back."""
        assert self.end_offsets is not None
        tps = [(t, p) for t in self.topics for p in sorted(quiet)]
        try:
            ends = await self.end_offsets(tps)
        except Exception as exc:
            log.warning("timer: cannot tell whether partitions %s are idle: %r", sorted(quiet),
                        exc)  # fmt: skip
            return set()
        rows = await conn.fetch(
            """SELECT topic, partition, next_offset FROM consumer_positions
               WHERE group_id = $1 AND topic = ANY($2::text[]) AND partition = ANY($3::int[])""",
            self.group, self.topics, sorted(quiet),
        )  # fmt: skip
        stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        waiting = {p for (t, p), end in ends.items() if end > stored.get((t, p), 0)}
        return quiet - waiting


def _month_of(moment: dt.datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def _month_end(month: str) -> dt.datetime:
    """00:00 UTC of the first day after ``month``."""
    return dt.datetime.fromisoformat(_next_month(month) + "-01T00:00:00+00:00")


def _next_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def _floor(moment: dt.datetime, interval: dt.timedelta) -> dt.datetime:
    return EPOCH + (moment - EPOCH) // interval * interval
