"""What "as of" a date or time means, and the periods statements and leaderboards cover.

As of a moment means: every record whose event time (``occurred_at``) is at or before the
end of what was named, as the ledger knows it now (late events included).

- A date, ``2026-01-31`` (or ``2026-01-31Z``), is the end of that day in UTC: records
  before 2026-02-01T00:00:00Z.
- A date-time with a zone counts to the end of the unit it is written to:
  ``2026-01-31T23:59:59Z`` to the end of that second, ``2026-01-31T23:59Z`` of that
  minute, ``2026-01-31T23:59:59.5+01:00`` up to and including that instant. So the
  awards of a period close, dated at the month's last instant (23:59:59.999999Z), are in
  "as of 2026-01-31", in "as of 2026-01-31T23:59:59Z" and in January's statement.
- A date-time without a zone is refused: it names no moment.

Every bound is returned as an exclusive instant in UTC (``occurred_at < bound``), which
is how every query here compares. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

_MOMENT = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?P<f>\.\d{1,6})?)?)?"
    r"(?P<zone>Z|z|[+-]\d{2}:?\d{2})?"
)
_PERIOD = re.compile(r"(?P<y>\d{4})(?:-(?:(?P<m>\d{2})|Q(?P<q>[1-4])))?")


class AsOfError(ValueError):
    """A date, time or period that cannot be used; the message says what to write."""


class Span(NamedTuple):
    """An interval of event time, [start, end), in UTC; ``label`` names it (2026-01)."""

    start: dt.datetime
    end: dt.datetime
    label: str


def parse_as_of(text: str) -> dt.datetime:
    """The exclusive UTC bound of "as of ``text``" (see the module docstring)."""
    match = _MOMENT.fullmatch(text.strip())
    if match is None:
        raise AsOfError(
            f"{text!r} is not a date or date-time: write a date (2026-01-31, the end of that "
            "day UTC) or a date-time with a zone (2026-01-31T23:59:59Z, "
            "2026-01-31T23:59:59+01:00)")
    try:
        day = dt.date.fromisoformat(match["date"])
    except ValueError as exc:
        raise AsOfError(f"{text!r}: {exc}") from None
    if match["h"] is None:
        if match["zone"] not in (None, "Z", "z"):
            raise AsOfError(f"{text!r}: a date alone is a UTC day; give a time with an offset "
                            f"(e.g. {match['date']}T23:59:59{match['zone']})")
        return _midnight(day + dt.timedelta(days=1))
    if match["zone"] is None:
        raise AsOfError(
            f"{text!r} has no time zone, so it names no moment: write "
            f"{text.strip()}Z for UTC or add an offset such as +01:00; a date alone "
            f"({match['date']}) means the end of that day, UTC")
    return _bound(text, match)


def _bound(text: str, match: re.Match[str]) -> dt.datetime:
    zone = match["zone"].upper()
    if zone != "Z" and ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    iso = f"{match['date']}T{match['h']}:{match['m']}:{match['s'] or '00'}{match['f'] or ''}"
    try:
        moment = dt.datetime.fromisoformat(iso + ("+00:00" if zone == "Z" else zone))
    except ValueError as exc:
        raise AsOfError(f"{text!r}: {exc}") from None
    if match["f"] is not None:
        step = dt.timedelta(microseconds=1)
    elif match["s"] is not None:
        step = dt.timedelta(seconds=1)
    else:
        step = dt.timedelta(minutes=1)
    return (moment + step).astimezone(dt.UTC)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def parse_period(text: str) -> Span:
    """A month (2026-01), a quarter (2026-Q1) or a year (2026), in UTC."""
    match = _PERIOD.fullmatch(text.strip())
    if match is None or (match["m"] is not None and not 1 <= int(match["m"]) <= 12):
        raise AsOfError(f"{text!r} is not a period: write a month (2026-01), a quarter "
                        "(2026-Q1) or a year (2026)")
    year = int(match["y"])
    if match["m"] is not None:
        first, months = int(match["m"]), 1
    elif match["q"] is not None:
        first, months = (int(match["q"]) - 1) * 3 + 1, 3
    else:
        first, months = 1, 12
    start = dt.date(year, first, 1)
    return Span(_midnight(start), _midnight(add_months(start, months)), text.strip())


def parse_from(text: str) -> dt.datetime:
    """The inclusive UTC start of "from ``text``": a date is the first instant of that UTC
    day, a date-time with a zone that very instant."""
    bound = parse_as_of(text)  # validates, and refuses a naive date-time
    match = _MOMENT.fullmatch(text.strip())
    assert match is not None
    if match["h"] is None:
        return bound - dt.timedelta(days=1)
    zone = match["zone"].upper()
    zone = "+00:00" if zone == "Z" else zone if ":" in zone else zone[:3] + ":" + zone[3:]
    iso_text = f"{match['date']}T{match['h']}:{match['m']}:{match['s'] or '00'}{match['f'] or ''}"
    return dt.datetime.fromisoformat(iso_text + zone).astimezone(dt.UTC)


def span(start: str, end: str) -> Span:
    """From ``start`` (`parse_from`) to "as of" ``end`` (`parse_as_of`)."""
    first, bound = parse_from(start), parse_as_of(end)
    if bound <= first:
        raise AsOfError(f"the span {start} .. {end} is empty: its end is not after its start")
    return Span(first, bound, f"{start.strip()}..{end.strip()}")


def add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def month_start(moment: dt.datetime) -> dt.datetime:
    utc = moment.astimezone(dt.UTC)
    return dt.datetime(utc.year, utc.month, 1, tzinfo=dt.UTC)


def months_in(period: Span) -> list[dt.date]:
    """The first days of the calendar months a whole-month span covers."""
    out, day = [], period.start.date()
    while _midnight(day) < period.end:
        out.append(day)
        day = add_months(day, 1)
    return out


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
