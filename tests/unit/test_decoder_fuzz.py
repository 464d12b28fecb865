"""The decoder against hostile input (Hypothesis): whatever comes, ``decode`` returns a
message or a Rejection and never raises, and what it accepts is safe to store and show.

Generated input: arbitrary bytes; arbitrary JSON, deep (far beyond any parser's recursion
limit), wide, with text from every Unicode plane, numbers far beyond 64 bits; and valid
messages of every stream with one field, anywhere, replaced by such a value or by a string
holding control characters.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_contract_docs import examples

from schemas.codec import Limits, RejectCode, Rejection, decode, decode_any
from schemas.streams import MESSAGE_TYPES, STREAMS, Message, stream_of

NOW = datetime(2026, 4, 1, tzinfo=UTC)
LIMITS = Limits()
FUZZ = settings(
    max_examples=300, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# Text from every plane, surrogates excluded (they cannot be encoded to UTF-8 at all).
any_text = st.text(st.characters(codec="utf-8"), max_size=40)
huge_numbers = st.integers(min_value=-(10**40), max_value=10**40) | st.floats(allow_nan=False)
scalars = st.none() | st.booleans() | huge_numbers | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(any_text, inner, max_size=6),
    max_leaves=40,
)


# One valid message of every type, as upstream sends them: the guide's worked examples.
VALID = examples()


def check(stream: str, raw: bytes | None) -> Message | Rejection:
    """Decode ``raw``; it must not raise, and what is accepted must be safe."""
    result = decode(stream, raw, now=NOW, limits=LIMITS)
    if isinstance(result, Rejection):
        assert result.path.startswith("$") and result.message
        assert CONTROL.search(result.path + result.message) is None, result
        return result
    assert stream_of(type(result)) == stream
    assert NOW.replace(year=2016) <= result.occurred_at
    _assert_no_controls(result)
    return result


def _assert_no_controls(value: Any) -> None:
    if isinstance(value, str):
        assert CONTROL.search(value.replace("\t", "").replace("\n", "").replace("\r", "")) is None
    elif isinstance(value, tuple):
        for item in value:
            _assert_no_controls(item)
    elif hasattr(value, "__struct_fields__"):
        for name in value.__struct_fields__:
            _assert_no_controls(getattr(value, name))


@FUZZ
@given(raw=st.binary(max_size=2000), stream=st.sampled_from(sorted(STREAMS)))
def test_arbitrary_bytes(raw: bytes, stream: str) -> None:
    check(stream, raw)
    decode_any(raw, now=NOW, limits=LIMITS)


@FUZZ
@given(value=json_values, stream=st.sampled_from(sorted(STREAMS)))
def test_arbitrary_json(value: Any, stream: str) -> None:
    check(stream, json.dumps(value, ensure_ascii=False).encode())
    check(stream, json.dumps(value).encode())


@FUZZ
@given(
    depth=st.integers(min_value=1, max_value=20_000),
    opener=st.sampled_from(['[', '{"a":', '{"type":']),
    stream=st.sampled_from(sorted(STREAMS)),
)
def test_deep_nesting_anywhere(depth: int, opener: str, stream: str) -> None:
    closer = "]" if opener == "[" else "}"
    inner = opener * depth + "1" + closer * depth
    for raw in (inner, f'{{"type": "SaleRecorded", "lines": [{inner}]}}'):
        result = check(stream, raw.encode())
        if depth > LIMITS.max_depth:
            assert isinstance(result, Rejection) and result.code == RejectCode.TOO_DEEP


@FUZZ
@given(width=st.integers(min_value=0, max_value=50_000), stream=st.sampled_from(sorted(STREAMS)))
def test_wide_arrays_and_objects(width: int, stream: str) -> None:
    check(stream, ("[" + ",".join(["0"] * width) + "]").encode())
    check(stream, ("{" + ",".join(f'"k{i}":{i}' for i in range(min(width, 5000))) + "}").encode())


hostile = json_values | any_text.map(lambda t: f"A{t}\x00") | st.sampled_from(
    ["\x07\x1b[31m", "C-\x00-1", "x\x85y", "ok\x7f", "1900-01-01T00:00:00Z",
     "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", 10**19, -(2**63) - 1, 2**64, 1e308]
)  # fmt: skip


@FUZZ
@given(index=st.integers(min_value=0), data=st.data(), value=hostile)
def test_valid_messages_with_one_field_replaced(
    index: int, data: st.DataObject, value: Any
) -> None:
    """Any field of any message type, at the top or inside a line, replaced by any value."""
    message = json.loads(json.dumps(VALID[index % len(VALID)]))
    target = message
    if message.get("lines") and data.draw(st.booleans()):
        target = message["lines"][data.draw(st.integers(0, len(message["lines"]) - 1))]
    field = data.draw(st.sampled_from(sorted(target) + ["extra"]))
    target[field] = value
    stream = stream_of(_type_of(message["type"]))
    check(stream, json.dumps(message, ensure_ascii=data.draw(st.booleans())).encode())


def _type_of(name: Any) -> type:
    found = MESSAGE_TYPES.get(name) if isinstance(name, str) else None
    return found if found is not None else MESSAGE_TYPES["SaleRecorded"]
