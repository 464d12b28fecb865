"""Two-tier distribution (分销模式): overrides on the sales of the partners below a
distributor, returns that claw them back, and rankings that roll up the hierarchy. Amounts
are EUR cents, computed by hand in each docstring."""

from __future__ import annotations

import datetime as dt

from test_engine_support import Market, program, registered, reversal, sale

from ledger.core import RecordKind

UTC = dt.UTC
JAN, FEB, MAR = (dt.datetime(2026, m, 10, 12, tzinfo=UTC) for m in (1, 2, 3))

OVERRIDE = """
- kind: override
  id: override
  pays: currency
  period: month
  hold_days: 30
  levels: [{rate_bp: 200}, {rate_bp: 50}]
  eligibility: {partner_kinds: [distributor]}
"""


def hierarchy(rules: str, *, period: str = "month") -> Market:
    """D1 supplies R1 and R2; R1 supplies S1 (three levels); X1 stands alone."""
    m = Market([program(rules, period=period)], ["D1", "R1", "R2", "S1", "X1"])
    at = dt.datetime(2025, 6, 1, tzinfo=UTC)
    for pid, kind, parent in [("D1", "distributor", None), ("R1", "reseller", "D1"),
                              ("R2", "reseller", "D1"), ("S1", "reseller", "R1"),
                              ("X1", "distributor", None)]:
        m[pid].feed(registered(pid, kind=kind, parent=parent, at=at))
    return m


def test_override_pays_the_distributor_on_two_levels_below_it() -> None:
    """January: R1 sells 100,000.00, R2 50,000.00 and S1 (below R1) 20,000.00; D1 sells
    10,000.00 itself. D1 earns 2 % on R1 (2,000.00) and R2 (1,000.00), 0.5 % on S1 one
    level further down (100.00), nothing on its own sales. R1 is a reseller, not eligible:
    nothing on S1. Each is a record of its own, held 30 days, naming the seller and path."""
    m = hierarchy(OVERRIDE)
    for pid, amount in (("R1", 10_000_000), ("R2", 5_000_000), ("S1", 2_000_000),
                        ("D1", 1_000_000)):
        m[pid].feed(sale("O1", [("hardware", 1, amount)], partner=pid, at=JAN))
    drafts = m.close("2026-01")
    assert list(drafts) == ["D1"]
    assert [(d.leg, d.explanation.inputs["level"], d.explanation.inputs["path"])
            for d in drafts["D1"]] == [("override:R1", 1, ["D1", "R1"]),
                                       ("override:R2", 1, ["D1", "R2"]),
                                       ("override:S1", 2, ["D1", "R1", "S1"])]
    assert m.paid(drafts) == {"D1": 200_000 + 100_000 + 10_000}
    assert m["D1"].pending() == 310_000


def test_the_cap_counts_every_override_of_the_close_together() -> None:
    """Capped at 2,500.00 a month: D1 earns 2,000.00 on R1 and 1,000.00 on R2, so the
    second is cut to 500.00; S1's 100.00 finds the cap used up."""
    m = hierarchy(OVERRIDE.replace("hold_days: 30", "hold_days: 30\n  cap: 250_000"))
    for pid, amount in (("R1", 10_000_000), ("R2", 5_000_000), ("S1", 2_000_000)):
        m[pid].feed(sale("O1", [("hardware", 1, amount)], partner=pid, at=JAN))
    drafts = m.close("2026-01")
    assert [sum(p.amount for p in d.postings if p.account.startswith("partner:"))
            for d in drafts["D1"]] == [200_000, 50_000]
    assert drafts["D1"][1].explanation.inputs["cut_by_cap"] == 50_000


def test_a_return_after_the_override_claws_it_back_from_the_hold_and_never_beyond() -> None:
    """January: R1 sells 100,000.00; D1's override is 2,000.00, pending until 2 March.
    February: R1 sells nothing and takes back 40,000.00 of the January sale: its February
    net is -40,000.00, so -800.00 is taken back from D1's pending override (1,200.00 left).
    March: the remaining 60,000.00 come back: -1,200.00, the last of what D1 earned on R1.
    A return within the month of its sale only lowers that month's override: R2 sells
    50,000.00 and returns 10,000.00 in January, D1 earns 2 % of 40,000.00 = 800.00."""
    m = hierarchy(OVERRIDE)
    m["R1"].feed(sale("O1", [("hardware", 1, 10_000_000)], partner="R1", at=JAN))
    m["R2"].feed(sale("O1", [("hardware", 1, 5_000_000)], partner="R2", at=JAN),
                 reversal("O1", [("L1", 1, 1_000_000)], partner="R2", at=JAN))
    assert m.paid(m.close("2026-01")) == {"D1": 200_000 + 80_000}
    m["R1"].feed(reversal("O1", [("L1", 0 + 1, 4_000_000)], partner="R1", at=FEB, rid="R1"))
    february = m.close("2026-02")
    assert m.paid(february) == {"D1": -80_000}
    [claw] = february["D1"]
    assert (claw.kind, claw.leg, claw.explanation.inputs["net_sales"]) == (
        RecordKind.CLAWBACK, "override:R1", -4_000_000)
    assert m["D1"].pending() == 280_000 - 80_000
    m["R1"].feed(reversal("O1", partner="R1", at=MAR, rid="R2"))
    march = m.close("2026-03")
    assert m.paid(march) == {"D1": -120_000}
    assert m["D1"].state.override_earned["prog|override|R1"] == 0


def test_a_return_of_sales_older_than_the_override_takes_back_only_what_was_earned() -> None:
    """R1 sold 100,000.00 in December 2025, before the program; returned in January it
    makes January's net -100,000.00, but D1 has earned nothing on R1: nothing is taken."""
    m = hierarchy(OVERRIDE)
    m["R1"].feed(sale("O1", [("hardware", 1, 10_000_000)], partner="R1",
                      at=dt.datetime(2025, 12, 10, tzinfo=UTC)),
                 reversal("O1", partner="R1", at=JAN))
    assert m.close("2026-01") == {}


def test_a_cycle_in_the_hierarchy_counts_each_partner_once() -> None:
    """Two updates made A and B each other's parent: A earns on B and B on A, once each."""
    m = Market([program(OVERRIDE.replace("  eligibility: {partner_kinds: [distributor]}\n",
                                         ""), period="month")], ["A", "B"])
    m["A"].feed(registered("A", parent="B"))
    m["B"].feed(registered("B", parent="A"))
    m["A"].feed(sale("O1", [("hardware", 1, 1_000_000)], partner="A", at=JAN))
    m["B"].feed(sale("O1", [("hardware", 1, 3_000_000)], partner="B", at=JAN))
    assert m.paid(m.close("2026-01")) == {"A": 60_000, "B": 20_000}


RANKING = """
- kind: ranking
  id: champion
  pays: currency
  period: month
  metric: net_sales
  top_n: 3
  amounts: [300_000, 200_000, 100_000]
  scope: {scope}
"""


def test_a_ranking_with_children_counts_the_network_below_each_partner() -> None:
    """January: D1 30,000.00, R1 (below D1) 40,000.00, X1 60,000.00. By own sales X1, R1,
    D1 rank 1-3. With children D1 counts 70,000.00 (its own and R1's) and ranks first,
    then X1 and R1."""
    for scope, order in (("own", ["X1", "R1", "D1"]), ("with_children", ["D1", "X1", "R1"])):
        m = hierarchy(RANKING.format(scope=scope))
        for pid, amount in (("D1", 3_000_000), ("R1", 4_000_000), ("X1", 6_000_000)):
            m[pid].feed(sale("O1", [("hardware", 1, amount)], partner=pid, at=JAN))
        drafts = m.close("2026-01")
        ranks = sorted((d.explanation.inputs["rank"], pid) for pid, ds in drafts.items()
                       for d in ds)
        assert [pid for _, pid in ranks] == order, scope
    assert drafts["D1"][0].explanation.inputs["value"] == 7_000_000


TEAM = """
- kind: team_competition
  id: cup
  pays: currency
  period: month
  winners: 1
  prizes: [100_000]
  split: equal
  scope: with_children
"""


def test_a_team_with_children_counts_sellers_below_its_members_once() -> None:
    """Team north: D1 and R1 (R1 is below D1 and competes itself); team south: X1. R2 and
    S1 are in no team. North counts D1 10,000 + R2 5,000 (below D1, not competing) + R1
    20,000 + S1 1,000 (below R1): 36,000.00; R1's sales are not counted twice under D1.
    South: X1 35,000.00. North wins."""
    m = Market([program(TEAM, period="month")], ["D1", "R1", "R2", "S1", "X1"])
    for pid, team, parent in (("D1", "north", None), ("R1", "north", "D1"), ("R2", None, "D1"),
                              ("S1", None, "R1"), ("X1", "south", None)):
        m[pid].feed(registered(pid, team=team, parent=parent))
    for pid, amount in (("D1", 1_000_000), ("R1", 2_000_000), ("R2", 500_000),
                        ("S1", 100_000), ("X1", 3_500_000)):
        m[pid].feed(sale("O1", [("hardware", 1, amount)], partner=pid, at=JAN))
    drafts = m.close("2026-01")
    assert m.paid(drafts) == {"D1": 50_000, "R1": 50_000}
    assert drafts["D1"][0].explanation.inputs["team_value"] == "3600000"
