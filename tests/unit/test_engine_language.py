"""Smaller parts of the program language: tier windows in days, commission rates without
a category (and programs that list no categories), points that never expire, and
eligibility on the period's average satisfaction. Amounts in EUR cents."""

from __future__ import annotations

import datetime as dt

from test_engine_support import (
    Partner,
    amounts,
    program,
    redeem,
    registered,
    reversal,
    sale,
    survey,
    training,
)

from ledger.core import RecordKind

UTC = dt.UTC
JAN1 = dt.datetime(2026, 1, 1, 9, tzinfo=UTC)

DAY_TIERS = """
- id: registered
  name: Registered
- id: silver
  name: Silver
  qualify: {window_days: 30, net_sales_min: 1_000_000, certifications_min: 1}
"""
COMMISSION = """
- kind: commission
  id: commission
  pays: currency
  rates: [{category: hardware, rate_bp: 300}]
"""


def day_partner() -> Partner:
    p = Partner([program(COMMISSION, tiers=DAY_TIERS)])
    p.feed(registered(at=JAN1))
    return p


def tier_changes(drafts: list[object]) -> list[object]:
    return [d for d in drafts if d.kind is RecordKind.TIER_CHANGE]  # type: ignore[attr-defined]


def test_a_tier_window_in_days_counts_the_last_30_days_only() -> None:
    """Silver asks for EUR 10,000.00 and a certification within 30 days. 6,000.00 on 1
    January and 5,000.00 on 30 January are 11,000.00 within 30 days (1-30 January): up.
    The same sales a day later apart (1 and 31 January) are 31 days: no upgrade, and a
    return inside the window lowers the sum."""
    up = day_partner()
    up.feed(training("NET-201", certification="CNI", at=JAN1),
            sale("O1", [("hardware", 1, 600_000)], at=JAN1))
    [change] = tier_changes(up.feed(sale("O2", [("hardware", 1, 500_000)],
                                         at=dt.datetime(2026, 1, 30, tzinfo=UTC))))
    inputs = change.explanation.inputs  # type: ignore[attr-defined]
    assert (inputs["to"], inputs["window_days"], inputs["net_sales"]) == ("silver", 30, 1_100_000)
    assert "window_months" not in inputs

    late = day_partner()
    late.feed(training("NET-201", certification="CNI", at=JAN1),
              sale("O1", [("hardware", 1, 600_000)], at=JAN1))
    assert tier_changes(late.feed(sale("O2", [("hardware", 1, 500_000)],
                                       at=dt.datetime(2026, 1, 31, tzinfo=UTC)))) == []

    returned = day_partner()
    returned.feed(training("NET-201", certification="CNI", at=JAN1),
                  sale("O1", [("hardware", 1, 600_000)], at=JAN1),
                  reversal("O1", [("L1", 1, 200_000)], at=dt.datetime(2026, 1, 5, tzinfo=UTC)))
    assert tier_changes(returned.feed(sale("O2", [("hardware", 1, 500_000)],
                                           at=dt.datetime(2026, 1, 20, tzinfo=UTC)))) == []
    assert returned.state.days["2026-01-05"].net == {"EUR": -200_000}


def test_daily_facts_are_kept_only_when_a_program_measures_days() -> None:
    p = Partner([program(COMMISSION)])
    p.feed(registered(at=JAN1), sale("O1", [("hardware", 1, 600_000)], at=JAN1))
    assert p.state.days == {}


CATCH_ALL = """
- kind: commission
  id: commission
  pays: currency
  rates:
    - {category: hardware, rate_bp: 300}
    - {rate_bp: 100}
"""


def test_a_rate_without_category_pays_every_other_category() -> None:
    """A program that lists no categories: hardware earns its 3 %, cables (named nowhere)
    the rule's 1 % without a category: 3 % of 1,000.00 + 1 % of 500.00 = 30.00 + 5.00."""
    p = Partner([program(CATCH_ALL, categories=False)])
    p.feed(registered())
    drafts = p.feed(sale("O1", [("hardware", 1, 100_000), ("cables", 5, 50_000)]))
    assert amounts(drafts) == [3_000, 500]
    assert "rate_category" not in drafts[0].explanation.inputs
    assert drafts[1].explanation.inputs["rate_category"] == "*"


TIER_CATCH_ALL = """
- id: registered
  name: Registered
- id: gold
  name: Gold
  qualify: {net_sales_min: 1}
  benefits:
    commission_overrides: [{rule: commission, rate_bp: 200}]
"""


def test_a_tier_override_without_category_replaces_the_rule_rate_without_category() -> None:
    """At gold (reached with the first sale), cables earn 2 % instead of 1 %; hardware
    keeps its own 3 %: 3 % of 1,000.00 and 2 % of 500.00 = 30.00 + 10.00."""
    p = Partner([program(CATCH_ALL, tiers=TIER_CATCH_ALL, categories=False)])
    p.feed(registered(), sale("O0", [("hardware", 1, 1)]))
    drafts = p.feed(sale("O1", [("hardware", 1, 100_000), ("cables", 5, 50_000)]))
    assert amounts(drafts) == [3_000, 1_000]
    assert drafts[1].explanation.inputs["tier_override"] is True


NO_EXPIRY = """
- kind: training
  id: academy
  pays: points
  per_course: 200
  per_certification: 1_000
- kind: points
  id: points-policy
  catalogue: [{id: mug, name: Mug, cost: 100}]
"""


def test_points_without_expiry_never_expire_and_can_be_redeemed() -> None:
    p = Partner([program(NO_EXPIRY)])
    p.feed(registered(), training("NET-101"))
    assert p.state.lots == []
    assert p.due(dt.datetime(2036, 1, 1, tzinfo=UTC)) == []
    assert p.available("PTS:prog") == 200
    assert amounts(p.feed(redeem(200, "mug"))) == [-200]


SATISFIED = """
- kind: commission
  id: commission
  pays: currency
  period: month
  rates: [{category: hardware, rate_bp: 500}]
  eligibility: {min_avg_satisfaction_x100: 400, min_surveys: 2}
"""


def test_eligibility_on_the_periods_average_satisfaction_so_far() -> None:
    """A sale before any survey of the month earns nothing; after scores 5 and 4 (4.50
    over two surveys) 5 % of 1,000.00 = 50.00; after a 1 (3.33) nothing again."""
    p = Partner([program(SATISFIED)])
    p.feed(registered())
    at = dt.datetime(2026, 2, 1, tzinfo=UTC)
    assert p.feed(sale("O1", [("hardware", 1, 100_000)], at=at)) == []
    p.feed(survey("S1", 5, at=at), survey("S2", 4, at=at))
    assert amounts(p.feed(sale("O2", [("hardware", 1, 100_000)], at=at))) == [5_000]
    p.feed(survey("S3", 1, at=at))
    assert p.feed(sale("O3", [("hardware", 1, 100_000)], at=at)) == []


def test_a_state_stored_before_the_goal_kinds_still_decodes() -> None:
    """Schemas only grow: a partner state written without the fields added for goals
    (daily facts, targets, gates, override earnings, a profile's parent, a hold's period)
    decodes, with those fields empty."""
    import msgspec

    from processors.engine import decode_state, encode_state

    p = Partner([program(COMMISSION.replace("rates:", "hold_days: 30\n  rates:"))])
    p.feed(registered(), sale("O1", [("hardware", 1, 100_000)]))
    stored = msgspec.json.decode(encode_state(p.state))
    for field in ("days", "targets", "gated", "override_earned"):
        del stored[field]
    del stored["profile"]["parent"]
    del stored["holds"][0]["period"]
    old = decode_state(msgspec.json.encode(stored))
    assert (old.days, old.targets, old.gated, old.override_earned) == ({}, {}, {}, {})
    assert old.profile is not None and old.profile.parent is None
    assert old.holds[0].period == "" and old.holds[0].left == 3_000
