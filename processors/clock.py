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
  topics, and the watermark is the earliest over the partition numbers. A partition number
  that has carried nothing yet holds the watermark back (nothing is known about its
  partners); ``ClosePeriod`` and ``AdvanceClock`` can then be sent by hand.
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
from collections.abc import Sequence
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

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        interval = settings.timer_interval_s
        return cls(
            auto_close=settings.auto_close,
            grace=dt.timedelta(seconds=settings.close_grace_s),
            interval=dt.timedelta(seconds=interval) if interval else None,
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


async def watermark(
    conn: asyncpg.Connection, group: str, topics: Sequence[str], partitions: int
) -> dt.datetime | None:
    """The earliest, over partition numbers, of the latest event time of any topic; None
    while some partition number has carried no event."""
    rows = await conn.fetch(
        """SELECT partition, max(event_time) AS at FROM consumer_positions
           WHERE group_id = $1 AND topic = ANY($2::text[]) AND event_time IS NOT NULL
           GROUP BY partition""",
        group,
        list(topics),
    )
    times = {r["partition"]: r["at"] for r in rows}
    if any(p not in times for p in range(partitions)):
        return None
    earliest: dt.datetime = min(times.values())
    return earliest


class Timer:
    """Sends what ``plan`` says, at most once per ``tick`` call; see the module."""

    def __init__(self, settings: Settings, topics: Sequence[str], partitions: int) -> None:
        self.group = settings.consumer_group
        self.policy = Policy.of(settings)
        self.topics = list(topics)
        self.partitions = partitions
        self.commands_topic = settings.topic(CLOCK)

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
            mark = await watermark(conn, self.group, self.topics, self.partitions)
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
