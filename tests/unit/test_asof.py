"""What "as of" means (projections/asof.py) and how money reads (schemas/money.py): a date is
the end of that UTC day, a date-time counts to the end of the unit it is written to, a
naive one is refused with what to write instead; periods and spans; `EUR 791,820.04`."""

from __future__ import annotations

import datetime as dt

import pytest

from projections.asof import AsOfError, parse_as_of, parse_from, parse_period, span
from projections.read.money import format_amount
from schemas.money import format_money


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


@pytest.mark.parametrize(("text", "bound"), [
    ("2026-01-31", utc(2026, 2, 1)),
    ("2026-01-31Z", utc(2026, 2, 1)),
    ("2026-01-31T23:59:59Z", utc(2026, 2, 1)),
    ("2026-01-31T23:59Z", utc(2026, 2, 1)),
    ("2026-01-31T23:59:59+01:00", utc(2026, 1, 31, 23)),
    ("2026-01-31T23:59:59.999999Z", utc(2026, 2, 1)),
    ("2026-01-31T23:59:59.999998Z", utc(2026, 1, 31, 23, 59, 59, 999_999)),
    ("2026-12-31", utc(2027, 1, 1)),
])
def test_as_of_counts_to_the_end_of_what_was_written(text: str, bound: dt.datetime) -> None:
    assert parse_as_of(text) == bound


def test_a_close_dated_at_the_months_last_instant_is_in_as_of_its_last_day() -> None:
    close = utc(2026, 1, 31, 23, 59, 59, 999_999)
    for text in ("2026-01-31", "2026-01-31T23:59:59Z", "2026-02-01T00:59:59+01:00"):
        assert close < parse_as_of(text), text
    assert not close < parse_as_of("2026-01-31T23:59:59.999998Z")


@pytest.mark.parametrize(("text", "says"), [
    ("2026-01-31T23:59:59", "has no time zone"),
    ("2026-01-31T23:59", "has no time zone"),
    ("31/01/2026", "is not a date or date-time"),
    ("2026-02-30", "day is out of range"),
    ("2026-01-31+01:00", "a date alone is a UTC day"),
])
def test_what_names_no_moment_is_refused_with_what_to_write(text: str, says: str) -> None:
    with pytest.raises(AsOfError, match=says):
        parse_as_of(text)


def test_periods_and_spans() -> None:
    assert parse_period("2026-02")[:2] == (utc(2026, 2, 1), utc(2026, 3, 1))
    assert parse_period("2026-Q4")[:2] == (utc(2026, 10, 1), utc(2027, 1, 1))
    assert parse_period("2026")[:2] == (utc(2026, 1, 1), utc(2027, 1, 1))
    for bad in ("2026-13", "2026-Q5", "26-01", "2026-1"):
        with pytest.raises(AsOfError):
            parse_period(bad)
    assert parse_from("2026-02-10") == utc(2026, 2, 10)
    assert parse_from("2026-02-10T08:30:00+01:00") == utc(2026, 2, 10, 7, 30)
    assert span("2026-02-10", "2026-02-10")[:2] == (utc(2026, 2, 10), utc(2026, 2, 11))
    with pytest.raises(AsOfError, match="is empty"):
        span("2026-02-10", "2026-02-09")


def test_money_reads_code_first_with_thousands_grouped() -> None:
    assert format_money(79_182_004, "EUR") == "EUR 791,820.04"
    assert format_money(-5, "EUR") == "EUR -0.05"
    assert format_money(1_500, "JPY") == "JPY 1,500"
    assert format_money(1_234_567, "KWD") == "KWD 1,234.567"
    assert format_amount(79_182_004, "EUR") == "EUR 791,820.04"
    assert format_amount(1_200, "MDF:EUR") == "MDF EUR 12.00"
    assert format_amount(12_500, "PTS:northwind") == "12,500 points"
    assert format_amount(2, "AWARD:trip") == "2 x trip"
