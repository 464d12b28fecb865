"""The integration guide and the exported JSON Schemas agree with the code.

Every ```json block of docs/integration.md must validate against the exported schema of
its type and decode; every type must have an example (the messages the ledger publishes,
like ``CommandRefused``, too); the guide's tables of streams, reason codes, refusal codes
and CSV columns must match the code."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from processors.engine import RefusalCode
from schemas.codec import Limits, RejectCode, Rejection, decode
from schemas.files import NATURAL_KEYS
from schemas.files_csv import CSV_LAYOUTS
from schemas.jsonschema import INDEX, OUTCOMES, export, schema_of
from schemas.outcomes import REFUSAL_DECODER
from schemas.streams import ANY, MESSAGE_TYPES, STREAMS, stream_of

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "integration.md"
NOW = datetime(2026, 5, 1, tzinfo=UTC)


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def section(heading: str) -> str:
    """The text under ``heading`` (e.g. "### Reason codes") up to the next heading."""
    text = guide()
    start = text.index(heading + "\n") + len(heading)
    following = re.search(r"^#{1,6} ", text[start:], flags=re.M)
    return text[start : start + following.start()] if following else text[start:]


OUTCOME_TYPES = {t.__name__ for types in OUTCOMES.values() for t in types}


def all_examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", guide(), flags=re.DOTALL)
    return [json.loads(block) for block in blocks]


def examples() -> list[dict[str, Any]]:
    """The examples of messages sent to the ledger."""
    return [e for e in all_examples() if e.get("type") not in OUTCOME_TYPES]


def outcome_examples() -> list[dict[str, Any]]:
    """The examples of messages the ledger publishes."""
    return [e for e in all_examples() if e.get("type") in OUTCOME_TYPES]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("schemas")
    export(directory)
    return directory


def validator(directory: Path, type_name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((directory / f"{type_name}.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_type_has_a_worked_example() -> None:
    documented = [example["type"] for example in examples()]
    assert sorted(documented) == sorted(MESSAGE_TYPES)


@pytest.mark.parametrize("example", examples(), ids=lambda e: str(e.get("type")))
def test_example_is_valid_by_schema_and_by_decoder(exported: Path, example: dict[str, Any]) -> None:
    errors = [e.message for e in validator(exported, example["type"]).iter_errors(example)]
    assert errors == []
    stream = stream_of(MESSAGE_TYPES[example["type"]])
    decoded = decode(stream, json.dumps(example).encode(), now=NOW, limits=Limits())
    assert not isinstance(decoded, Rejection), str(decoded)


@pytest.mark.parametrize(
    ("type_name", "change"),
    [
        ("SaleRecorded", {"net_amout": 5}),
        ("SaleRecorded", {"currency": "XYZ"}),
        ("SaleRecorded", {"partner_id": "*"}),
        ("SurveyCompleted", {"score": 11}),
        ("SurveyCompleted", {"scale": "csat_1_5", "score": 0}),
        ("SaleReversed", {"lines": []}),
        ("SaleReversed", {"scope": "full"}),
        ("AdjustBalance", {"amount": 0}),
        ("AdjustBalance", {"author": " "}),
        ("RecordPayout", {"amount": 12.5}),
        ("ClosePeriod", {"partner_id": "P-1"}),
        ("PartnerUpdated", {"status": "retired"}),
    ],
)
def test_schema_and_decoder_both_reject_a_broken_example(
    exported: Path, type_name: str, change: dict[str, Any]
) -> None:
    """The schemas are not vacuous: what the decoder rejects, they reject too."""
    example = next(e for e in examples() if e["type"] == type_name)
    broken = {**example, **change}
    assert not validator(exported, type_name).is_valid(broken)
    stream = stream_of(MESSAGE_TYPES[type_name])
    assert isinstance(
        decode(stream, json.dumps(broken).encode(), now=NOW, limits=Limits()), Rejection
    )


def test_partner_updated_schema_needs_at_least_one_change(exported: Path) -> None:
    example = next(e for e in examples() if e["type"] == "PartnerUpdated")
    bare = {k: v for k, v in example.items() if k not in ("status", "team")}
    assert not validator(exported, "PartnerUpdated").is_valid(bare)


def test_outcome_examples_are_valid_by_schema_and_by_decoder(exported: Path) -> None:
    """Every type the ledger publishes has a worked example its consumers can rely on."""
    found = outcome_examples()
    assert sorted(e["type"] for e in found) == sorted(OUTCOME_TYPES)
    for example in found:
        errors = [e.message for e in validator(exported, example["type"]).iter_errors(example)]
        assert errors == []
        assert REFUSAL_DECODER.decode(json.dumps(example).encode()).event_id is not None


def test_export_writes_one_schema_per_type_and_an_index(exported: Path) -> None:
    names = sorted(p.name for p in exported.iterdir())
    assert names == sorted([f"{t}.json" for t in [*MESSAGE_TYPES, *OUTCOME_TYPES]] + [INDEX])
    index = json.loads((exported / INDEX).read_text(encoding="utf-8"))
    assert index["outcomes"] == {
        "CommandRefused": {
            "stream": "refusals",
            "schema_version": 1,
            "file": "CommandRefused.json",
        }
    }
    assert index["streams"] == {name: list(s.type_names) for name, s in STREAMS.items()}
    assert index["types"]["SaleRecorded"] == {
        "stream": "sales",
        "schema_version": 1,
        "file": "SaleRecorded.json",
    }
    sale = schema_of(MESSAGE_TYPES["SaleRecorded"])["$defs"]["SaleRecorded"]
    assert sale["additionalProperties"] is False, "unknown fields are rejected"
    assert "schema_version" not in sale["required"]


def test_guide_lists_every_stream_with_its_types() -> None:
    table = section("## Topics and keys")
    rows = dict(re.findall(r"^\| `(\w+)` \| (`\w+`(?:, `\w+`)*) \|$", table, flags=re.M))
    assert {k: re.findall(r"`(\w+)`", v) for k, v in rows.items()} == {
        name: list(s.type_names) for name, s in STREAMS.items()
    }


def test_guide_lists_every_reason_code() -> None:
    codes = re.findall(r"^\| `([a-z_0-9]+)` \| ", section("### Reason codes"), flags=re.M)
    assert sorted(codes) == sorted(c.value for c in RejectCode)


def test_guide_lists_every_refusal_code() -> None:
    rows = re.findall(r"^\| ((?:`[a-z_]+`(?:, )?)+) \| ", section("### Refusal codes"), flags=re.M)
    codes = [code for row in rows for code in re.findall(r"`([a-z_]+)`", row)]
    assert sorted(codes) == sorted(c.value for c in RefusalCode)


def test_guide_csv_table_matches_the_layouts() -> None:
    text = section("## Uploading files")
    table = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|$", text, flags=re.M)
    documented = {name: (columns.strip(), key.strip()) for name, columns, key in table}
    assert set(documented) == set(CSV_LAYOUTS) == {t.__name__ for t in ANY.types}
    for name, layout in CSV_LAYOUTS.items():
        columns, key = documented[name]
        expected = ", ".join(f"**{c}**" if c in layout.required else c for c in layout.columns)
        assert columns == expected, name
        assert key == (", ".join(NATURAL_KEYS[name]) if name in NATURAL_KEYS else "none"), name
