"""Per-sale rules: commission, caps, eligibility, holds, new customer, threshold, MDF."""

from __future__ import annotations

import datetime as dt

from test_engine_support import (
    T0,
    Partner,
    amounts,
    program,
    registered,
    sale,
    training,
)

from ledger.core import RecordKind
from processors.engine import RefusalCode

COMMISSION = """
- kind: commission
  id: com
  pays: currency
  {extra}
  rates:
    - {{category: hardware, rate_bp: 300}}
    - {{category: software, rate_bp: 800}}
    - {{category: support, per_unit: 2500}}
"""

TIERS = """
- id: registered
  name: Registered
- id: gold
  name: Gold
  qualify: {net_sales_min: 1_000_000}
  benefits:
    commission_overrides:
      - {rule: com, category: hardware, rate_bp: 400}
  grace_periods: 1
"""


def commission(extra: str = "", tiers: str = "") -> Partner:
    p = Partner([program(COMMISSION.format(extra=extra), tiers=tiers)])
    p.feed(registered())
    return p


def test_commission_rate_per_unit_and_unknown_category() -> None:
    """3 % of 10,000.50 = 300.015 -> 300.02 (half-even on .5 of a cent: 30001.5 -> 30002);
    3 support contracts x 25.00 = 75.00; services has no rate in this rule: nothing."""
    p = commission()
    drafts = p.feed(sale("O1", [("hardware", 1, 1_000_050), ("support", 3, 9_000),
                               ("services", 1, 50_000)]))
    assert amounts(drafts) == [30_002, 7_500]
    first = drafts[0].explanation
    assert first.rounding is not None
    assert (first.rounding.exact, first.rounding.result) == ("30001.5", 30_002)
    assert first.formula == "net_amount * rate_bp / 10000"
    assert first.inputs["rate_bp"] == 300 and first.inputs["net_amount"] == 1_000_050
    assert drafts[1].explanation.rounding is None  # per unit: exact, nothing rounded
    assert p.available() == 37_502
    assert all(d.kind is RecordKind.ACCRUAL and d.rule_id == "com" for d in drafts)


def test_half_even_rounds_ties_to_even() -> None:
    """3 % of 50 = 1.5 -> 2; 3 % of 150 = 4.5 -> 4 (ties go to the even neighbour)."""
    p = commission()
    drafts = p.feed(sale("O1", [("hardware", 1, 50), ("hardware", 1, 150)]))
    assert amounts(drafts) == [2, 4]


def test_tier_override_applies_and_upgrade_follows_the_sale() -> None:
    """A sale that qualifies the partner for gold earns at its old rate (3 %: 10,000.00 ->
    300.00); the upgrade is recorded after it, and the next sale earns 4 %."""
    p = commission(tiers=TIERS)
    drafts = p.feed(sale("O1", [("hardware", 1, 1_000_000)]))
    assert [d.kind for d in drafts] == [RecordKind.ACCRUAL, RecordKind.TIER_CHANGE]
    assert amounts(drafts[:1]) == [30_000]
    assert drafts[1].postings == () and drafts[1].explanation.inputs["to"] == "gold"
    drafts = p.feed(sale("O2", [("hardware", 1, 100_000)], at=T0 + dt.timedelta(hours=1)))
    assert amounts(drafts) == [4_000]
    assert drafts[0].explanation.inputs["tier_override"] is True


def test_cap_hit_mid_event_pays_up_to_the_cap() -> None:
    """Cap 500.00 per quarter: line 1 earns 300.00, line 2 would earn 300.00 but only
    200.00 is left, line 3 earns nothing; the next quarter starts afresh."""
    p = commission(extra="cap: 50_000")
    drafts = p.feed(sale("O1", [("hardware", 1, 1_000_000)] * 3))
    assert amounts(drafts) == [30_000, 20_000]
    cut = drafts[1].explanation.inputs
    assert (cut["cap"], cut["cap_used_before"], cut["cut_by_cap"]) == (50_000, 30_000, 10_000)
    assert p.feed(sale("O2", [("hardware", 1, 100)], at=T0 + dt.timedelta(days=1))) == []
    april = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    assert amounts(p.feed(sale("O3", [("hardware", 1, 100_000)], at=april))) == [3_000]


def test_hold_keeps_reward_pending_until_the_window_ends() -> None:
    """hold_days 30: pending at once, available 30 days later (inclusive), not a moment
    before; releasing twice changes nothing."""
    p = commission(extra="hold_days: 30")
    p.feed(sale("O1", [("hardware", 1, 100_000)]))
    assert (p.pending(), p.available()) == (3_000, 0)
    assert p.due(T0 + dt.timedelta(days=30, microseconds=-1)) == []
    released = p.due(T0 + dt.timedelta(days=30))
    assert [d.kind for d in released] == [RecordKind.HOLD_RELEASE]
    assert released[0].occurred_at == T0 + dt.timedelta(days=30)
    assert (p.pending(), p.available()) == (0, 3_000)
    assert p.due(T0 + dt.timedelta(days=60)) == []


ELIGIBLE = """
- kind: commission
  id: com
  pays: currency
  eligibility:
    tenure_months_min: 3
    regions: [DE, AT]
    partner_kinds: [distributor]
    min_period_volume: 200_000
  rates:
    - {category: hardware, rate_bp: 1000}
"""


def test_eligibility_tenure_region_kind_and_period_volume() -> None:
    """Each condition alone shuts the rule; the period volume includes the current sale."""
    cp = program(ELIGIBLE)

    def earned(**profile: object) -> list[int]:
        p = Partner([cp])
        p.feed(registered(**profile))  # type: ignore[arg-type]
        return amounts(p.feed(sale("O1", [("hardware", 1, 200_000)])))

    assert earned() == [20_000]
    # Joined 2025-10-11: 2 full months on 2026-01-10 (3 from 2026-01-11 on).
    assert earned(joined_on=dt.date(2025, 10, 11)) == []
    assert earned(joined_on=dt.date(2025, 10, 10)) == [20_000]
    assert earned(region="FR") == []
    assert earned(kind="agent") == []
    assert earned(status="suspended") == []
    p = Partner([cp])
    p.feed(registered())
    assert p.feed(sale("O1", [("hardware", 1, 199_999)])) == []  # below the volume
    # 199,999 + 101 = 200,100 >= 200,000: 10 % of 1.01 = 0.101 -> 0.10.
    assert amounts(p.feed(sale("O2", [("hardware", 1, 101)]))) == [10]


def test_eligibility_by_tier() -> None:
    rules = """
    - kind: commission
      id: com
      pays: currency
      eligibility: {tiers: [gold]}
      rates:
        - {category: hardware, rate_bp: 100}
    """
    tiers = """
    - id: registered
      name: Registered
    - id: gold
      name: Gold
      qualify: {net_sales_min: 1_000_000}
    """
    p = Partner([program(rules, tiers=tiers)])
    p.feed(registered())
    drafts = p.feed(sale("O1", [("hardware", 1, 1_000_000)]))
    assert [d.kind for d in drafts] == [RecordKind.TIER_CHANGE]  # registered earns nothing
    assert amounts(p.feed(sale("O2", [("hardware", 1, 100_000)]))) == [1_000]


def test_sale_in_another_currency_earns_nothing_and_duplicate_order_is_refused() -> None:
    p = commission()
    assert p.feed(sale("O1", [("hardware", 1, 100_000)], currency="USD")) == []
    refused = p.refused(sale("O1", [("hardware", 1, 100_000)]))
    assert refused.refusal is not None
    assert refused.refusal.code is RefusalCode.DUPLICATE_ORDER


NEW_CUSTOMER = """
- kind: new_customer
  id: new-logo
  pays: currency
  amount: 20_000
  new_to: {new_to}
  first_order_min: 100_000
"""


def test_new_customer_to_manufacturer_paid_once_per_customer() -> None:
    """200.00 for a customer flagged new whose first order is at least 1,000.00; the same
    customer never pays twice; an order below the minimum earns nothing."""
    p = Partner([program(NEW_CUSTOMER.format(new_to="manufacturer"))])
    p.feed(registered())
    assert amounts(p.feed(sale("O1", [("hardware", 1, 99_999)], customer="C9",
                               new_customer=True))) == []
    assert amounts(p.feed(sale("O2", [("hardware", 1, 100_000)], customer="C1",
                               new_customer=True))) == [20_000]
    assert p.feed(sale("O3", [("hardware", 1, 500_000)], customer="C1",
                       new_customer=True)) == []
    assert p.feed(sale("O4", [("hardware", 1, 500_000)], customer="C2")) == []  # not new


def test_new_customer_to_partner_counts_first_sale_by_this_partner() -> None:
    p = Partner([program(NEW_CUSTOMER.format(new_to="partner"))])
    p.feed(registered())
    assert amounts(p.feed(sale("O1", [("hardware", 1, 100_000)], customer="C1"))) == [20_000]
    assert p.feed(sale("O2", [("hardware", 1, 100_000)], customer="C1")) == []


THRESHOLD = """
- kind: threshold_bonus
  id: target
  pays: currency
  metric: net_sales
  level: 1_000_000
  amount: 50_000
  once_per: {once}
  categories: [hardware]
"""


def test_threshold_paid_when_period_volume_first_reaches_the_level() -> None:
    """Level 10,000.00 of hardware in the quarter: 9,999.99 pays nothing, the sale that
    brings it to exactly 10,000.00 pays 500.00 (at_least is inclusive), later sales
    nothing; software does not count; the next quarter can pay again."""
    p = Partner([program(THRESHOLD.format(once="period"))])
    p.feed(registered())
    assert p.feed(sale("O1", [("hardware", 1, 999_999), ("software", 1, 5_000_000)])) == []
    drafts = p.feed(sale("O2", [("hardware", 1, 1)]))
    assert amounts(drafts) == [50_000]
    inputs = drafts[0].explanation.inputs
    assert (inputs["before"], inputs["after"], inputs["level"]) == (999_999, 1_000_000, 1_000_000)
    assert p.feed(sale("O3", [("hardware", 1, 5_000_000)])) == []
    april = dt.datetime(2026, 4, 2, tzinfo=dt.UTC)
    assert amounts(p.feed(sale("O4", [("hardware", 1, 2_000_000)], at=april))) == [50_000]


def test_threshold_once_per_program() -> None:
    p = Partner([program(THRESHOLD.format(once="program"))])
    p.feed(registered())
    assert amounts(p.feed(sale("O1", [("hardware", 1, 1_000_000)]))) == [50_000]
    april = dt.datetime(2026, 4, 2, tzinfo=dt.UTC)
    assert p.feed(sale("O2", [("hardware", 1, 2_000_000)], at=april)) == []


MDF = """
- kind: mdf
  id: fund
  share_bp: 100
  categories: [hardware, software]
  cap: 15_000
  auto_approve_max: 5_000
  expiry_months: 12
"""

MDF_TIERS = """
- id: registered
  name: Registered
- id: gold
  name: Gold
  qualify: {net_sales_min: 100_000_000}
  benefits: {mdf_share_bp: 200}
"""


def test_mdf_accrues_share_of_listed_categories_into_its_own_asset() -> None:
    """1 % of 10,000.00 hardware = 100.00 into MDF:EUR; services are not listed; the
    second line reaches the cap of 150.00 and is cut to 50.00."""
    p = Partner([program(MDF, tiers=MDF_TIERS)])
    p.feed(registered())
    drafts = p.feed(sale("O1", [("hardware", 1, 1_000_000), ("services", 1, 1_000_000),
                                ("software", 1, 1_000_000)]))
    assert amounts(drafts) == [10_000, 5_000]
    assert {p.asset for d in drafts for p in d.postings} == {"MDF:EUR"}
    assert p.available("MDF:EUR") == 15_000 and p.available("EUR") == 0


def test_budget_stop_cuts_per_sale_awards_at_the_budget() -> None:
    """Budget 1,000.00 with 400.00 already spent: 600.00 left. Commission 3 % on three
    lines of 10,000.00 (300.00 each): 300.00, 300.00, then nothing; the cut is explained."""
    cp = program(COMMISSION.format(extra=""), budget="budget: 100_000\non_budget_exhausted: stop")
    p = Partner([cp], budgets={("prog", 1): 40_000})
    p.feed(registered())
    drafts = p.feed(sale("O1", [("hardware", 1, 1_000_000)] * 3))
    assert amounts(drafts) == [30_000, 30_000]
    p.budgets = {("prog", 1): 90_000}
    drafts = p.feed(sale("O2", [("hardware", 1, 1_000_000)]))
    assert amounts(drafts) == [10_000]
    assert drafts[0].explanation.inputs["cut_by_budget"] == 20_000


def test_points_on_hold_start_their_expiry_when_released() -> None:
    rules = """
    - kind: training
      id: academy
      pays: points
      per_course: 200
      per_certification: 1_000
      hold_days: 10
    - kind: points
      id: policy
      expiry_months: 1
    """
    p = Partner([program(rules)])
    p.feed(registered(), training("NET-101"))
    assert p.state.lots == []
    p.due(T0 + dt.timedelta(days=10))
    assert [(lot.available_on, lot.expires_on) for lot in p.state.lots] == [
        (dt.date(2026, 1, 20), dt.date(2026, 2, 20))]
    assert amounts(p.due(dt.datetime(2026, 2, 20, tzinfo=dt.UTC))) == [-200]


def test_a_new_version_takes_over_from_its_effective_date() -> None:
    """v1 pays 3 % from January with no end; v2 pays 5 % from April: a sale in May is paid
    by v2 only, and records name the version."""
    import msgspec

    from processors.engine import compile_program

    v1 = program(COMMISSION.format(extra=""))
    v2 = compile_program(msgspec.structs.replace(
        program(COMMISSION.format(extra="").replace("rate_bp: 300", "rate_bp: 500")).program,
        version=2, effective_from=dt.date(2026, 4, 1)))
    v1 = compile_program(msgspec.structs.replace(v1.program, effective_to=None))
    p = Partner([v2, v1])
    p.feed(registered())
    jan = p.feed(sale("O1", [("hardware", 1, 100_000)]))
    may = p.feed(sale("O2", [("hardware", 1, 100_000)], at=dt.datetime(2026, 5, 1, tzinfo=dt.UTC)))
    assert [(d.program_version, amounts([d])[0]) for d in jan + may] == [(1, 3_000), (2, 5_000)]
