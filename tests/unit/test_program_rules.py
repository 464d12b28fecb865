"""Program rules that are wrong are rejected precisely: each finding names the file, line,
column and path of the rule and says what was expected; band checks hold for any bands."""


from hypothesis import given
from hypothesis import strategies as st
from program_support import COMMISSION, HEADER, problems_of

from schemas.program_checks import check_bands

# ---------------------------------------------------------------------------- invalid rules


def test_a_float_where_basis_points_are_expected() -> None:
    """Rates are integers of basis points; 2.5 % must be written 250."""
    rules = """\
  - kind: commission
    id: sales
    pays: currency
    rates:
      - {category: hardware, rate_bp: 2.5}
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:14:39: $.rules[0].rates[0].rate_bp: Expected `int | null`, got `float`"
    ]


def test_unknown_key_points_at_the_key_and_suggests_the_field() -> None:
    rules = """\
  - kind: commission
    id: sales
    pays: currency
    rate:
      - {category: hardware, rate_bp: 300}
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:13:5: $.rules[0].rate: unknown field `rate`: expected one of: cap, "
        "description, eligibility, gate, hold_days, id, kind, pays, period, rates "
        "(did you mean `rates`?)"
    ]


def test_unknown_rule_kind() -> None:
    rules = """\
  - kind: comission
    id: sales
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:10:11: $.rules[0].kind: unknown rule kind 'comission': expected one of: "
        "clawback, commission, growth_bonus, mdf, new_customer, non_cash_award, override, "
        "points, pool_share, ranking, satisfaction, target_attainment, team_competition, "
        "threshold_bonus, training, volume_rebate "
        "(did you mean `commission`?)"
    ]


def test_missing_required_field_points_at_its_rule() -> None:
    rules = """\
  - kind: volume_rebate
    id: rebate
    pays: currency
    bands:
      - {at_least: 0, rate_bp: 100}
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:10:5: $.rules[0]: Object missing required field `mode`"
    ]


def test_overlapping_bands() -> None:
    rules = """\
  - kind: volume_rebate
    id: rebate
    pays: currency
    mode: retroactive
    bands:
      - {at_least: 0, below: 1_000_000, rate_bp: 0}
      - {at_least: 800_000, below: 5_000_000, rate_bp: 100}
      - {at_least: 5_000_000, rate_bp: 200}
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:16:20: $.rules[0].bands[1].at_least: overlaps the previous band: "
        "expected at_least == 1000000 (bands[0].below), got 800000"
    ]


def test_unordered_bands() -> None:
    rules = """\
  - kind: volume_rebate
    id: rebate
    pays: currency
    mode: marginal
    bands:
      - {at_least: 5_000_000, rate_bp: 200}
      - {at_least: 0, below: 5_000_000, rate_bp: 100}
"""
    assert problems_of(HEADER + rules) == [
        # The open-ended band is not written with a `below`, so its mapping is pointed at.
        "demo.yaml:15:9: $.rules[0].bands[0].below: only the last band may be open-ended: "
        "expected below",
        "demo.yaml:16:20: $.rules[0].bands[1].at_least: bands out of order: "
        "expected at_least >= 5000000 (bands[0].at_least), got 0",
    ]


def test_pool_split_with_a_zero_weight() -> None:
    """A zero weight could make the divisor of the split zero."""
    tiers = """\
tiers:
  - {id: registered, name: Registered}
  - {id: gold, name: Gold, qualify: {net_sales_min: 1_000}}
"""
    rules = """\
  - kind: pool_share
    id: pool
    pays: currency
    pool_fixed: 10_000_000
    weights:
      - {tier: gold, weight: 0}
"""
    assert problems_of(tiers + HEADER + rules) == [
        "demo.yaml:18:30: $.rules[0].weights[0].weight: a zero weight could make the sum of "
        "weighted contributions zero, the divisor of the split: expected weight >= 1 "
        "(exclude a tier with eligibility.tiers instead), got 0"
    ]


def test_multiplier_band_of_zero_width() -> None:
    rules = """\
  - kind: satisfaction
    id: csat
    multiplier:
      applies_to: [sales]
      bands:
        - {at_least_x100: 100, below_x100: 400, multiplier_bp: 9_000}
        - {at_least_x100: 400, below_x100: 400, multiplier_bp: 11_000}
"""
    assert problems_of(HEADER + rules + COMMISSION) == [
        "demo.yaml:16:44: $.rules[0].multiplier.bands[1].below_x100: empty band: "
        "expected below_x100 > at_least_x100 (400), got 400"
    ]


def test_unknown_tier_category_and_rule_references() -> None:
    """All reference problems of a document are reported together, in document order."""
    rules = """\
  - kind: commission
    id: sales
    pays: currency
    eligibility: {tiers: [gold]}
    rates:
      - {category: hardwear, rate_bp: 300}
  - kind: clawback
    id: returns
    applies_to: [sale]
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:13:27: $.rules[0].eligibility.tiers[0]: unknown tier 'gold': "
        "the program declares none",
        "demo.yaml:15:20: $.rules[0].rates[0].category: unknown category 'hardwear': "
        "expected one of: hardware, software (did you mean 'hardware'?)",
        "demo.yaml:18:18: $.rules[1].applies_to[0]: unknown per-sale rule 'sale': "
        "expected one of: sales (did you mean 'sales'?)",
    ]


def test_tier_override_of_an_unknown_rule() -> None:
    tiers = """\
tiers:
  - {id: registered, name: Registered}
  - id: gold
    name: Gold
    qualify: {net_sales_min: 1_000}
    benefits:
      commission_overrides:
        - {rule: sale, category: hardware, rate_bp: 400}
"""
    assert problems_of(HEADER + COMMISSION + tiers) == [
        "demo.yaml:22:18: $.tiers[1].benefits.commission_overrides[0].rule: unknown "
        "commission rule 'sale': expected one of: sales (did you mean 'sales'?)"
    ]


def test_duplicate_rule_ids() -> None:
    assert problems_of(HEADER + COMMISSION + COMMISSION) == [
        "demo.yaml:16:9: $.rules[1].id: duplicate rule id 'sales': expected each once, "
        "first at $.rules[0].id"
    ]


def test_effective_to_before_effective_from() -> None:
    text = HEADER.replace("effective_to: 2026-12-31", "effective_to: 2025-12-31")
    assert problems_of(text + COMMISSION) == [
        "demo.yaml:6:15: $.effective_to: effective_to is before effective_from: "
        "expected 2026-01-01 or later, got 2025-12-31"
    ]


def test_dates_must_fall_on_the_longest_period_in_use() -> None:
    """A yearly rule cannot start in April: its year would belong to two versions."""
    text = HEADER.replace("2026-01-01", "2026-04-01")
    rules = """\
  - kind: non_cash_award
    id: trip
    pays: AWARD:trip
    period: year
    condition: {at_least: 100_000_000}
"""
    assert problems_of(text + rules) == [
        "demo.yaml:5:17: $.effective_from: expected the first day of a year "
        "(the longest period in use), got 2026-04-01"
    ]


def test_rank_amounts_must_match_top_n_and_not_increase() -> None:
    rules = """\
  - kind: ranking
    id: champion
    pays: currency
    period: month
    top_n: 3
    amounts: [100_000, 200_000]
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:15:14: $.rules[0].amounts: expected 3 amounts (one per rank, top_n: 3), got 2",
        "demo.yaml:15:24: $.rules[0].amounts[1]: a lower rank pays more than the rank above: "
        "expected at most 100000 (amounts[0]), got 200000",
    ]


def test_tie_break_must_end_in_a_total_order() -> None:
    rules = """\
  - kind: ranking
    id: champion
    pays: currency
    top_n: 1
    amounts: [100_000]
    tie_break: [partner_id, reached_first]
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:15:16: $.rules[0].tie_break: ties must end in a total order: expected "
        "partner_id as the last tie-break, got partner_id, reached_first"
    ]


def test_contribution_split_that_could_divide_by_zero() -> None:
    rules = """\
  - kind: team_competition
    id: cup
    pays: currency
    winners: 2
    prizes: [2_000_000, 1_000_000]
    split: contribution
    min_team_value: 0
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:16:21: $.rules[0].min_team_value: split by contribution divides by the "
        "team's total, which could be zero: expected min_team_value >= 1, got 0"
    ]


def test_marginal_rebate_needs_bands_in_money() -> None:
    rules = """\
  - kind: volume_rebate
    id: rebate
    pays: currency
    mode: marginal
    metric: units
    bands:
      - {at_least: 0, rate_bp: 100}
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:14:13: $.rules[0].metric: a marginal rebate applies each band's rate to "
        "the sales inside that band, so its bands must be in money: expected net_sales, "
        "got units"
    ]


def test_points_need_a_points_policy() -> None:
    rules = """\
  - kind: training
    id: academy
    pays: points
    per_course: 200
    per_certification: 1_000
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:12:11: $.rules[0].pays: pays points, but the program has no points rule: "
        "expected a rule of kind points (expiry and redemption)"
    ]


def test_commission_rate_is_either_percent_or_flat() -> None:
    rules = """\
  - kind: commission
    id: sales
    pays: currency
    rates:
      - {category: hardware, rate_bp: 300, per_unit: 1_000}
      - {category: software}
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:14:9: $.rules[0].rates[0]: expected exactly one of rate_bp and per_unit, "
        "got both",
        "demo.yaml:15:9: $.rules[0].rates[1]: expected exactly one of rate_bp and per_unit, "
        "got neither",
    ]


def test_prorate_needs_a_budget() -> None:
    text = HEADER.replace("period: quarter\n", "period: quarter\non_budget_exhausted: prorate\n")
    assert problems_of(text + COMMISSION) == [
        "demo.yaml:8:22: $.on_budget_exhausted: prorate needs a budget to prorate against: "
        "expected a budget, or on_budget_exhausted: stop"
    ]


def test_tiers_are_listed_upwards_from_an_entry_tier() -> None:
    tiers = """\
tiers:
  - {id: silver, name: Silver, qualify: {net_sales_min: 1_000}}
  - {id: gold, name: Gold, qualify: {net_sales_min: 500}}
"""
    assert problems_of(HEADER + COMMISSION + tiers) == [
        "demo.yaml:16:57: $.tiers[0].qualify.net_sales_min: the first tier is the entry tier "
        "every partner starts in: expected net_sales_min 0, got 1000",
        "demo.yaml:17:53: $.tiers[1].qualify.net_sales_min: tiers are listed from the entry "
        "tier upwards: expected net_sales_min >= 1000 (tier 'silver'), got 500",
    ]


# ----------------------------------------------------------------------------- properties


@given(
    st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=8, unique=True),
    st.booleans(),
)
def test_contiguous_ascending_bands_are_accepted(cuts: list[int], open_ended: bool) -> None:
    """Bands built from ascending cut points never produce a finding."""
    edges = [0, *sorted(cuts)]
    bands: list[tuple[int, int | None]] = list(zip(edges, edges[1:], strict=False))
    if open_ended:
        bands.append((edges[-1], None))
    assert check_bands(bands, "$.bands", "at_least", "below") == []


@given(
    st.lists(st.integers(min_value=1, max_value=10**9), min_size=2, max_size=8, unique=True),
    st.data(),
)
def test_a_moved_boundary_is_always_reported(cuts: list[int], data: st.DataObject) -> None:
    """Shifting any band's start off the previous band's end is found at that band."""
    edges = [0, *sorted(cuts)]
    bands: list[tuple[int, int | None]] = list(zip(edges, edges[1:], strict=False))
    i = data.draw(st.integers(min_value=1, max_value=len(bands) - 1))
    shift = data.draw(st.integers(min_value=-5, max_value=5).filter(bool))
    bands[i] = (bands[i][0] + shift, bands[i][1])
    paths = [finding.path for finding in check_bands(bands, "$.bands", "at_least", "below")]
    assert f"$.bands[{i}].at_least" in paths
