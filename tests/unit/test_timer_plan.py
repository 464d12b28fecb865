"""The timer's plan: which closes and clock advances a watermark makes due (pure)."""

from __future__ import annotations

import datetime as dt

from processors.worker.clock import (
    ClockState,
    PartitionTime,
    Policy,
    idle_partitions,
    plan,
    watermark_of,
)
from schemas.commands import AdvanceClock, ClosePeriod

DAY = dt.timedelta(days=1)
POLICY = Policy(auto_close=True, grace=2 * DAY, interval=DAY)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def closes(commands: list[ClosePeriod | AdvanceClock]) -> list[str]:
    return [c.period for c in commands if isinstance(c, ClosePeriod)]


def test_a_month_closes_once_event_time_passes_its_end_plus_grace() -> None:
    first, state = plan(at("2026-01-20T10:00"), ClockState(), POLICY)
    assert closes(first) == [] and state.next_close == "2026-01"

    early, _ = plan(at("2026-02-02T23:59:59"), state, POLICY)
    assert closes(early) == []

    due, after = plan(at("2026-02-03T00:00"), state, POLICY)
    [close] = [c for c in due if isinstance(c, ClosePeriod)]
    assert close.period == "2026-01" and close.partner_id == "*"
    assert close.occurred_at == at("2026-02-03T00:00")  # the month's end plus the grace
    assert after.next_close == "2026-02"

    again, _ = plan(at("2026-02-03T00:00"), after, POLICY)
    assert closes(again) == []


def test_a_jump_in_event_time_closes_every_month_left_behind_in_order() -> None:
    commands, state = plan(at("2026-05-10T00:00"), ClockState(next_close="2026-01"), POLICY)
    assert closes(commands) == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert state.next_close == "2026-05"
    assert [c.occurred_at for c in commands] == sorted(c.occurred_at for c in commands)


def test_december_closes_into_the_next_year() -> None:
    commands, state = plan(at("2027-01-03T00:00"), ClockState(next_close="2026-12"), POLICY)
    assert closes(commands) == ["2026-12"] and state.next_close == "2027-01"


def test_the_clock_advances_in_whole_steps_and_never_back() -> None:
    commands, state = plan(at("2026-01-20T10:30"), ClockState(), POLICY)
    [advance] = [c for c in commands if isinstance(c, AdvanceClock)]
    assert advance.occurred_at == at("2026-01-20T00:00") == state.advanced_to

    same_step, kept = plan(at("2026-01-20T23:00"), state, POLICY)
    assert same_step == [] and kept == state

    # A long gap is one advance to the latest step: due() posts everything up to it.
    later, moved = plan(at("2026-01-25T01:00"), state, POLICY)
    assert [c.occurred_at for c in later] == [at("2026-01-25T00:00")]
    assert moved.advanced_to == at("2026-01-25T00:00")


def test_ids_derive_from_what_is_due_so_a_resend_is_a_duplicate() -> None:
    a, _ = plan(at("2026-02-05T07:00"), ClockState(next_close="2026-01"), POLICY)
    b, _ = plan(at("2026-02-05T18:00"), ClockState(next_close="2026-01"), POLICY)
    assert [c.event_id for c in a] == [c.event_id for c in b]
    assert len({c.event_id for c in a}) == len(a) == 2


def test_a_close_comes_before_an_advance_at_the_same_moment() -> None:
    commands, _ = plan(at("2026-02-03T00:00"), ClockState(next_close="2026-01"), POLICY)
    assert [type(c) for c in commands] == [ClosePeriod, AdvanceClock]


def test_switched_off_parts_send_nothing() -> None:
    off = Policy(auto_close=False, grace=2 * DAY, interval=None)
    assert plan(at("2026-09-01T00:00"), ClockState(next_close="2026-01"), off)[0] == []
    only_close = Policy(auto_close=True, grace=DAY, interval=None)
    commands, state = plan(at("2026-02-02T00:00"), ClockState(next_close="2026-01"), only_close)
    assert closes(commands) == ["2026-01"] and state.advanced_to is None


def test_a_backlog_closes_from_the_month_of_its_earliest_event() -> None:
    """A worker that first sees a watermark in March, over a backlog from January, closes
    January and February in order."""
    commands, state = plan(at("2026-03-10T00:00"), ClockState(), POLICY, first=at("2026-01-02"))
    assert closes(commands) == ["2026-01", "2026-02"] and state.next_close == "2026-03"


# --- the watermark over partitions, some of them idle ------------------------------------------

NOW = at("2026-03-01T12:00")
IDLE = dt.timedelta(seconds=600)


def known(**parts: tuple[str | None, str | None]) -> dict[int, PartitionTime]:
    """p0=(event time, consumed at), ..."""
    return {int(k[1:]): PartitionTime(at(e) if e else None, at(c) if c else None)
            for k, (e, c) in parts.items()}  # fmt: skip


def test_the_watermark_is_the_earliest_event_time_of_the_partitions_not_idle() -> None:
    times = known(p0=("2026-02-10T00:00", "2026-03-01T11:59"),
                  p1=("2026-01-20T00:00", "2026-03-01T11:00"),
                  p2=("2026-02-05T00:00", "2026-03-01T11:58"))  # fmt: skip
    assert watermark_of(3, times, set()) == at("2026-01-20T00:00")
    quiet = idle_partitions(3, times, now=NOW, since=at("2026-03-01T00:00"), idle=IDLE)
    assert quiet == {1}  # nothing consumed for an hour
    assert watermark_of(3, times, quiet) == at("2026-02-05T00:00")


def test_partitions_that_never_carried_anything_hold_time_back_until_idle() -> None:
    """Three partners on six partitions: the three empty ones hold the watermark back
    (nothing is known of their partners) until they have been quiet since the start."""
    times = known(p0=("2026-02-10T00:00", "2026-03-01T11:59"),
                  p3=("2026-02-12T00:00", "2026-03-01T11:59"),
                  p4=("2026-02-11T00:00", "2026-03-01T11:59"))  # fmt: skip
    started = NOW - dt.timedelta(seconds=599)
    quiet = idle_partitions(6, times, now=NOW, since=started, idle=IDLE)
    assert quiet == set() and watermark_of(6, times, quiet) is None
    quiet = idle_partitions(6, times, now=NOW, since=NOW - IDLE, idle=IDLE)
    assert quiet == {1, 2, 5}
    assert watermark_of(6, times, quiet) == at("2026-02-10T00:00")
    # Without an idle time (idle_partition_s = 0) nothing is ever idle: today's behaviour.
    assert idle_partitions(6, times, now=NOW, since=at("2020-01-01T00:00"), idle=None) == set()


def test_when_every_partition_is_idle_time_goes_on_to_the_latest_event() -> None:
    times = known(p0=("2026-02-10T00:00", "2026-03-01T01:00"),
                  p1=("2026-02-14T00:00", "2026-03-01T01:00"))  # fmt: skip
    quiet = idle_partitions(3, times, now=NOW, since=at("2026-03-01T00:00"), idle=IDLE)
    assert quiet == {0, 1, 2}
    assert watermark_of(3, times, quiet) == at("2026-02-14T00:00")
    assert watermark_of(3, {}, {0, 1, 2}) is None
