"""Integer money arithmetic, periods, and the partner state's storage and pruning."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st
from test_engine_support import T0, Partner, program, registered, sale

from processors.engine import decode_state, encode_state
from processors.engine.money import apply_bp, exact_text, largest_remainder, round_half_even
from processors.engine.periods import add_months, period_key, tenure_months, window_months
from processors.engine.state import prune
from schemas.programs import Period


def test_round_half_even_examples() -> None:
    assert [round_half_even(n, 2) for n in (1, 3, 5, -1, -3)] == [0, 2, 2, 0, -2]
    assert round_half_even(10_001, 10_000) == 1 and round_half_even(15_000, 10_000) == 2
    assert apply_bp(1_000_050, 300)[0] == 30_002


@given(st.integers(-10**15, 10**15), st.integers(1, 10**6))
def test_round_half_even_matches_exact_fractions(numerator: int, denominator: int) -> None:
    assert round_half_even(numerator, denominator) == round(Fraction(numerator, denominator))


def test_exact_text() -> None:
    assert exact_text(300_015, 10) == "30001.5"
    assert exact_text(-15, 10) == "-1.5"
    assert exact_text(200, 3) == "200/3"
    assert exact_text(20, 10) == "2"


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=30), st.integers(0, 10**9))
def test_largest_remainder_pays_exactly_and_fairly(weights: list[int], total: int) -> None:
    if sum(weights) == 0:
        weights = [*weights[:-1], 1]
    keys = [f"P{i:02d}" for i in range(len(weights))]
    shares = largest_remainder(weights, total, keys)
    assert sum(shares) == total
    for w, s in zip(weights, shares, strict=True):
        exact = Fraction(total * w, sum(weights))
        assert exact - 1 < s < exact + 1


def test_periods() -> None:
    day = dt.date(2026, 5, 31)
    assert [period_key(p, day) for p in Period] == ["2026-05", "2026-Q2", "2026"]
    assert add_months(dt.date(2026, 1, 31), 1) == dt.date(2026, 2, 28)
    assert window_months(day, 3) == ("2026-03", "2026-04", "2026-05")
    # Across a year end: 2025-01 .. 2026-02.
    expected = tuple(f"2025-{m:02d}" for m in range(1, 13)) + ("2026-01", "2026-02")
    assert window_months(dt.date(2026, 2, 28), 14) == expected
    assert tenure_months(dt.date(2026, 1, 31), dt.date(2026, 2, 28)) == 1
    assert tenure_months(dt.date(2026, 1, 15), dt.date(2026, 4, 14)) == 2


def test_state_round_trips_through_json_and_prunes_old_facts() -> None:
    rules = """
    - kind: commission
      id: com
      pays: currency
      rates:
        - {category: hardware, rate_bp: 300}
    - kind: clawback
      id: returns
      window_days: 30
    """
    p = Partner([program(rules)])
    p.feed(registered(), sale("O1", [("hardware", 1, 100_000)]))
    assert decode_state(encode_state(p.state)) == p.state
    state = decode_state(encode_state(p.state))
    prune(state, dt.date(2028, 12, 31))
    assert "2026-01" in state.months and "O1" in state.orders  # within 37 months / 3 years
    prune(state, dt.date(2029, 3, 1))
    assert state.months == {} and state.orders == {} and state.counters == {}
    assert T0.year == 2026
