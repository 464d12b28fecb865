"""JSON Schema for every event and command, generated from the msgspec types.

``export(directory)`` writes ``<Type>.json`` per message type and ``index.json``, which
lists the streams, the types each carries, their schema versions and files. Upstream
teams validate against these before publishing. The messages the ledger itself publishes
for senders (``CommandRefused`` on the ``refusals`` stream) are exported too, listed under
``outcomes`` in the index, so that their consumers can generate or check their readers.

The schemas say as much of the contract as JSON Schema (2020-12) can: types, required
fields, ``additionalProperties: false`` (unknown fields are rejected), patterns, bounds,
the currency table, and the cross-field rules added below (score within its scale, a
partial reversal has lines, ...). What they cannot say (a line's currency equals the
order's, unique line ids, a partner is not its own parent, timestamps carry a timezone
and lie not too far in the future) the decoder still checks; the type descriptions say so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from schemas.commands import AdjustBalance
from schemas.events import SCALES, PartnerUpdated, SaleReversed, SurveyCompleted
from schemas.outcomes import REFUSALS, CommandRefused
from schemas.streams import ANY, STREAMS, stream_of

DIALECT = "https://json-schema.org/draft/2020-12/schema"
INDEX = "index.json"
# What the ledger publishes, per stream; not inputs, so not in schemas.streams.STREAMS.
OUTCOMES: dict[str, tuple[type[CommandRefused], ...]] = {REFUSALS: (CommandRefused,)}


def _survey_scales(definition: dict[str, Any]) -> None:
    definition["allOf"] = [
        {
            "if": {"properties": {"scale": {"const": scale}}},
            "then": {"properties": {"score": {"minimum": low, "maximum": high}}},
        }
        for scale, (low, high) in SCALES.items()
    ]


def _reversal_scope(definition: dict[str, Any]) -> None:
    definition["allOf"] = [
        {
            "if": {"properties": {"scope": {"const": "partial"}}},
            "then": {"required": ["lines"], "properties": {"lines": {"minItems": 1}}},
        },
        {
            "if": {"properties": {"scope": {"const": "full"}}},
            "then": {"properties": {"lines": {"maxItems": 0}}},
        },
    ]


def _nonzero_amount(definition: dict[str, Any]) -> None:
    definition["properties"]["amount"]["not"] = {"const": 0}


def _some_change(definition: dict[str, Any]) -> None:
    definition["anyOf"] = [{"required": [name]} for name in PartnerUpdated.CHANGEABLE]


# Cross-field rules of __post_init__ that JSON Schema can express, per type.
_RULES: dict[type[msgspec.Struct], Callable[[dict[str, Any]], None]] = {
    SurveyCompleted: _survey_scales,
    SaleReversed: _reversal_scope,
    AdjustBalance: _nonzero_amount,
    PartnerUpdated: _some_change,
}


def schema_of(message_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON Schema (2020-12) of one message type, as a dict."""
    schema: dict[str, Any] = msgspec.json.schema(message_type)
    rule = _RULES.get(message_type)
    if rule is not None:
        rule(schema["$defs"][message_type.__name__])
    return {"$schema": DIALECT, "title": message_type.__name__, **schema}


def index() -> dict[str, Any]:
    """What ``index.json`` holds: streams, and per type its stream, version and file;
    under ``outcomes`` the same for the types the ledger publishes."""
    return {
        "dialect": DIALECT,
        "key": "partner_id",
        "streams": {name: list(s.type_names) for name, s in STREAMS.items()},
        "types": {
            t.__name__: {
                "stream": stream_of(t),
                "schema_version": t.SCHEMA_VERSION,
                "file": f"{t.__name__}.json",
            }
            for t in ANY.types
        },
        "outcomes": {
            t.__name__: {
                "stream": stream,
                "schema_version": t.SCHEMA_VERSION,
                "file": f"{t.__name__}.json",
            }
            for stream, types in OUTCOMES.items()
            for t in types
        },
    }


def export(directory: str | Path) -> list[Path]:
    """Write one schema file per message type and ``index.json``; return their paths."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    outcomes = [t for types in OUTCOMES.values() for t in types]
    for message_type in [*ANY.types, *outcomes]:
        path = target / f"{message_type.__name__}.json"
        path.write_text(_dump(schema_of(message_type)), encoding="utf-8")
        written.append(path)
    path = target / INDEX
    path.write_text(_dump(index()), encoding="utf-8")
    written.append(path)
    return written


def _dump(document: dict[str, Any]) -> str:
    # Sorted keys and a final newline keep the files stable and diffable when committed.
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
