"""Targets (TargetsSet, target_attainment), gates and growth (业绩突破), with amounts
computed by hand in each test's docstring (EUR cents)."""

from __future__ import annotations

import datetime as dt

from test_engine_support import (
    T0,
    Market,
    Partner,
    eid,
    program,
    registered,
    reversal,
    sale,
    survey,
    target,
)

from ledger.core import RecordKind
from processors.engine import RefusalCode, apply

UTC = dt.UTC
JAN, FEB, MAR = (dt.datetime(2026, m, 10, 12, tzinfo=UTC) for m in (1, 2, 3))

ATTAINMENT = """
- kind: target_attainment
  id: target
  pays: currency
  bands:
    - {at_least_bp: 8_000, below_bp: 10_000, rate_bp: 100}
    - {at_least_bp: 10_000, below_bp: 12_000, rate_bp: 200}
    - {at_least_bp: 12_000, rate_bp: 200, excess_rate_bp: 500}
"""


def market(rules: str, partners: int, *, period: str = "quarter") -> Market:
    m = Market([program(rules, period=period)], [f"P{i + 1}" for i in range(partners)])
    for p in m.partners.values():
        p.feed(registered(p.state.partner_id, at=dt.datetime(2025, 1, 2, tzinfo=UTC)))
    return m


def notes(drafts: list[object]) -> list[object]:
    return [d for d in drafts if d.kind is RecordKind.NOTE]  # type: ignore[attr-defined]


def test_attainment_pays_by_band_with_an_accelerator_above_120_percent() -> None:
    """Targets of EUR 100,000.00 each. P1 sells 90,000.00: 90 %, 1 % of it = 900.00.
    P2 sells exactly 100,000.00: 100 % is in the second band, 2 % = 2,000.00. P3 sells
    150,000.00: 150 %, 2 % = 3,000.00 plus 5 % of what lies above 120 % of the target
    (150,000.00 - 120,000.00 = 30,000.00): 1,500.00, together 4,500.00. P4 sells 79,999.99:
    below 80 %, a note. P5 has no target: a note saying so, nothing paid."""
    m = market(ATTAINMENT, 5)
    for pid, sold in [("P1", 9_000_000), ("P2", 10_000_000), ("P3", 15_000_000),
                      ("P4", 7_999_999), ("P5", 12_000_000)]:
        p = m[pid]
        if pid != "P5":
            p.feed(target("2026-Q1", 10_000_000, partner=pid, at=JAN))
        p.feed(sale("O1", [("hardware", 1, sold)], partner=pid, at=FEB))
    drafts = m.close("2026-03")
    assert m.paid(drafts) == {"P1": 90_000, "P2": 200_000, "P3": 450_000}
    p3 = drafts["P3"][0].explanation.inputs
    assert (p3["target"], p3["value"], p3["attainment_bp"], p3["excess"]) == (
        10_000_000, 15_000_000, "15000", "3000000")
    [below] = notes(drafts["P4"])
    assert below.leg == "below-target" and below.postings == ()  # type: ignore[attr-defined]
    [none] = notes(drafts["P5"])
    assert none.leg == "no-target" and "No target for 2026-Q1" in none.explanation.summary  # type: ignore[attr-defined]


def test_a_target_changed_mid_period_is_the_one_measured_and_both_are_in_the_chain() -> None:
    """Target EUR 100,000.00 in January, EUR 120,000.00 from 1 March; sales of
    110,000.00 in February. At the close 110,000 / 120,000 = 91.67 % (27500/3 bp): the
    first band, 1 % of 110,000.00 = 1,100.00. (Against the first target it would have been
    2 %, 2,200.00.) Each TargetsSet is a value-free note; the second names the first."""
    m = market(ATTAINMENT, 1)
    p = m["P1"]
    first = p.feed(target("2026-Q1", 10_000_000, at=JAN))
    p.feed(sale("O1", [("hardware", 1, 11_000_000)], at=FEB))
    second = p.feed(target("2026-Q1", 12_000_000, at=dt.datetime(2026, 3, 1, tzinfo=UTC), n=1))
    assert [(d.kind, d.postings, d.explanation.inputs["value"], d.explanation.inputs["previous"])
            for d in first + second] == [(RecordKind.NOTE, (), 10_000_000, None),
                                         (RecordKind.NOTE, (), 12_000_000, 10_000_000)]
    drafts = m.close("2026-03")
    assert m.paid(drafts) == {"P1": 110_000}
    inputs = drafts["P1"][0].explanation.inputs
    assert (inputs["target"], inputs["attainment_bp"], inputs["target_event_id"]) == (
        12_000_000, "27500/3", str(eid("target:P1:2026-Q1:net_sales:1")))


def test_a_target_is_refused_after_the_close_unread_or_of_an_unknown_program() -> None:
    m = market(ATTAINMENT, 1)
    p = m["P1"]
    m.close("2026-03")
    after = dt.datetime(2026, 4, 2, tzinfo=UTC)
    closed = p.refused(target("2026-Q1", 10_000_000, at=after))
    assert closed.refusal is not None and closed.refusal.code is RefusalCode.PERIOD_CLOSED
    assert "closed with 2026-03" in closed.refusal.message
    unused = p.refused(target("2026-Q2", 5, metric="units", at=after))
    assert unused.refusal is not None and unused.refusal.code is RefusalCode.UNUSED_TARGET
    monthly = p.refused(target("2026-04", 10_000_000, at=after))
    assert monthly.refusal is not None and monthly.refusal.code is RefusalCode.UNUSED_TARGET
    unknown = p.refused(target("2026-Q2", 10_000_000, program="other", at=after))
    assert unknown.refusal is not None and unknown.refusal.code is RefusalCode.NO_PROGRAM
    assert p.feed(target("2026-Q2", 10_000_000, at=after))  # the next quarter is open


GATED_COMMISSION = """
- kind: commission
  id: commission
  pays: currency
  period: month
  hold_days: 30
  rates: [{category: hardware, rate_bp: 500}]
  gate: {avg_satisfaction_min_x100: 400, surveys_min: 2}
"""


def test_a_gate_removes_a_months_earnings_and_a_later_reversal_takes_nothing_more() -> None:
    """5 % commission, held 30 days, kept only with an average survey score of 4.00 over
    at least two surveys in the month. In January both partners sell 1,000.00 and 3,000.00:
    50.00 + 150.00 = 200.00 pending. P1's surveys score 3 and 4 (3.50): at the close one
    record takes the 200.00 back, from the holds. P2's score 5 and 4 (4.50): it keeps
    them. A February return of P1's January order takes nothing more; a January sale of
    P1 arriving after the close earns nothing either."""
    m = market(GATED_COMMISSION, 2, period="month")
    for pid, scores in (("P1", (3, 4)), ("P2", (5, 4))):
        m[pid].feed(sale("O1", [("hardware", 1, 100_000)], partner=pid, at=JAN),
                    sale("O2", [("hardware", 1, 300_000)], partner=pid, at=JAN),
                    *[survey(f"S{i}", s, partner=pid, at=JAN) for i, s in enumerate(scores)])
        assert m[pid].pending() == 20_000
    drafts = m.close("2026-01")
    assert m.paid(drafts) == {"P1": -20_000}
    [gate] = drafts["P1"]
    assert (gate.kind, gate.rule_id, gate.leg) == (RecordKind.CLAWBACK, "commission", "gate")
    inputs = gate.explanation.inputs
    assert (inputs["surveys"], inputs["score_sum"], inputs["failed"], inputs["earned"]) == (
        2, 7, ["avg_satisfaction_min_x100"], 20_000)
    p1 = m["P1"]
    assert (p1.pending(), p1.available(), m["P2"].pending()) == (0, 0, 20_000)
    assert p1.state.holds == []
    assert p1.feed(reversal("O2", at=FEB)) == []
    late = p1.feed(sale("O3", [("hardware", 1, 100_000)], at=dt.datetime(2026, 1, 31, tzinfo=UTC)))
    assert late == []
    assert p1.balances().get(("partner:P1:available", "EUR"), 0) == 0


REBATE_GATED = """
- kind: volume_rebate
  id: rebate
  pays: currency
  mode: retroactive
  gate: {attainment_min_bp: 10_000}
  bands:
    - {at_least: 0, below: 50_000_000, rate_bp: 100}
    - {at_least: 50_000_000, rate_bp: 200}
"""


def test_a_gate_on_attainment_withholds_a_rebate_as_a_note() -> None:
    """A 2 % rebate on EUR 600,000.00 of sales is 12,000.00, kept only by partners that
    reached their target. P1 (target 500,000.00) is paid; P2 (target 700,000.00) and P3 (no
    target) get a note that says what was withheld and why."""
    m = market(REBATE_GATED, 3)
    for pid, goal in (("P1", 50_000_000), ("P2", 70_000_000), ("P3", None)):
        if goal is not None:
            m[pid].feed(target("2026-Q1", goal, partner=pid, at=JAN))
        m[pid].feed(sale("O1", [("hardware", 1, 60_000_000)], partner=pid, at=FEB))
    drafts = m.close("2026-03")
    assert m.paid(drafts) == {"P1": 1_200_000}
    for pid, goal in (("P2", 70_000_000), ("P3", None)):
        [note] = drafts[pid]
        assert (note.kind, note.leg, note.postings) == (RecordKind.NOTE, "gate:award", ())
        assert note.explanation.inputs["withheld"] == 1_200_000
        assert note.explanation.inputs["target"] == goal
        assert note.explanation.inputs["failed"] == ["attainment_min_bp"]


GROWTH = """
- kind: growth_bonus
  id: growth
  pays: currency
  compare_to: same_period_last_year
  base_min: 1_000_000
  bands:
    - {at_least_bp: 1_000, below_bp: 2_500, amount: 50_000}
    - {at_least_bp: 2_500, rate_bp: 500}
"""


def test_growth_over_the_same_quarter_last_year_by_band_with_a_minimum_base() -> None:
    """Q1 2025 -> Q1 2026. P1: 100,000.00 -> 115,000.00, +15 %: the first band, a fixed
    500.00. P2: 80,000.00 -> 120,000.00, +50 %: 5 % of the increase of 40,000.00 = 2,000.00.
    P3 sold nothing last year (no base) and 50,000.00 now: a note, nothing paid. P4's base
    of 5,000.00 is below the 10,000.00 minimum although it tripled: a note. P5 grew 5 %: no
    band, no record."""
    m = market(GROWTH, 5)
    last_year = dt.datetime(2025, 2, 10, tzinfo=UTC)
    for pid, before, now in [("P1", 10_000_000, 11_500_000), ("P2", 8_000_000, 12_000_000),
                             ("P3", 0, 5_000_000), ("P4", 500_000, 2_000_000),
                             ("P5", 10_000_000, 10_500_000)]:
        if before:
            m[pid].feed(sale("O0", [("hardware", 1, before)], partner=pid, at=last_year))
        m[pid].feed(sale("O1", [("hardware", 1, now)], partner=pid, at=FEB))
    drafts = m.close("2026-03")
    assert m.paid(drafts) == {"P1": 50_000, "P2": 200_000}
    p2 = drafts["P2"][0].explanation.inputs
    assert (p2["base"], p2["value"], p2["growth_bp"], p2["increase"], p2["base_period"]) == (
        8_000_000, 12_000_000, "5000", 4_000_000, "2025-Q1")
    for pid, base in (("P3", 0), ("P4", 500_000)):
        [note] = drafts[pid]
        assert (note.kind, note.leg, note.explanation.inputs["base"]) == (
            RecordKind.NOTE, "no-base", base)
    assert "P5" not in drafts


def test_growth_over_the_previous_month() -> None:
    """Monthly, over the month before: January 20,000.00, February 25,000.00, +25 %: the
    second band, 5 % of the 5,000.00 increase = 250.00. In January there was no December
    base: a note."""
    m = market(GROWTH.replace("same_period_last_year", "previous_period"), 1, period="month")
    m["P1"].feed(sale("O1", [("hardware", 1, 2_000_000)], at=JAN))
    january = m.close("2026-01")
    assert [d.leg for d in january["P1"]] == ["no-base"]
    m["P1"].feed(sale("O2", [("hardware", 1, 2_500_000)], at=FEB))
    assert m.paid(m.close("2026-02")) == {"P1": 25_000}


def test_setting_a_target_leaves_the_given_state_unchanged() -> None:
    """A TargetsSet changes only the state it returns; the state given stays as it was."""
    p = Partner([program(ATTAINMENT)])
    p.feed(registered("P1", at=T0))
    before = p.state
    result = apply(before, target("2026-Q1", 1_000, at=JAN), p.programs)
    assert before.targets == {} and list(result.state.targets) == ["prog|2026-Q1|net_sales"]
