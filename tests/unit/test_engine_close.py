"""Period close: rebates, rankings, teams, pools, multiplier, awards, budget, tiers."""

from __future__ import annotations

import datetime as dt

from test_engine_support import (
    T0,
    Market,
    program,
    registered,
    sale,
    survey,
)

from ledger.core import RecordKind
from processors.engine import close_id, close_period

MARCH = dt.datetime(2026, 3, 15, tzinfo=dt.UTC)

REBATE = """
- kind: volume_rebate
  id: rebate
  pays: currency
  mode: {mode}
  {extra}
  bands:
    - {{at_least: 0, below: 10_000_000, rate_bp: 0}}
    - {{at_least: 10_000_000, below: 50_000_000, rate_bp: 100}}
    - {{at_least: 50_000_000, rate_bp: 200}}
"""


def market(rules: str, partners: int = 1, *, tiers: str = "", budget: str = "",
           period: str = "quarter", teams: list[str | None] | None = None) -> Market:
    m = Market([program(rules, tiers=tiers, budget=budget, period=period)],
               [f"P{i + 1}" for i in range(partners)])
    for i, p in enumerate(m.partners.values()):
        p.feed(registered(p.state.partner_id, team=(teams or [None] * partners)[i]))
    return m


def test_retroactive_rebate_band_boundaries() -> None:
    """Retroactive: the reached band's rate on the whole quarter. 99,999.99 is in the 0 %
    band; exactly 100,000.00 is in the 1 % band (at_least inclusive): 1,000.00; exactly
    500,000.00 earns 2 % on all of it: 10,000.00; 600,000.00 -> 12,000.00."""
    m = market(REBATE.format(mode="retroactive", extra=""), 4)
    for pid, amount in [("P1", 9_999_999), ("P2", 10_000_000), ("P3", 50_000_000),
                        ("P4", 60_000_000)]:
        m[pid].feed(sale("O1", [("hardware", 1, amount)], partner=pid))
    assert m.close("2026-02") == {}  # a quarterly rule does not close in February
    drafts = m.close("2026-03")
    assert m.paid(drafts) == {"P2": 100_000, "P3": 1_000_000, "P4": 1_200_000}
    d = drafts["P4"][0]
    assert (d.kind, d.rule_id, d.source_event_ids) == (
        RecordKind.ACCRUAL, "rebate", (close_id(m.programs[0], "2026-03"),))
    # Dated at the last instant of March, the month it closes, and naming it.
    assert d.occurred_at == dt.datetime(2026, 3, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)
    assert d.explanation.inputs["closed_period"] == "2026-03"
    assert d.explanation.inputs["rate_bp"] == 200


def test_marginal_rebate_applies_each_band_inside_it() -> None:
    """600,000.00: 0 % of the first 100,000.00, 1 % of the next 400,000.00 (4,000.00), 2 %
    of the last 100,000.00 (2,000.00): 6,000.00. Exactly 100,000.00 earns nothing."""
    m = market(REBATE.format(mode="marginal", extra=""), 2)
    m["P1"].feed(sale("O1", [("hardware", 1, 60_000_000)], partner="P1"))
    m["P2"].feed(sale("O1", [("hardware", 1, 10_000_000)], partner="P2"))
    drafts = m.close("2026-03")
    assert m.paid(drafts) == {"P1": 600_000}
    assert drafts["P1"][0].explanation.inputs["band_pieces"] == [10_000_000, 40_000_000,
                                                                 10_000_000]


def test_rebate_cap_and_hold() -> None:
    m = market(REBATE.format(mode="retroactive", extra="cap: 500_000\n  hold_days: 45"))
    m["P1"].feed(sale("O1", [("hardware", 1, 60_000_000)]))
    drafts = m.close("2026-03")
    assert m.paid(drafts) == {"P1": 500_000}
    assert drafts["P1"][0].explanation.inputs["cut_by_cap"] == 700_000
    assert m["P1"].pending() == 500_000
    assert m["P1"].due(dt.datetime(2026, 5, 16, tzinfo=dt.UTC)) != []
    assert m["P1"].available() == 500_000


RANKING = """
- kind: ranking
  id: champion
  pays: currency
  period: month
  top_n: 3
  amounts: [300_000, 150_000, 50_000]
  tie_break: [reached_first, partner_id]
  min_value: 1_000_000
"""


def test_ranking_ties_broken_by_reached_first_then_partner_id() -> None:
    """P2 and P3 tie on 50,000.00; P3 got there earlier so ranks 2nd. P4 and P5 tie on
    20,000.00 at the same moment: the lower id, P4, takes 4th... there are only 3 ranks, so
    P4 is 4th and gets nothing; P6 is below min_value."""
    m = market(RANKING, 6)
    plan = [("P1", 9_000_000, 1), ("P2", 5_000_000, 5), ("P3", 5_000_000, 3),
            ("P4", 2_000_000, 2), ("P5", 2_000_000, 2), ("P6", 999_999, 1)]
    for pid, amount, day in plan:
        m[pid].feed(sale("O1", [("hardware", 1, amount)], partner=pid,
                         at=dt.datetime(2026, 1, day, tzinfo=dt.UTC)))
    drafts = m.close("2026-01")
    assert m.paid(drafts) == {"P1": 300_000, "P3": 150_000, "P2": 50_000}
    assert drafts["P3"][0].explanation.inputs["rank"] == 2
    assert drafts["P1"][0].explanation.inputs["ranked"] == ["P1", "P3", "P2"]


def test_ranking_tie_on_time_falls_to_partner_id() -> None:
    m = market(RANKING, 4)
    for pid in ["P4", "P3", "P2", "P1"]:
        m[pid].feed(sale("O1", [("hardware", 1, 2_000_000)], partner=pid, at=T0))
    assert m.paid(m.close("2026-01")) == {"P1": 300_000, "P2": 150_000, "P3": 50_000}


def test_ranking_after_a_return_uses_the_time_of_the_return() -> None:
    """P1 reaches 20,000.00 on day 2 but ends the month there only after a return on day
    9; P2 reaches 20,000.00 on day 5 and stays: P2 reached its final value first."""
    from test_engine_support import reversal

    m = market(RANKING.replace("top_n: 3", "top_n: 1").replace(
        "amounts: [300_000, 150_000, 50_000]", "amounts: [300_000]"), 2)
    m["P1"].feed(sale("O1", [("hardware", 2, 3_000_000)], partner="P1",
                      at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC)))
    m["P1"].feed(reversal("O1", [("L1", 1, 1_000_000)], partner="P1",
                          at=dt.datetime(2026, 1, 9, tzinfo=dt.UTC)))
    m["P2"].feed(sale("O1", [("hardware", 1, 2_000_000)], partner="P2",
                      at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC)))
    assert m.paid(m.close("2026-01")) == {"P2": 300_000}


TEAM = """
- kind: team_competition
  id: cup
  pays: currency
  aggregate: {aggregate}
  winners: 1
  prizes: [100_000]
  split: {split}
"""


def test_team_competition_contribution_split_largest_remainder() -> None:
    """Team a: 3 members with 100.00, 100.00, 100.00 vs team b: 250.00 alone. Sum: a wins
    (300 > 250); 1,000.00 split by contribution: 333.33 each, the last cent to the lowest
    id (ties in remainder): 333.34, 333.33, 333.33."""
    m = market(TEAM.format(aggregate="sum", split="contribution"), 4,
               teams=["a", "a", "a", "b"])
    for pid, amount in [("P1", 10_000), ("P2", 10_000), ("P3", 10_000), ("P4", 25_000)]:
        m[pid].feed(sale("O1", [("hardware", 1, amount)], partner=pid))
    drafts = m.close("2026-03")
    assert m.paid(drafts) == {"P1": 33_334, "P2": 33_333, "P3": 33_333}
    assert sum(m.paid(drafts).values()) == 100_000


def test_team_competition_average_per_member_and_equal_split() -> None:
    """Average per member: a = 300 / 3 = 100.00 < b = 250.00: b wins; equal split of
    1,000.00 between b's two members (250.00 + 0.00): 500.00 each."""
    m = market(TEAM.format(aggregate="average_per_member", split="equal"), 5,
               teams=["a", "a", "a", "b", "b"])
    for pid, amount in [("P1", 10_000), ("P2", 10_000), ("P3", 10_000), ("P4", 50_000)]:
        m[pid].feed(sale("O1", [("hardware", 1, amount)], partner=pid))
    assert m.paid(m.close("2026-03")) == {"P4": 50_000, "P5": 50_000}


POOL = """
- kind: pool_share
  id: share
  pays: currency
  period: year
  {pool}
  weights: [{{tier: gold, weight: 2}}]
"""

POOL_TIERS = """
- id: registered
  name: Registered
- id: gold
  name: Gold
  qualify: {net_sales_min: 200}
"""


def test_pool_share_fixed_pool_paid_exactly_with_weights() -> None:
    """Pool 100.00; P1 (gold, 200 x 2 = 400), P2 (100), P3 (100): 400 + 100 + 100 = 600.
    Exact shares 66.666.., 16.666.., 16.666..: floors 66, 16, 16 = 98 units; the 2 left go
    to the largest remainders (all .666, ties by id): P1, P2 -> 67, 17, 16."""
    m = market(POOL.format(pool="pool_fixed: 100"), 3, tiers=POOL_TIERS)
    for pid, amount in [("P1", 200), ("P2", 100), ("P3", 100)]:
        m[pid].feed(sale("O1", [("hardware", 1, amount)], partner=pid))
    assert m.close("2026-03") == {}  # a yearly rule closes in December
    drafts = m.close("2026-12")
    assert m.paid(drafts, "share") == {"P1": 67, "P2": 17, "P3": 16}
    rounding = drafts["P1"][0].explanation.rounding
    assert rounding is not None and (rounding.exact, rounding.result) == ("200/3", 67)


def test_pool_share_of_all_sales() -> None:
    """0.5 % of (1,000.00 + 3,000.00) = 20.00, split 1:3 (both gold, weight 2 each) =
    5.00 and 15.00."""
    m = market(POOL.format(pool="pool_share_bp: 50"), 2, tiers=POOL_TIERS)
    m["P1"].feed(sale("O1", [("hardware", 1, 100_000)], partner="P1"))
    m["P2"].feed(sale("O1", [("hardware", 1, 300_000)], partner="P2"))
    assert m.paid(m.close("2026-12")) == {"P1": 500, "P2": 1_500}


MULTIPLIED = REBATE.format(mode="retroactive", extra="") + """
- kind: satisfaction
  id: csat
  multiplier:
    applies_to: [rebate]
    surveys_min: 2
    bands:
      - {at_least_x100: 100, below_x100: 300, multiplier_bp: 9_000}
      - {at_least_x100: 300, below_x100: 420, multiplier_bp: 10_000}
      - {at_least_x100: 420, multiplier_bp: 11_000}
"""


def test_satisfaction_multiplier_scales_the_rebate() -> None:
    """Rebate 2 % of 600,000.00 = 12,000.00. P1 averages 4.5 (5, 4): x 1.1 -> +1,200.00.
    P2 averages 2.5 (3, 2): x 0.9 -> -1,200.00. P3 has one survey (< surveys_min): x 1.
    Exactly 4.20 (5, 4, 4, 4, 4 = 21 / 5) is in the 1.1 band (at_least inclusive)."""
    m = market(MULTIPLIED, 4)
    for pid, scores in [("P1", [5, 4]), ("P2", [3, 2]), ("P3", [5]), ("P4", [5, 4, 4, 4, 4])]:
        m[pid].feed(sale("O1", [("hardware", 1, 60_000_000)], partner=pid))
        m[pid].feed(*(survey(f"S{i}", s, partner=pid) for i, s in enumerate(scores)))
    drafts = m.close("2026-03")
    assert m.paid(drafts, "csat") == {"P1": 120_000, "P2": -120_000, "P4": 120_000}
    assert m.paid(drafts) == {"P1": 1_320_000, "P2": 1_080_000, "P3": 1_200_000,
                              "P4": 1_320_000}
    assert drafts["P2"][1].kind is RecordKind.CLAWBACK


AWARD = """
- kind: non_cash_award
  id: club
  pays: AWARD:trip
  period: year
  condition: {metric: net_sales, at_least: 1_000_000}
  unit_cost: 450_000
"""


def test_non_cash_award_is_its_own_asset() -> None:
    m = market(AWARD, 2)
    m["P1"].feed(sale("O1", [("hardware", 1, 1_000_000)], partner="P1"))
    m["P2"].feed(sale("O1", [("hardware", 1, 999_999)], partner="P2"))
    drafts = m.close("2026-12")
    assert list(drafts) == ["P1"]
    assert m["P1"].available("AWARD:trip") == 1
    assert drafts["P1"][0].explanation.inputs["budget_cost"] == 450_000


def test_budget_prorate_at_close_pays_exactly_what_is_left() -> None:
    """Budget 10,000.00 with 4,000.00 spent: 6,000.00 left for rebates of 12,000.00 and
    1,000.00 (13,000.00): factor 6/13 -> 5,538.46 and 461.54, summing to 6,000.00."""
    m = market(REBATE.format(mode="retroactive", extra=""), 2,
               budget="budget: 1_000_000\non_budget_exhausted: prorate")
    m["P1"].feed(sale("O1", [("hardware", 1, 60_000_000)], partner="P1"))
    m["P2"].feed(sale("O1", [("hardware", 1, 10_000_000)], partner="P2"))
    drafts = m.close("2026-03", budgets={("prog", 1): 400_000})
    assert m.paid(drafts) == {"P1": 553_846, "P2": 46_154}
    assert drafts["P1"][0].explanation.inputs["prorate_factor"] == "6/13"


def test_budget_stop_at_close_cuts_the_award_that_reaches_it() -> None:
    m = market(REBATE.format(mode="retroactive", extra=""), 2,
               budget="budget: 1_000_000\non_budget_exhausted: stop")
    m["P1"].feed(sale("O1", [("hardware", 1, 60_000_000)], partner="P1"))
    m["P2"].feed(sale("O1", [("hardware", 1, 10_000_000)], partner="P2"))
    drafts = m.close("2026-03", budgets={("prog", 1): 400_000})
    assert m.paid(drafts) == {"P1": 600_000}


def test_closing_twice_gives_the_same_ids_and_closed_states_get_nothing() -> None:
    m = market(REBATE.format(mode="retroactive", extra=""), 2)
    m["P1"].feed(sale("O1", [("hardware", 1, 60_000_000)], partner="P1"))
    states = {pid: p.state for pid, p in m.partners.items()}
    cp = m.programs[0]
    first = close_period("2026-03", cp, states)
    again = close_period("2026-03", cp, states)
    assert {p: [d.record_id for d in ds] for p, ds in first.drafts.items()} == {
        p: [d.record_id for d in ds] for p, ds in again.drafts.items()}
    assert first == again
    assert close_period("2026-03", cp, first.states).drafts == {}


TIERS = """
- id: registered
  name: Registered
- id: silver
  name: Silver
  qualify: {window_months: 3, net_sales_min: 1_000_000}
  grace_periods: 1
"""

TIER_RULES = """
- kind: commission
  id: com
  pays: currency
  rates:
    - {category: hardware, rate_bp: 100}
"""


def test_tier_upgrade_immediate_demotion_after_grace_at_period_end() -> None:
    """Monthly program. Silver on the January sale (10,000.00 in the 3-month window).
    End of April: the window Feb-Apr has nothing: one period below, kept (grace 1).
    End of May: two in a row: back to registered, recorded as a value-free tier change."""
    m = market(TIER_RULES, 1, tiers=TIERS, period="month")
    drafts = m["P1"].feed(sale("O1", [("hardware", 1, 1_000_000)]))
    assert drafts[-1].kind is RecordKind.TIER_CHANGE
    for month in ["2026-01", "2026-02", "2026-03", "2026-04"]:
        assert m.close(month) == {}
    assert m["P1"].state.tiers["prog"].below_periods == 1
    drafts = m.close("2026-05")
    [change] = drafts["P1"]
    assert change.kind is RecordKind.TIER_CHANGE and change.postings == ()
    assert (change.explanation.inputs["from"], change.explanation.inputs["to"]) == (
        "silver", "registered")
    assert m["P1"].state.tiers["prog"].tier == "registered"


def test_multiplier_on_a_per_sale_rule_uses_the_period_counter() -> None:
    """Commission 1 % of 100,000.00 = 1,000.00 in the quarter; average 5.0 -> x 1.1: the
    close adds 100.00 under the satisfaction rule."""
    rules = """
    - kind: commission
      id: com
      pays: currency
      rates:
        - {category: hardware, rate_bp: 100}
    - kind: satisfaction
      id: csat
      multiplier:
        applies_to: [com]
        bands:
          - {at_least_x100: 100, below_x100: 450, multiplier_bp: 10_000}
          - {at_least_x100: 450, multiplier_bp: 11_000}
    """
    m = market(rules)
    m["P1"].feed(sale("O1", [("hardware", 1, 10_000_000)]), survey("S1", 5))
    drafts = m.close("2026-03")
    assert m.paid(drafts) == {"P1": 10_000}
    assert drafts["P1"][0].explanation.inputs["base_counted"] == 100_000


def test_close_outside_the_program_dates_does_nothing() -> None:
    m = market(RANKING, 1)
    m["P1"].feed(sale("O1", [("hardware", 1, 2_000_000)]))
    assert m.close("2027-01") == {}
