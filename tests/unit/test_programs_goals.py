"""Validation of the goal kinds (target_attainment, growth_bonus, override), gates,
satisfaction eligibility, day windows and categories: each mistake a program author can
make is one finding that names the line, the path and what was expected."""

from program_support import HEADER, problems_of

from schemas.program_loader import parse_program


def test_attainment_bands_must_pay_something_and_an_excess_needs_money() -> None:
    rules = """\
  - kind: target_attainment
    id: target
    pays: currency
    metric: units
    bands:
      - {at_least_bp: 8_000, below_bp: 10_000}
      - {at_least_bp: 11_000, amount: 100, excess_rate_bp: 100}
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:15:9: $.rules[0].bands[0]: the band pays nothing: expected at least one "
        "of amount, rate_bp, excess_rate_bp",
        "demo.yaml:16:23: $.rules[0].bands[1].at_least_bp: leaves a gap after the previous "
        "band: expected at_least_bp == 10000 (bands[0].below_bp), got 11000",
        "demo.yaml:16:60: $.rules[0].bands[1].excess_rate_bp: the excess is the money above "
        "the band's start, so the metric must be money: expected metric net_sales, got units",
    ]


def test_growth_needs_a_minimum_base_of_at_least_one() -> None:
    rules = """\
  - kind: growth_bonus
    id: growth
    pays: currency
    compare_to: previous_period
    base_min: 0
    bands: [{at_least_bp: 1_000, amount: 100}]
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:14:15: $.rules[0].base_min: Expected `int` >= 1"
    ]


def test_override_levels_are_bounded_and_must_pay() -> None:
    too_many = """\
  - kind: override
    id: override
    pays: currency
    levels: [{rate_bp: 1}, {rate_bp: 1}, {rate_bp: 1}, {rate_bp: 1}, {rate_bp: 1}, {rate_bp: 1}]
"""
    assert problems_of(HEADER + too_many) == [
        "demo.yaml:13:13: $.rules[0].levels: Expected `array` of length <= 5"
    ]
    nothing = """\
  - kind: override
    id: override
    pays: AWARD:trip
    categories: [hardwar]
    levels: [{rate_bp: 0}]
"""
    assert problems_of(HEADER + nothing) == [
        "demo.yaml:12:11: $.rules[0].pays: an override rule pays amounts that are computed, "
        "not whole items: expected currency or points, got AWARD:trip",
        "demo.yaml:13:18: $.rules[0].categories[0]: unknown category 'hardwar': expected one "
        "of: hardware, software (did you mean 'hardware'?)",
        "demo.yaml:14:13: $.rules[0].levels: pays nothing: expected a rate_bp above 0",
    ]


def test_gates_and_satisfaction_conditions_stay_on_the_scale() -> None:
    rules = """\
  - kind: commission
    id: sales
    pays: currency
    rates: [{category: hardware, rate_bp: 300}]
    eligibility: {min_avg_satisfaction_x100: 600}
    gate: {}
  - kind: volume_rebate
    id: rebate
    pays: currency
    mode: retroactive
    bands: [{at_least: 0, rate_bp: 100}]
    gate: {avg_satisfaction_min_x100: 50}
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:14:46: $.rules[0].eligibility.min_avg_satisfaction_x100: expected a value "
        "within the satisfaction scale (100..500), got 600",
        "demo.yaml:15:11: $.rules[0].gate: a gate without conditions lets everything "
        "through: expected at least one condition",
        "demo.yaml:21:39: $.rules[1].gate.avg_satisfaction_min_x100: expected a value within "
        "the satisfaction scale (100..500), got 50",
    ]


def test_a_tier_window_is_in_days_or_in_months() -> None:
    text = HEADER.replace("rules:\n", """\
tiers:
  - id: entry
    name: Entry
  - id: silver
    name: Silver
    qualify: {window_days: 90, window_months: 3, net_sales_min: 1}
rules:
  - kind: commission
    id: sales
    pays: currency
    rates: [{category: hardware, rate_bp: 300}]
""")
    assert problems_of(text) == [
        "demo.yaml:14:28: $.tiers[1].qualify.window_days: a window is in days or in months: "
        "expected window_days or window_months, got both (90 days, 3 months)"
    ]


def test_one_rate_without_category_per_rule_and_named_categories_must_exist() -> None:
    rules = """\
  - kind: commission
    id: sales
    pays: currency
    rates: [{rate_bp: 300}, {category: hardwear, rate_bp: 100}, {rate_bp: 200}]
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:13:40: $.rules[0].rates[1].category: unknown category 'hardwear': expected "
        "one of: hardware, software (did you mean 'hardware'?)",
        "demo.yaml:13:65: $.rules[0].rates[2].category: duplicate category '(no category: "
        "every other category)': expected each once, first at $.rules[0].rates[0].category",
    ]


def test_a_program_without_categories_accepts_any_category_name() -> None:
    text = HEADER.replace("categories: [hardware, software]\n", "") + """\
  - kind: commission
    id: sales
    pays: currency
    rates: [{category: cables, rate_bp: 300}, {rate_bp: 100}]
  - kind: points
    id: points
"""
    loaded = parse_program(text.encode(), "demo.yaml")
    assert loaded.program.categories == ()
