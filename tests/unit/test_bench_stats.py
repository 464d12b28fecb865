"""The benchmark's pure parts: its arithmetic, its verdicts and table, and the synthetic
ledger it fills databases with (which must verify as a real one does)."""

from __future__ import annotations

import pytest

from benchmarks.figures import SECTIONS, all_keys
from benchmarks.ledger_fill import counts, records_of
from benchmarks.stats import (
    Figure,
    Section,
    Target,
    format_number,
    percentile,
    rate,
    ratio,
    render,
    results_json,
    steady_rate,
    verdicts_json,
)
from ledger.core import record_hash
from ledger.verify import verify


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0.5) == 1
    # With few samples the p99 is the largest: nearest rank never interpolates.
    assert percentile([3.0, 1.0, 2.0], 99) == 3
    assert percentile([7.0], 50) == 7


@pytest.mark.parametrize("q", [0, -1, 100.5])
def test_percentile_refuses_a_rank_outside_0_to_100(q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_rate_and_ratio_say_none_instead_of_dividing_by_zero() -> None:
    assert rate(56_303, 4.5) == pytest.approx(12_511.8, abs=0.1)
    assert rate(10, 0.0) is None
    assert ratio(3.0, 4.0) == 0.75
    assert ratio(None, 4.0) is None
    assert ratio(3.0, None) is None
    assert ratio(3.0, 0) is None
    with pytest.raises(ValueError):
        rate(-1, 1.0)


def test_steady_rate_leaves_out_what_was_done_at_the_first_observation() -> None:
    # 1,000 done when first seen at t=2 s, all 11,000 at t=12 s: 10,000 in 10 s.
    assert steady_rate(1_000, 2.0, 11_000, 12.0) == 1_000
    assert steady_rate(0, 0.0, 0, 0.0) is None
    with pytest.raises(ValueError):
        steady_rate(12_000, 2.0, 11_000, 12.0)


def test_targets_judge_values_and_missing_values() -> None:
    at_least = Target(">=", 1.5)
    assert at_least.met(1.5) is True
    assert at_least.met(1.49) is False
    assert at_least.met(None) is None
    assert Target("<", 500).met(499.9) is True
    assert Target("<", 500).met(500) is False
    assert Target("==", 0).met(1) is False
    assert str(Target(">=", 20_000)) == ">= 20,000"
    with pytest.raises(ValueError, match="unknown comparison"):
        Target("=>", 1)


def test_verdicts() -> None:
    assert Figure("k", "l", "/s", 10.0, Target(">=", 5)).verdict == "met"
    assert Figure("k", "l", "/s", 1.0, Target(">=", 5)).verdict == "NOT MET"
    assert Figure("k", "l", "/s", None, Target(">=", 5)).verdict == "n/a"
    assert Figure("k", "l", "/s", 1.0).verdict == ""


def test_numbers_read_at_a_glance() -> None:
    assert format_number(56_303) == "56,303"
    assert format_number(12_511.84) == "12,512"
    assert format_number(42.25) == "42.2"
    assert format_number(0.8) == "0.80"
    assert format_number(20_000.0) == "20,000"


def test_the_table_and_json_have_one_entry_per_figure() -> None:
    sections = [
        Section("Engine", [Figure("engine.messages_per_s", "engine", "/s", 1_900.0,
                                  Target(">=", 20_000), "56,303 messages")]),
        Section("Read side", [Figure("read.p99_ms", "p99", "ms", None, Target("<", 10),
                                     "not measured: no finance API yet")]),
    ]
    table = render(sections).splitlines()
    assert table[0].split() == ["figure", "value", "target", "verdict", "note"]
    assert "Engine" in table[2]
    assert table[3].split()[:6] == ["engine", "1,900", "/s", ">=", "20,000", "/s"]
    assert "NOT MET" in table[3]
    assert "not measured: no finance API yet" in table[5] and " - " in table[5]
    assert results_json(sections) == {"engine.messages_per_s": 1_900.0, "read.p99_ms": None}
    assert verdicts_json(sections) == {
        "engine.messages_per_s": {"target": ">= 20,000", "met": False},
        "read.p99_ms": {"target": "< 10", "met": None},
    }


def test_every_figure_key_is_unique() -> None:
    keys = all_keys()
    assert len(keys) == len(set(keys))
    assert all(specs for _, specs in SECTIONS)


def test_filled_chains_verify_and_hash_as_the_ledger_seals() -> None:
    chains = [list(records_of(n, 260)) for n in (1, 2)]  # 260: one tier change each
    for chain in chains:
        assert [r.seq for r in chain] == list(range(1, 261))
        assert all(record_hash(r) == r.hash for r in chain)
    report = verify((r for chain in chains for r in chain), [])
    assert report.ok, report.findings[:3]
    assert report.records == 520 and report.partners == 2
    kinds = {r.kind.value for r in chains[0]}
    assert kinds == {"accrual", "hold_release", "payout", "tier_change"}


def test_fill_spreads_records_over_partners_evenly() -> None:
    assert counts(10, 3) == [4, 3, 3]
    assert sum(counts(1_000_000, 1_000)) == 1_000_000
