"""Upload files for the publisher: JSONL and CSV, validated and reported line by line.

Both readers take a binary stream, hold at most one line (JSONL) or one order (CSV) in
memory, and yield ``(line_no, Outgoing | Rejection)`` as they go, so a month of POS data
streams through. Every message passes through ``codec.decode``, the same door as at
ingestion, so a file that publishes cleanly will not be dead-lettered for its shape.

JSONL: one message per line, any type; blank lines are skipped; ``event_id`` is required.

CSV: one type per file, named by the caller (``message_type``) or by a ``type`` column. The
header names the columns, in any order (``schemas.files_csv.CSV_LAYOUTS`` lists them per
type). Cells are trimmed; an empty cell is an absent field. Booleans are true/false (also
1/0, yes/no). ``SaleRecorded`` and ``SaleReversed`` take one row per line: consecutive rows
with the same ``partner_id`` and ``order_id`` (and ``reversal_id``) form one message, whose
order-level cells must agree on every row. A row without ``event_id`` gets a deterministic
id, ``derive_event_id``, from its natural key, so publishing the same file twice publishes
the same ids and counts once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import IO

import msgspec

from schemas.codec import Limits, decode_any, encode
from schemas.events import (
    RejectCode,
    Rejection,
)
from schemas.streams import Message, stream_of

# Fixed forever: changing it would give every re-published CSV row a new event id, and
# re-publishing a file would double it.
NAMESPACE = uuid.UUID("59033a40-5a78-43d6-bbeb-cc5c641bd4c9")

# The fields whose values identify a message for ``derive_event_id``, with the type name
# in front. Types without an entry (RedeemPoints, AdjustBalance) have no natural key: two
# identical redemptions on one day are two redemptions, so their rows need an event_id.
NATURAL_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "SaleRecorded": ("partner_id", "order_id"),
        "SaleReversed": ("partner_id", "order_id", "reversal_id"),
        "SurveyCompleted": ("partner_id", "survey_id"),
        "TrainingCompleted": ("partner_id", "course_id", "occurred_at"),
        "PartnerRegistered": ("partner_id",),
        "PartnerUpdated": ("partner_id", "occurred_at"),
        "ClosePeriod": ("partner_id", "program_id", "period"),
        "AdvanceClock": ("partner_id", "occurred_at"),
        "RecordPayout": ("partner_id", "reference"),
        "ClaimFunds": ("partner_id", "claim_id"),
        "ApproveClaim": ("partner_id", "claim_id"),
        "RejectClaim": ("partner_id", "claim_id"),
        # A later target for the same period replaces an earlier one: the time tells them apart.
        "TargetsSet": ("partner_id", "program_id", "period", "metric", "occurred_at"),
    }
)


class Outgoing(msgspec.Struct, frozen=True, kw_only=True):
    """A validated message ready to publish: topic by stream, Kafka key, canonical bytes."""

    stream: str
    key: str
    event_id: uuid.UUID
    value: bytes


Item = tuple[int, Outgoing | Rejection]


def format_error(line_no: int, rejection: Rejection) -> str:
    """``line 17: $.lines[0].quantity: expected > 0, got -2 (non_positive_quantity)``."""
    return f"line {line_no}: {rejection}"


def derive_event_id(message: Message) -> uuid.UUID | None:
    """UUIDv5 of the type name and natural key of ``message``; None if it has no key."""
    name = type(message).__name__
    key = NATURAL_KEYS.get(name)
    if key is None:
        return None
    parts = [name, *(_key_text(getattr(message, f)) for f in key)]
    # The unit separator cannot occur in ids, so ("a", "b c") and ("a b", "c") differ.
    return uuid.uuid5(NAMESPACE, "\x1f".join(parts))


def _key_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()  # already UTC, so one text per instant
    return str(value)


def iter_jsonl(source: IO[bytes], *, now: datetime, limits: Limits) -> Iterator[Item]:
    """Validate a JSONL stream: one ``(line_no, Outgoing | Rejection)`` per non-blank line."""
    for line_no, line in _read_lines(source, limits.max_message_bytes):
        if line is None:
            yield line_no, _too_long(limits)
            continue
        body = line.rstrip(b"\r\n")
        if body.strip():
            yield line_no, _outgoing(decode_any(body, now=now, limits=limits))


# ---------------------------------------------------------------------------------------
# Shared.


_BOM = b"\xef\xbb\xbf"


def _read_lines(source: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | None]]:
    """Physical lines with their endings, numbered from 1; None for a line over ``limit``
    bytes, whose rest is skipped unread into memory. A UTF-8 byte order mark is dropped."""
    line_no = 0
    while True:
        # Room for "\r\n", and on the first line for a byte order mark.
        room = limit + 2 + (len(_BOM) if line_no == 0 else 0)
        chunk = source.readline(room)
        if not chunk:
            return
        line_no += 1
        complete = len(chunk) < room or chunk.endswith(b"\n")
        if line_no == 1 and chunk.startswith(_BOM):
            chunk = chunk[len(_BOM) :]
        if complete:
            yield line_no, chunk
            continue
        while chunk and not chunk.endswith(b"\n"):  # bounded by the file's length
            chunk = source.readline(room)
        yield line_no, None


def _too_long(limits: Limits) -> Rejection:
    return Rejection(
        code=RejectCode.TOO_LARGE,
        path="$",
        message=f"the line is longer than {limits.max_message_bytes} bytes",
    )


def _outgoing(result: Message | Rejection) -> Outgoing | Rejection:
    if isinstance(result, Rejection):
        return result
    return Outgoing(
        stream=stream_of(type(result)),
        key=result.partner_id,
        event_id=result.event_id,
        value=encode(result),
    )
