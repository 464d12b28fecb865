"""Bytes to messages and back: the one door every message comes in through.

``decode`` never raises for bad input: it returns the decoded message or a ``Rejection``
with a ``RejectCode``, the JSON path of the bad value (``$.lines[1].net_amount``) and a
message that says what was expected and what came. Decisions taken here, for upstream
teams (``docs/integration.md`` says the same):

- Unknown fields are rejected (``unknown_field``), never dropped: a misspelt field would
  otherwise silently lose data.
- Amounts and quantities are JSON integers. ``12.5`` and also ``100.0`` or ``1e2`` are
  rejected as ``fractional_amount``: the decimal point shows the producer computed the
  value in floating point, and minor units never need one.
- A timestamp without a timezone is ``naive_timestamp``; one further in the future than
  ``Limits.future_tolerance_s`` past the receiver's clock is ``future_timestamp``; one
  before ``Limits.earliest_occurred_at`` (by default ten years before the receiver's
  clock; the worker uses ten years before its oldest program) is ``too_old``.
- Arrays and objects nested deeper than ``Limits.max_depth`` are ``too_deep``, judged on
  the bytes before any parser recurses into them (``schemas.screening``).
- A control character (U+0000-U+001F, U+007F-U+009F) in any string field is
  ``control_character``, with the field's path; free text may hold tab and line breaks.
- Duplicate keys in one JSON object are not detected: as with most JSON parsers the last
  one wins. Producers must not send them (RFC 8259 says names SHOULD be unique).

The codes checked against ledger state (unknown partner, unknown order, reversal larger
than the sale, conflict) are not decided here; the processor uses the same ``RejectCode``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec

from schemas import commands, events, screening
from schemas.events import STATEFUL_CODES, ContractViolation, RejectCode, Rejection
from schemas.streams import ANY, MESSAGE_TYPES, Message, Stream, get_stream, stream_of

__all__ = [
    "STATEFUL_CODES",
    "ContractViolation",
    "Decoded",
    "Limits",
    "RejectCode",
    "Rejection",
    "check_occurred_at",
    "ten_years_before",
    "decode",
    "decode_any",
    "encode",
    "fingerprint",
    "from_violation",
]

Decoded = Message


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Bounds on what a receiver accepts; built from settings by the entry point.

    The constraints apply when built with ``msgspec.convert`` (as settings are).
    """

    max_message_bytes: Annotated[int, msgspec.Meta(gt=0)] = 1_000_000
    # How far occurred_at may run ahead of the receiver's clock: producers' clocks drift.
    future_tolerance_s: Annotated[int, msgspec.Meta(ge=0)] = 300
    # How deep arrays and objects may nest; the deepest message of the contract nests 3.
    max_depth: Annotated[int, msgspec.Meta(ge=3, le=64)] = 32
    # The earliest occurred_at accepted; None means ten years before the receiver's clock.
    # An event from 1900 is a producer's bug, and the timer would close every month since.
    earliest_occurred_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    # Where earliest_occurred_at comes from, in words for the too_old message.
    earliest_basis: str = "the configured earliest_occurred_at"


# Numeric fields that hold money or counts: a JSON float there is ``fractional_amount``
# rather than a plain ``wrong_type``, which tells the producer what to fix.
_WHOLE_NUMBER_FIELDS = frozenset({"quantity", "net_amount", "amount", "points"})
_QUANTITY_FIELDS = frozenset({"quantity"})

# msgspec's ValidationError text is "<what> - at `<path>`", the path omitted at the root.
_ERROR = re.compile(r"^(?P<text>.*?)(?: - at `(?P<path>\$.*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>.+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>.+)`$")
_TYPE = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")
_NOT_POSITIVE = re.compile(r"^Expected `int` (?:>= 1|> 0)$")
# msgspec words a pattern failure as "Expected `str` matching regex <repr>"; say instead
# what the pattern means.
_PATTERN_FAILURES = {
    f"Expected `str` matching regex {pattern!r}": f"expected {meaning}"
    for pattern, meaning in {**events.PATTERNS, **commands.PATTERNS}.items()
}
_PATH_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")

_ENCODER = msgspec.json.Encoder()
_GENERIC = msgspec.json.Decoder()
_ABSENT = object()


def decode(stream: str, raw: bytes | None, *, now: datetime, limits: Limits) -> Decoded | Rejection:
    """Decode one message of ``stream`` (``"sales"``, ...) or say why it is rejected.

    ``now`` is the receiver's clock (timezone-aware), against which ``future_timestamp``
    is judged. An unknown ``stream`` is a programming error and raises ``ValueError``.
    """
    return _decode(get_stream(stream), raw, now=now, limits=limits)


def decode_any(raw: bytes | None, *, now: datetime, limits: Limits) -> Decoded | Rejection:
    """Like ``decode`` for a message of any stream (files mixing types); route it with
    ``schemas.streams.stream_of(type(message))``."""
    return _decode(ANY, raw, now=now, limits=limits)


def encode(message: Message) -> bytes:
    """Canonical JSON of a message: fields in schema order, UTC timestamps, defaults
    omitted. This is what publishers send and what ``fingerprint`` hashes."""
    return _ENCODER.encode(message)


def fingerprint(message: Message) -> bytes:
    """SHA-256 of the canonical encoding of a decoded message.

    Whitespace, key order, the timezone offset the producer wrote and explicitly sent
    default values do not change it; any change of content does. The processor compares
    it for a known ``event_id``: equal means duplicate (counted once), different means
    conflict (dead-lettered). Because defaults are omitted, a field added to a schema
    later (always with a default) leaves the fingerprints of older events unchanged.
    """
    return hashlib.sha256(_ENCODER.encode(message)).digest()


def check_occurred_at(message: Message, *, now: datetime, limits: Limits) -> Rejection | None:
    """``future_timestamp`` if the message happened further ahead of ``now`` than allowed,
    ``too_old`` if before the earliest moment accepted."""
    if now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    earliest = limits.earliest_occurred_at or ten_years_before(now)
    if message.occurred_at < earliest:
        source = limits.earliest_basis if limits.earliest_occurred_at else (
            "ten years before the receiver's clock"
        )
        return Rejection(
            code=RejectCode.TOO_OLD,
            path="$.occurred_at",
            message=f"occurred_at {message.occurred_at.isoformat()} is before"
            f" {earliest.isoformat()}, the earliest accepted ({source})",
        )
    ahead = message.occurred_at - now
    if ahead <= timedelta(seconds=limits.future_tolerance_s):
        return None
    return Rejection(
        code=RejectCode.FUTURE_TIMESTAMP,
        path="$.occurred_at",
        message=f"occurred_at {message.occurred_at.isoformat()} is {ahead.total_seconds():.0f}"
        f" s ahead of the receiver's clock; at most {limits.future_tolerance_s} s is allowed",
    )


def ten_years_before(moment: datetime) -> datetime:
    """The same instant ten calendar years earlier (29 February becomes the 28th)."""
    try:
        return moment.replace(year=moment.year - 10)
    except ValueError:
        return moment.replace(year=moment.year - 10, day=28)


def from_violation(exc: ContractViolation, at: str = "$") -> Rejection:
    """The Rejection for a ``ContractViolation`` raised by a struct located at ``at``."""
    return Rejection(code=exc.code, path=_join(at, exc.path), message=exc.message)


# ---------------------------------------------------------------------------------------


def _decode(
    stream: Stream, raw: bytes | None, *, now: datetime, limits: Limits
) -> Decoded | Rejection:
    if raw is None or not raw or raw.isspace():
        return Rejection(code=RejectCode.EMPTY, path="$", message="the message is empty")
    if len(raw) > limits.max_message_bytes:
        return Rejection(
            code=RejectCode.TOO_LARGE,
            path="$",
            message=f"the message is {len(raw)} bytes; at most {limits.max_message_bytes}"
            " are accepted",
        )
    deep = screening.too_deep(raw, limits.max_depth)
    if deep is not None:
        return deep
    try:
        message: Message = stream.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        # Bad UTF-8 can surface as any of the three, depending on where it sits. The words
        # may quote the message (an unknown field's name), so they are made safe to store.
        return screening.safe_rejection(_utf8_rejection(raw) or _rejection(stream, raw, exc))
    if screening.may_hold_controls(raw):
        controls = screening.control_character(message)
        if controls is not None:
            return controls
    return check_occurred_at(message, now=now, limits=limits) or message


def _utf8_rejection(raw: bytes) -> Rejection | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(
            code=RejectCode.INVALID_UTF8,
            path="$",
            message=f"byte 0x{raw[exc.start]:02x} at offset {exc.start} is not valid UTF-8",
        )
    return None


def _rejection(stream: Stream, raw: bytes, exc: Exception) -> Rejection:
    if not isinstance(exc, msgspec.ValidationError):
        return Rejection(code=RejectCode.NOT_JSON, path="$", message=f"not JSON: {exc}")
    match = _ERROR.match(str(exc))
    assert match is not None  # the pattern matches any text
    text, path = match["text"], match["path"] or "$"
    cause = exc.__cause__
    if isinstance(cause, ContractViolation):
        return from_violation(cause, at=path)
    return _classify(stream, raw, text, path)


def _classify(stream: Stream, raw: bytes, text: str, path: str) -> Rejection:
    """Map one msgspec validation error to a code, a path and a message with the value."""
    code = RejectCode
    if m := _MISSING.match(text):
        name = m["name"]
        return Rejection(
            code=code.MISSING_FIELD,
            path=_join(path, name),
            message=f"required field `{name}` is missing",
        )
    if m := _UNKNOWN.match(text):
        name = m["name"]
        return Rejection(
            code=code.UNKNOWN_FIELD,
            path=_join(path, name),
            message=f"unknown field `{name}`: not in the published schema (unknown fields"
            " are rejected, never dropped; check the spelling and schema_version)",
        )
    value = _value_at(raw, path)
    shown = _show(value)
    leaf = path.rsplit(".", 1)[-1]
    if path == "$.type" and text.startswith("Invalid value"):
        return Rejection(code=code.UNKNOWN_TYPE, path=path, message=_unknown_type(stream, value))
    typed = _TYPE.match(text)
    if typed and path == "$" and typed["expected"] == "object":
        return Rejection(
            code=code.NOT_OBJECT, path=path, message=f"expected a JSON object, got {typed['got']}"
        )
    if typed and typed["expected"] == "int" and typed["got"] == "float":
        if leaf in _WHOLE_NUMBER_FIELDS:
            return Rejection(
                code=code.FRACTIONAL_AMOUNT,
                path=path,
                message=f"expected a whole number (minor units, no decimal point), got {shown}",
            )
    if "with a timezone component" in text:
        return Rejection(
            code=code.NAIVE_TIMESTAMP,
            path=path,
            message=f"expected a timestamp with a timezone offset such as Z or +01:00, got {shown}",
        )
    if typed:
        return Rejection(
            code=code.WRONG_TYPE,
            path=path,
            message=f"expected {typed['expected']}, got {typed['got']} {shown}",
        )
    if leaf in _QUANTITY_FIELDS and _NOT_POSITIVE.match(text):
        return Rejection(
            code=code.NON_POSITIVE_QUANTITY, path=path, message=f"expected > 0, got {shown}"
        )
    # Every other constraint (length, pattern, range, enum, UUID or date syntax).
    detail = _PATTERN_FAILURES.get(text) or text[:1].lower() + text[1:]
    if value is not _ABSENT and not text.startswith("Invalid"):
        detail += f", got {shown}"
    return Rejection(code=code.INVALID_VALUE, path=path, message=detail)


def _unknown_type(stream: Stream, value: object) -> str:
    carried = ", ".join(stream.type_names)
    message = f"unknown type {_show(value)}; stream '{stream.name}' carries {carried}"
    known = MESSAGE_TYPES.get(value) if isinstance(value, str) else None
    if known is not None:
        message += f" ({value} belongs on stream '{stream_of(known)}')"
    return message


def _join(path: str, name: str) -> str:
    if not name:
        return path
    if name.startswith("["):
        return path + name
    return f"{path}.{name}"


def _value_at(raw: bytes, path: str) -> Any:
    """The JSON value at ``path`` in ``raw``, or ``_ABSENT``; only used to word errors."""
    try:
        value: Any = _GENERIC.decode(raw)
    except msgspec.DecodeError:
        return _ABSENT
    for name, index in _PATH_STEP.findall(path[1:]):
        if name and isinstance(value, dict) and name in value:
            value = value[name]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return _ABSENT
    return value


def _show(value: object, limit: int = 60) -> str:
    if value is _ABSENT:
        return "nothing"
    text = _ENCODER.encode(value).decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."
