"""The program document: the examples load, bad documents are rejected precisely, and
loading is faithful (round trip, content hash)."""

import hashlib
from pathlib import Path

import msgspec
import msgspec.json
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.program_checks import check_bands
from schemas.program_loader import (
    TEXT_BYTES_MAX,
    ProgramError,
    content_sha256,
    dump_program,
    load_program,
    parse_program,
)
from schemas.programs import (
    RULE_KINDS,
    CommissionRule,
    NewCustomerRule,
    Program,
    RebateMode,
    SatisfactionRule,
    VolumeRebateRule,
)

PROGRAMS = Path(__file__).resolve().parents[2] / "programs"
EXAMPLES = [PROGRAMS / "example-channel-2026.yaml", PROGRAMS / "example-channel-2026.zh.yaml"]


def problems_of(text: str, source: str = "demo.yaml") -> list[str]:
    with pytest.raises(ProgramError) as caught:
        parse_program(text.encode(), source)
    return [str(problem) for problem in caught.value.problems]


# ------------------------------------------------------------------------------ examples


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_uses_every_rule_kind(path: Path) -> None:
    """Each shipped example is valid and exercises the whole rule language."""
    loaded = load_program(path)
    assert {rule.__struct_config__.tag for rule in loaded.program.rules} == set(RULE_KINDS)


def test_example_reads_as_written() -> None:
    """Spot checks that YAML values land in the fields the documentation says."""
    program = load_program(EXAMPLES[0]).program
    rules = {rule.id: rule for rule in program.rules}
    rebate = rules["quarterly-rebate"]
    assert isinstance(rebate, VolumeRebateRule)
    assert rebate.mode is RebateMode.RETROACTIVE
    assert [(b.at_least, b.below, b.rate_bp) for b in rebate.bands][-2:] == [
        (50_000_000, 150_000_000, 200),
        (150_000_000, None, 300),
    ]
    commission = rules["sales-commission"]
    assert isinstance(commission, CommissionRule) and commission.hold_days == 30
    gold = next(tier for tier in program.tiers if tier.id == "gold")
    assert gold.qualify.avg_satisfaction_min_x100 == 400
    assert gold.benefits.credit_limit == 100_000_000
    csat = rules["csat"]
    assert isinstance(csat, SatisfactionRule) and csat.multiplier is not None
    assert csat.multiplier.applies_to == ("quarterly-rebate",)
    # YAML 1.1 would have read Norway's code as the boolean false.
    new_logo = rules["new-logo"]
    assert isinstance(new_logo, NewCustomerRule) and new_logo.eligibility is not None
    assert "NO" in new_logo.eligibility.regions


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_round_trip_through_yaml_and_builtins(path: Path) -> None:
    """Dumping and loading again, or going through plain Python, changes nothing."""
    program = load_program(path).program
    assert parse_program(dump_program(program).encode(), "dumped.yaml").program == program
    assert msgspec.convert(msgspec.to_builtins(program), Program) == program


def test_program_types_export_a_json_schema() -> None:
    """Editors and the CLI can validate documents against the schema of the same types."""
    schema = msgspec.json.schema(Program)
    rule_kinds = {
        definition["properties"]["kind"]["enum"][0]
        for definition in schema["$defs"].values()
        if "kind" in definition.get("properties", {})
    }
    assert rule_kinds == set(RULE_KINDS)


def test_content_hash_is_sha256_of_the_exact_source_bytes() -> None:
    """The stored hash identifies the text, so even a comment change is a new hash."""
    text = EXAMPLES[0].read_bytes()
    loaded = load_program(EXAMPLES[0])
    assert loaded.sha256 == content_sha256(text) == hashlib.sha256(text).hexdigest()
    assert loaded.text == text
    commented = parse_program(b"# reviewed\n" + text, "x.yaml")
    assert commented.program == loaded.program
    assert commented.sha256 != loaded.sha256


TOML = """\
program_id = "demo"
version = 1
name = "Demo"
currency = "EUR"
effective_from = 2026-01-01
effective_to = 2026-12-31
period = "quarter"
categories = ["hardware"]

[[rules]]
kind = "commission"
id = "sales"
pays = "currency"
rates = [{category = "hardware", rate_bp = 300}]
"""


def test_toml_gives_the_same_program_as_yaml() -> None:
    yaml_text = HEADER.replace("[hardware, software]", "[hardware]") + COMMISSION
    from_toml = parse_program(TOML.encode(), "demo.toml", "toml").program
    assert from_toml == parse_program(yaml_text.encode(), "demo.yaml").program


def test_toml_errors_name_the_path_but_no_line() -> None:
    """tomllib keeps no positions; the path still says exactly where the value is."""
    with pytest.raises(ProgramError) as caught:
        parse_program(TOML.replace("300", "3.5").encode(), "demo.toml", "toml")
    assert str(caught.value) == (
        "demo.toml: $.rules[0].rates[0].rate_bp: Expected `int | null`, got `float`"
    )


# ------------------------------------------------------------------------ invalid programs

# Nine lines, so the first rule starts on line 10 in every case below.
HEADER = """\
program_id: demo
version: 1
name: Demo
currency: EUR
effective_from: 2026-01-01
effective_to: 2026-12-31
period: quarter
categories: [hardware, software]
rules:
"""
COMMISSION = """\
  - kind: commission
    id: sales
    pays: currency
    rates:
      - {category: hardware, rate_bp: 300}
"""


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


def test_duplicate_yaml_key() -> None:
    """PyYAML would silently keep the last value; a program must not be ambiguous."""
    rules = """\
  - kind: commission
    id: sales
    pays: currency
    id: sales2
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:13:5: $.rules[0].id: duplicate key `id`: expected each key once, "
        "first at line 11"
    ]


def test_yaml_syntax_error() -> None:
    rules = """\
  - kind: commission
    id: sales
    rates: [{category: hardware, rate_bp: 300}
"""
    assert problems_of(HEADER + rules) == [
        "demo.yaml:13:1: $: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 12, column 12)"
    ]


def test_yaml_1_1_octal_is_not_guessed() -> None:
    """``0300`` is octal 192 in YAML 1.1; here it stays text and is refused, with the text."""
    text = HEADER + COMMISSION.replace("rate_bp: 300", "rate_bp: 0300")
    assert problems_of(text) == [
        "demo.yaml:14:39: $.rules[0].rates[0].rate_bp: Expected `int | null`, got `str` ('0300')"
    ]


def test_unknown_currency() -> None:
    text = HEADER.replace("currency: EUR", "currency: EUX")
    assert problems_of(text + COMMISSION) == [
        "demo.yaml:4:11: $.currency: unknown currency 'EUX': expected an ISO 4217 code such as EUR"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            HEADER + "  - kind: commission\n    <<: {id: sales}\n",
            "demo.yaml:11:5: $.rules[0]: merge keys (<<) are not supported: "
            "expected the keys written out",
        ),
        (
            HEADER.replace("name: Demo", "name: !!python/object:os.system Demo") + COMMISSION,
            "demo.yaml:3:7: $.name: unsupported tag tag:yaml.org,2002:python/object:os.system: "
            "expected plain YAML",
        ),
        (
            "a: &a [*a, *a]\n",
            "demo.yaml:1:4: $.a" + "[0]" * 32 + ": document too large: expected at most 32 levels",
        ),
        ("", "demo.yaml:1:1: $: empty document: expected a program"),
        ("- 1\n", "demo.yaml:1:1: $: Expected `object`, got `array`"),
    ],
    ids=["merge-key", "python-tag", "recursive-alias", "empty", "not-a-mapping"],
)
def test_yaml_that_is_not_plain_data_is_refused(text: str, expected: str) -> None:
    """Nothing but plain YAML values reaches the program types."""
    assert problems_of(text) == [expected]


def test_text_that_is_not_utf8_or_too_large() -> None:
    """Both are refused before any YAML parsing, the first with the line of the bad byte."""
    with pytest.raises(ProgramError) as caught:
        parse_program(b"program_id: demo\nname: D\xe9mo\n", "demo.yaml")
    assert str(caught.value) == "demo.yaml:2: $: expected UTF-8 text, got byte 0xe9"
    with pytest.raises(ProgramError) as caught:
        parse_program(b"#" * (TEXT_BYTES_MAX + 1), "demo.yaml")
    assert str(caught.value) == (
        f"demo.yaml: $: document too large: expected at most {TEXT_BYTES_MAX} bytes, "
        f"got {TEXT_BYTES_MAX + 1}"
    )


def test_alias_bomb_is_bounded() -> None:
    """Aliases are expanded when converting; a bound stops exponential documents."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    [problem] = problems_of("\n".join(lines) + "\n")
    assert problem.endswith("document too large: expected at most 100000 values")


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
