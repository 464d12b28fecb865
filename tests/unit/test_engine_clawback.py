"""Reversals: clawback of exactly what a sale earned, at the rates it was earned at."""

from __future__ import annotations

import datetime as dt

from test_engine_support import (
    T0,
    Partner,
    amounts,
    payout,
    program,
    registered,
    reversal,
    sale,
)

from ledger.core import RecordKind
from processors.engine import RefusalCode

RULES = """
- kind: commission
  id: com
  pays: currency
  hold_days: {hold}
  rates:
    - {{category: hardware, rate_bp: 300}}
    - {{category: support, per_unit: 2500}}
- kind: clawback
  id: returns
  window_days: 180
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
"""

DAY = dt.timedelta(days=1)


def partner(hold: int = 0, tiers: str = "") -> Partner:
    p = Partner([program(RULES.format(hold=hold), tiers=tiers)])
    p.feed(registered())
    return p


def test_full_reversal_takes_back_everything_it_earned() -> None:
    p = partner()
    p.feed(sale("O1", [("hardware", 2, 333_333), ("support", 3, 9_000)]))
    # 3 % of 3,333.33 = 99.99990 -> 100.00; 3 x 25.00 = 75.00.
    assert p.available() == 10_000 + 7_500
    drafts = p.feed(reversal("O1", at=T0 + DAY))
    assert [d.kind for d in drafts] == [RecordKind.CLAWBACK] * 2
    assert amounts(drafts) == [-10_000, -7_500]
    assert p.available() == 0
    assert p.balances() == {}  # the program's expense is back to zero as well
    assert drafts[0].explanation.related_record_ids  # names the accrual it takes back


def test_partial_reversals_round_half_even_and_add_up_exactly() -> None:
    """Commission 3 % of 10,000.50 = 300.015 -> 300.02. Returning 1/3 of the amount
    (3,333.50) takes 300.02 * 3,333.50 / 10,000.50 = 100.0067 -> 100.01; the second third
    takes 200.01 * 3,333.50 / 6,667.00 = 100.005 -> 100.00 (tie, to even); the last part
    takes all that is left, 100.01. Total 300.02, never more."""
    p = partner()
    p.feed(sale("O1", [("hardware", 3, 1_000_050)]))
    claws = []
    for i, (quantity, amount) in enumerate([(1, 333_350), (1, 333_350), (1, 333_350)]):
        drafts = p.feed(reversal("O1", [("L1", quantity, amount)], rid=f"R{i}",
                                 at=T0 + DAY * (i + 1)))
        claws += amounts(drafts)
    assert claws == [-10_001, -10_000, -10_001]
    assert sum(claws) == -30_002 and p.available() == 0


def test_partial_per_unit_reversal_by_quantity() -> None:
    """4 contracts x 25.00 = 100.00; returning 1 of 4 takes 25.00, whatever the refund."""
    p = partner()
    p.feed(sale("O1", [("support", 4, 10_000)]))
    assert amounts(p.feed(reversal("O1", [("L1", 1, 0)], at=T0 + DAY))) == [-2_500]


def test_reversal_after_tier_change_claws_back_at_the_original_rate() -> None:
    """The first sale earned 3 % (registered) of 10,000.00 = 300.00 and made the partner
    gold (4 %). Reversing it later takes back 300.00, not 400.00."""
    p = partner(tiers=TIERS)
    p.feed(sale("O1", [("hardware", 1, 1_000_000)]))
    assert p.state.tiers["prog"].tier == "gold"
    assert amounts(p.feed(sale("O2", [("hardware", 1, 1_000_000)], at=T0 + DAY))) == [40_000]
    drafts = p.feed(reversal("O1", at=T0 + 2 * DAY))
    assert amounts(drafts) == [-30_000]
    assert drafts[0].explanation.inputs["original_formula"] == "net_amount * rate_bp / 10000"


def test_reversal_of_pending_reward_shrinks_the_hold() -> None:
    """With a 30-day hold the clawback comes out of pending; only the rest is released."""
    p = partner(hold=30)
    p.feed(sale("O1", [("hardware", 2, 1_000_000)]))
    assert p.pending() == 30_000
    drafts = p.feed(reversal("O1", [("L1", 1, 500_000)], at=T0 + DAY))
    assert [(x.account, x.amount) for x in drafts[0].postings] == [
        ("partner:P1:pending", -15_000), ("program:prog:expense", 15_000)]
    released = p.due(T0 + 30 * DAY)
    assert amounts(released) == [0]  # pending -> available within the partner
    assert (p.pending(), p.available()) == (0, 15_000)


def test_reversal_after_payout_takes_from_available_even_below_zero() -> None:
    """The 300.00 was paid out; the clawback leaves the partner owing 300.00, and the next
    payout is refused until earnings cover the debt."""
    p = partner()
    p.feed(sale("O1", [("hardware", 1, 1_000_000)]))
    p.feed(payout(30_000))
    p.feed(reversal("O1", at=T0 + DAY))
    assert p.available() == -30_000 and p.state.available["EUR"] == -30_000
    result = p.refused(payout(1, ref="PAY-2"))
    assert result.refusal is not None
    assert result.refusal.code is RefusalCode.INSUFFICIENT_BALANCE


def test_reversal_outside_the_window_takes_nothing_but_reduces_volume() -> None:
    p = partner()
    p.feed(sale("O1", [("hardware", 1, 1_000_000)]))
    assert p.feed(reversal("O1", at=T0 + 181 * DAY)) == []
    assert p.available() == 30_000
    july = p.state.months["2026-07"]
    assert july.net["EUR"]["hardware"] == -1_000_000


def test_reversal_on_the_last_day_of_the_window_is_clawed_back() -> None:
    p = partner()
    p.feed(sale("O1", [("hardware", 1, 1_000_000)]))
    assert amounts(p.feed(reversal("O1", at=T0 + 180 * DAY))) == [-30_000]


def test_refusals_unknown_order_too_much_and_already_reversed() -> None:
    p = partner()
    result = p.refused(reversal("NOPE"))
    assert result.refusal is not None and result.refusal.code is RefusalCode.UNKNOWN_ORDER
    p.feed(sale("O1", [("hardware", 2, 1_000)]))
    result = p.refused(reversal("O1", [("L1", 3, 1_000)]))
    assert result.refusal is not None
    assert (result.refusal.code, result.refusal.path) == (
        RefusalCode.REVERSAL_EXCEEDS_SALE, "$.lines[0].quantity")
    result = p.refused(reversal("O1", [("L9", 1, 1)]))
    assert result.refusal is not None and result.refusal.path == "$.lines[0].line_id"
    p.feed(reversal("O1"))
    result = p.refused(reversal("O1", rid="R2"))
    assert result.refusal is not None
    assert result.refusal.code is RefusalCode.REVERSAL_EXCEEDS_SALE


def test_new_customer_reward_taken_back_when_order_falls_below_minimum() -> None:
    rules = """
    - kind: new_customer
      id: new-logo
      pays: currency
      amount: 20_000
      first_order_min: 100_000
    """
    p = Partner([program(rules)])
    p.feed(registered())
    p.feed(sale("O1", [("hardware", 2, 60_000), ("software", 1, 60_000)], new_customer=True))
    assert p.available() == 20_000
    assert p.feed(reversal("O1", [("L1", 1, 10_000)], at=T0 + DAY)) == []  # 110,000 left
    drafts = p.feed(reversal("O1", [("L1", 1, 50_000)], at=T0 + DAY, rid="R2"))  # 60,000 left
    assert amounts(drafts) == [-20_000]


def test_threshold_bonus_taken_back_when_the_period_falls_below_the_level() -> None:
    """Bonus 500.00 at 10,000.00. A return in the same quarter that leaves 9,000.00 takes
    it back; a later sale crossing the level again pays it again."""
    rules = """
    - kind: threshold_bonus
      id: target
      pays: currency
      level: 1_000_000
      amount: 50_000
    """
    p = Partner([program(rules)])
    p.feed(registered())
    p.feed(sale("O1", [("hardware", 1, 1_000_000)]))
    assert p.available() == 50_000
    assert amounts(p.feed(reversal("O1", [("L1", 1, 100_000)], at=T0 + DAY))) == [-50_000]
    assert amounts(p.feed(sale("O2", [("hardware", 1, 100_000)], at=T0 + 2 * DAY))) == [50_000]


def test_threshold_bonus_taken_back_by_a_return_in_a_later_period() -> None:
    """The return comes in April, but it is of a Q1 sale: Q1 no longer reached the level."""
    rules = """
    - kind: threshold_bonus
      id: target
      pays: currency
      level: 1_000_000
      amount: 50_000
    """
    p = Partner([program(rules)])
    p.feed(registered())
    p.feed(sale("O1", [("hardware", 1, 1_000_000)]))
    april = dt.datetime(2026, 4, 3, tzinfo=dt.UTC)
    assert amounts(p.feed(reversal("O1", at=april))) == [-50_000]
    assert p.available() == 0


def test_threshold_bonus_kept_when_the_period_still_reaches_the_level() -> None:
    """Q1: 10,000.00 (bonus) then 5,000.00 more; returning 4,000.00 leaves 11,000.00."""
    rules = """
    - kind: threshold_bonus
      id: target
      pays: currency
      level: 1_000_000
      amount: 50_000
    """
    p = Partner([program(rules)])
    p.feed(registered())
    p.feed(sale("O1", [("hardware", 2, 1_000_000)]), sale("O2", [("hardware", 1, 500_000)]))
    april = dt.datetime(2026, 4, 3, tzinfo=dt.UTC)
    assert p.feed(reversal("O1", [("L1", 1, 400_000)], at=april)) == []
    assert p.available() == 50_000


def test_clawback_applies_only_to_listed_rules() -> None:
    rules = """
    - kind: commission
      id: com
      pays: currency
      rates:
        - {category: hardware, rate_bp: 300}
    - kind: mdf
      id: fund
      share_bp: 100
    - kind: clawback
      id: returns
      applies_to: [com]
    """
    p = Partner([program(rules)])
    p.feed(registered())
    p.feed(sale("O1", [("hardware", 1, 1_000_000)]))
    drafts = p.feed(reversal("O1", at=T0 + DAY))
    assert [(d.rule_id, amounts([d])[0]) for d in drafts] == [("com", -30_000)]
    assert p.available("MDF:EUR") == 10_000


def test_clawback_frees_cap_room() -> None:
    """Cap 500.00: after 300.00 + 200.00 (cut), returning the first sale frees 300.00."""
    rules = """
    - kind: commission
      id: com
      pays: currency
      cap: 50_000
      rates:
        - {category: hardware, rate_bp: 300}
    """
    p = Partner([program(rules)])
    p.feed(registered())
    p.feed(sale("O1", [("hardware", 1, 1_000_000)]), sale("O2", [("hardware", 1, 1_000_000)]))
    p.feed(reversal("O1", at=T0 + DAY))
    assert amounts(p.feed(sale("O3", [("hardware", 1, 1_000_000)], at=T0 + 2 * DAY))) == [
        30_000]
