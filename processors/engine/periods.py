"""Calendar periods as text keys, and the date arithmetic the rules need.

Keys: a month is ``"2026-03"``, a quarter ``"2026-Q1"``, a year ``"2026"``. Aggregates are
kept per month; a quarter or a year is the sum of its months, so one set of counters
serves every period kind a program uses. All dates are UTC calendar days: an event's day
is ``occurred_at`` in UTC.
"""

import calendar
import datetime as dt
import functools
from typing import Final

from schemas.programs import Period

MONTHS_PER: Final = {Period.MONTH: 1, Period.QUARTER: 3, Period.YEAR: 12}


def day_of(moment: dt.datetime) -> dt.date:
    assert moment.utcoffset() is not None, "event times are time-zone aware"
    return moment.astimezone(dt.UTC).date()


def month_key(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_start(key: str) -> dt.date:
    """``"2026-03"`` -> 2026-03-01; raises ValueError for anything else."""
    year, month = key.split("-")
    if len(year) != 4 or len(month) != 2:
        raise ValueError(f"expected a month as YYYY-MM, got {key!r}")
    return dt.date(int(year), int(month), 1)


def period_key(period: Period, day: dt.date) -> str:
    if period is Period.MONTH:
        return month_key(day)
    if period is Period.QUARTER:
        return f"{day.year:04d}-Q{(day.month - 1) // 3 + 1}"
    return f"{day.year:04d}"


def period_first_month(period: Period, day: dt.date) -> dt.date:
    size = MONTHS_PER[period]
    return dt.date(day.year, (day.month - 1) // size * size + 1, 1)


def period_months(period: Period, day: dt.date) -> tuple[str, ...]:
    """The month keys of the period containing ``day``, in order."""
    first = period_first_month(period, day)
    return _window(first.year, first.month + MONTHS_PER[period] - 1, MONTHS_PER[period])


def period_last_day(period: Period, day: dt.date) -> dt.date:
    first = period_first_month(period, day)
    return add_months(first, MONTHS_PER[period]) - dt.timedelta(days=1)


def ends_with_month(period: Period, month: dt.date) -> bool:
    """Whether the period kind has a period ending with the month starting ``month``."""
    return month.month % MONTHS_PER[period] == 0


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later, or that month's last day when it is shorter."""
    index = day.year * 12 + day.month - 1 + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return dt.date(year, month0 + 1, min(day.day, last))


def window_months(end: dt.date, count: int) -> tuple[str, ...]:
    """The ``count`` month keys ending with the month of ``end`` (a rolling window)."""
    return _window(end.year, end.month, count)


@functools.lru_cache(maxsize=1024)
def _window(year: int, month: int, count: int) -> tuple[str, ...]:
    # Tier rules measure a window for every event; the same few windows, computed once.
    last = year * 12 + month - 1
    return tuple(f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(last - count + 1, last + 1))


@functools.lru_cache(maxsize=1024)
def day_keys(end: dt.date, count: int) -> tuple[str, ...]:
    """The ``count`` day keys (``YYYY-MM-DD``) ending with ``end``: a rolling window."""
    return tuple((end - dt.timedelta(days=offset)).isoformat() for offset in range(count))


def tenure_months(joined_on: dt.date, on: dt.date) -> int:
    """Whole months from ``joined_on`` to ``on``: 2026-01-15 -> 2026-04-15 is 3, -04-14 is 2."""
    months = (on.year - joined_on.year) * 12 + on.month - joined_on.month
    if add_months(joined_on, months) > on:
        months -= 1
    return max(months, 0)


def start_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
