"""The program document: the examples load, loading is faithful (round trip, content hash,
TOML as YAML), and a document that is not plain, bounded YAML is rejected precisely. Rules
that are wrong are in ``test_program_rules.py``."""

import hashlib
from pathlib import Path

import msgspec
import msgspec.json
import pytest
from program_support import COMMISSION, HEADER, problems_of

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


# ----------------------------------------------------------------- invalid documents


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
