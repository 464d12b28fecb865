"""Surveys, trainings, points (expiry, redemption), payouts, adjustments, fund claims."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from test_engine_support import (
    T0,
    Partner,
    adjust,
    amounts,
    approve,
    claim,
    payout,
    program,
    redeem,
    registered,
    reject,
    sale,
    survey,
    training,
)

from ledger.core import RecordKind
from processors.engine import RefusalCode
from schemas.money import MAX_BALANCE_MINOR_UNITS, MAX_MINOR_UNITS

DAY = dt.timedelta(days=1)

POINTS = """
- kind: satisfaction
  id: csat
  pays: points
  per_score: {good_at_least: 5, bonus: 50, bad_at_most: 2, penalty: 100}
- kind: training
  id: academy
  pays: points
  per_course: 200
  per_certification: 1_000
- kind: points
  id: points-policy
  expiry_months: 18
  catalogue:
    - {id: mug, name: Mug, cost: 250}
    - {id: headset, name: Headset, cost: 12_000}
"""
PTS = "PTS:prog"


def points_partner() -> Partner:
    p = Partner([program(POINTS)])
    p.feed(registered())
    return p


def test_survey_bonus_per_good_score_and_penalty_per_bad_score() -> None:
    """5 earns 50 points, 4 and 3 nothing, 2 and 1 cost 100 each (负激励): 50 - 200."""
    p = points_partner()
    drafts = p.feed(*(survey(f"S{i}", score) for i, score in enumerate([5, 4, 3, 2, 1])))
    assert [d.kind for d in drafts] == [RecordKind.ACCRUAL, RecordKind.PENALTY,
                                        RecordKind.PENALTY]
    assert amounts(drafts) == [50, -100, -100]
    assert drafts[1].postings[-1].account == "program:prog:penalty"
    assert p.available(PTS) == -150


def test_surveys_on_another_scale_do_not_count() -> None:
    p = points_partner()
    assert p.feed(survey("S1", 10, scale="nps_0_10"), survey("S2", 1, scale="nps_0_10")) == []
    assert p.state.months["2026-01"].surveys["nps_0_10"].count == 2


def test_training_pays_once_per_course_and_more_for_a_certification() -> None:
    p = points_partner()
    drafts = p.feed(
        training("NET-101"),
        training("NET-101", n=1),  # the same course again: nothing
        training("NET-201", certification="CCNA"),
        training("NET-301", passed=False),
    )
    assert amounts(drafts) == [200, 1_000]
    assert p.state.certifications == {"CCNA": "2026-01"}


def test_points_expire_on_the_day_not_before() -> None:
    """Earned 2026-01-10 with 18 months: redeemable through 2027-07-09, expired from
    00:00 UTC on 2027-07-10 (the day itself is already expired)."""
    p = points_partner()
    p.feed(training("NET-101"))
    expires = dt.datetime(2027, 7, 10, tzinfo=dt.UTC)
    assert p.due(expires - dt.timedelta(microseconds=1)) == []
    drafts = p.due(expires)
    assert [d.kind for d in drafts] == [RecordKind.EXPIRY] and amounts(drafts) == [-200]
    assert drafts[0].occurred_at == expires
    assert drafts[0].postings[-1].account == "points:expired"
    assert p.available(PTS) == 0
    assert p.due(expires + DAY) == []


def test_expiry_on_the_last_day_of_a_shorter_month() -> None:
    """Earned 2026-08-31 + 18 months = 2028-02-29 (leap year, month end)."""
    p = points_partner()
    p.feed(training("NET-101", at=dt.datetime(2026, 8, 31, 15, tzinfo=dt.UTC)))
    assert p.state.lots[0].expires_on == dt.date(2028, 2, 29)


def test_redemption_uses_oldest_points_first_and_only_the_rest_expires() -> None:
    p = points_partner()
    p.feed(training("NET-101"))  # 200, expiring 2027-07-10
    p.feed(training("NET-201", certification="X", at=T0 + 40 * DAY))  # 1,000, later expiry
    drafts = p.feed(redeem(250, "mug", at=T0 + 50 * DAY))
    assert [d.kind for d in drafts] == [RecordKind.REDEMPTION] and amounts(drafts) == [-250]
    assert drafts[0].postings[-1].account == "points:redeemed"
    # The 200 of the first lot are spent first, 50 of the second.
    assert [lot.left for lot in p.state.lots] == [950]
    assert amounts(p.due(dt.datetime(2027, 7, 10, tzinfo=dt.UTC))) == []


def test_redemption_refusals() -> None:
    p = points_partner()
    p.feed(training("NET-101"))
    cases = [
        (redeem(250, "mug"), RefusalCode.INSUFFICIENT_BALANCE),
        (redeem(100, "mug", n=1), RefusalCode.WRONG_POINTS),
        (redeem(250, "yacht", n=2), RefusalCode.UNKNOWN_REWARD),
    ]
    for event, code in cases:
        result = p.refused(event)
        assert result.refusal is not None and result.refusal.code is code
        assert result.state is p.state  # unchanged


COMMISSION = """
- kind: commission
  id: com
  pays: currency
  rates:
    - {category: hardware, rate_bp: 1000}
"""


def test_payout_debits_available_and_refuses_more() -> None:
    p = Partner([program(COMMISSION)])
    p.feed(registered(), sale("O1", [("hardware", 1, 100_000)]))
    result = p.refused(payout(10_001))
    assert result.refusal is not None and result.refusal.code is RefusalCode.INSUFFICIENT_BALANCE
    assert "at most 10000" in result.refusal.message
    drafts = p.feed(payout(10_000))
    assert drafts[0].kind is RecordKind.PAYOUT
    assert [(x.account, x.amount) for x in drafts[0].postings] == [
        ("partner:P1:available", -10_000), ("payout:clearing", 10_000)]
    assert p.available() == 0


def test_adjustments_up_and_down_with_author_and_reason() -> None:
    p = points_partner()
    drafts = p.feed(adjust("points", 500), adjust("EUR", 1_000, n=1),
                    adjust("award:trip", 1, n=2))
    assert [d.kind for d in drafts] == [RecordKind.ADJUSTMENT] * 3
    assert drafts[0].explanation.author == "finance-1"
    assert p.available(PTS) == 500 and p.available("AWARD:trip") == 1
    p.feed(adjust(PTS, -200, n=3))
    assert p.available(PTS) == 300
    result = p.refused(adjust("EUR", -1_001, n=4))
    assert result.refusal is not None and result.refusal.code is RefusalCode.INSUFFICIENT_BALANCE
    result = p.refused(adjust("gold bars", 1, n=5))
    assert result.refusal is not None and result.refusal.code is RefusalCode.UNKNOWN_ASSET


def test_an_adjustment_beyond_the_largest_balance_is_refused_and_posts_nothing() -> None:
    """1,000 adjustments of the largest amount fill an account (10^18); the next is refused
    with balance_limit, so no balance or sum of balances can leave 64 bits."""
    p = points_partner()
    p.feed(*(adjust("EUR", MAX_MINOR_UNITS, n=i) for i in range(1000)))
    assert p.available("EUR") == MAX_BALANCE_MINOR_UNITS
    result = p.refused(adjust("EUR", 1, n=1000))
    assert result.refusal is not None and result.refusal.code is RefusalCode.BALANCE_LIMIT
    assert result.refusal.message == (
        f"available EUR balance is {MAX_BALANCE_MINOR_UNITS}: an account holds at most"
        f" {MAX_BALANCE_MINOR_UNITS}, so expected an amount of at most 0, got 1"
    )
    assert p.available("EUR") == MAX_BALANCE_MINOR_UNITS
    p.feed(adjust("EUR", -5, n=1001), adjust("EUR", 5, n=1002))  # back to the limit: fine
    assert p.available("EUR") == MAX_BALANCE_MINOR_UNITS


def test_points_asset_is_ambiguous_with_two_point_programs() -> None:
    p = Partner([program(POINTS), program(POINTS, program_id="other")])
    p.feed(registered())
    result = p.refused(adjust("points", 1))
    assert result.refusal is not None and result.refusal.code is RefusalCode.AMBIGUOUS_ASSET


MDF = """
- kind: mdf
  id: fund
  share_bp: 100
  auto_approve_max: 5_000
"""

MDF_TIERS = """
- id: registered
  name: Registered
- id: gold
  name: Gold
  qualify: {net_sales_min: 2_000_000}
  benefits: {mdf_share_bp: 200}
"""


@pytest.fixture
def fund() -> Partner:
    """1 % of 20,000.00 = 200.00 in the fund (the sale makes the partner gold, at 2 %
    from the next sale on)."""
    p = Partner([program(MDF, tiers=MDF_TIERS)])
    p.feed(registered(), sale("O1", [("hardware", 1, 2_000_000)]))
    return p


def test_mdf_share_follows_the_tier(fund: Partner) -> None:
    assert fund.available("MDF:EUR") == 20_000
    assert amounts(fund.feed(sale("O2", [("hardware", 1, 100_000)]))) == [2_000]  # 2 %


def test_small_claim_is_approved_automatically(fund: Partner) -> None:
    drafts = fund.feed(claim("K1", 5_000))
    assert [d.kind for d in drafts] == [RecordKind.PAYOUT]
    assert fund.available("MDF:EUR") == 15_000


def test_large_claim_waits_for_finance_and_reserves_the_fund(fund: Partner) -> None:
    assert fund.feed(claim("K1", 15_000)) == []
    result = fund.refused(claim("K2", 5_001))  # 20,000 - 15,000 reserved = 5,000 left
    assert result.refusal is not None and result.refusal.code is RefusalCode.INSUFFICIENT_BALANCE
    drafts = fund.feed(approve("K1"))
    assert amounts(drafts) == [-15_000] and drafts[0].rule_id == "fund"
    assert fund.available("MDF:EUR") == 5_000
    result = fund.refused(approve("K1", at=T0 + DAY))
    assert result.refusal is not None and result.refusal.code is RefusalCode.UNKNOWN_CLAIM


def test_submitter_cannot_approve_their_own_claim(fund: Partner) -> None:
    """Segregation of duties: an approval by the claim's submitter is refused and leaves
    the claim waiting; another approver can still approve it, once."""
    fund.feed(claim("K1", 15_000))  # submitted by "marketing"
    own = msgspec.structs.replace(approve("K1"), approver="marketing")
    result = fund.refused(own)
    assert result.refusal is not None and result.refusal.code is RefusalCode.SELF_APPROVAL
    assert result.refusal.path == "$.approver" and "'marketing'" in result.refusal.message
    assert "K1" in fund.state.claims and fund.available("MDF:EUR") == 20_000
    assert amounts(fund.feed(approve("K1"))) == [-15_000]


def test_a_claim_id_is_used_once_whatever_became_of_it(fund: Partner) -> None:
    """A settled claim (approved, rejected or approved automatically) cannot be claimed
    again under its id: the same expense would be paid twice."""
    fund.feed(claim("K1", 12_000), approve("K1"), claim("K2", 6_000), reject("K2"))
    fund.feed(claim("K3", 1_000))  # under auto_approve_max: paid at once
    for claim_id in ("K1", "K2", "K3"):
        again = fund.refused(claim(claim_id, 1_000))
        assert again.refusal is not None and again.refusal.code is RefusalCode.DUPLICATE_CLAIM
        assert "already settled" in again.refusal.message
    assert fund.available("MDF:EUR") == 20_000 - 12_000 - 1_000


def test_rejected_claim_releases_the_reservation(fund: Partner) -> None:
    fund.feed(claim("K1", 15_000))
    assert fund.feed(reject("K1")) == []
    assert fund.feed(claim("K2", 20_000)) == [] and "K2" in fund.state.claims
    result = fund.refused(claim("K2", 1))
    assert result.refusal is not None and result.refusal.code is RefusalCode.DUPLICATE_CLAIM


def test_unclaimed_fund_expires_back_to_the_program() -> None:
    """Fund with expiry_months 12: 100.00 accrued on 2026-01-10 lapses on 2027-01-10 and
    returns to the program's expense account (funds are not points: no points:expired)."""
    rules = MDF.replace("auto_approve_max: 5_000", "auto_approve_max: 5_000\n  expiry_months: 12")
    p = Partner([program(rules)])
    p.feed(registered(), sale("O1", [("hardware", 1, 1_000_000)]))
    drafts = p.due(dt.datetime(2027, 1, 10, tzinfo=dt.UTC))
    assert [d.kind for d in drafts] == [RecordKind.EXPIRY] and amounts(drafts) == [-10_000]
    assert drafts[0].postings[-1].account == "program:prog:expense"
    assert p.balances() == {}
