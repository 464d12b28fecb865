"""The rules of a ledger draft, checked in full (``validate_draft``).

``Draft`` runs them on construction and decoding (so msgspec reports a bad draft with its
path); the engine, whose drafts come from inputs validated at the boundary, runs them only
on what construction cannot bound (see ``ledger.core.BuiltDraft``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from ledger.accounts import (
    INT64_MAX,
    INT64_MIN,
    account_partner,
    asset_kind,
    is_account,
    require,
    require_token,
)
from ledger.records import VALUE_FREE_KINDS, Explanation, Posting, RecordKind

if TYPE_CHECKING:
    from ledger.core import Draft

# Bounds on what one record may hold, so one bad rule cannot write a megabyte row.
_LEG_MAX_CHARS = 200
POSTINGS_MAX = 64
SOURCE_EVENT_IDS_MAX = 1024
EXPLANATION_BYTES_MAX = 16_384

_CANONICAL = msgspec.json.Encoder(order="sorted")


def validate_draft(draft: Draft) -> None:
    """Every rule of the ledger on one draft; raises ``InvalidDraft`` naming the path."""
    _validate_draft(draft)

def _require_aware(path: str, value: object) -> None:
    require(
        isinstance(value, datetime) and value.utcoffset() is not None,
        path,
        "a time-zone-aware datetime",
        value,
    )


def _validate_draft(draft: Draft) -> None:
    require_token("partner_id", draft.partner_id)
    _require_aware("occurred_at", draft.occurred_at)
    _require_aware("recorded_at", draft.recorded_at)
    _validate_program_fields(draft)
    require(
        0 < len(draft.leg) <= _LEG_MAX_CHARS and "\x00" not in draft.leg,
        "leg",
        f"a non-empty string of at most {_LEG_MAX_CHARS} characters without NUL",
        draft.leg,
    )
    require(0 < len(draft.source_event_ids) <= SOURCE_EVENT_IDS_MAX, "source_event_ids",
             f"1 to {SOURCE_EVENT_IDS_MAX} ids", f"{len(draft.source_event_ids)} ids")
    require(
        len(set(draft.source_event_ids)) == len(draft.source_event_ids),
        "source_event_ids",
        "distinct ids",
        draft.source_event_ids,
    )
    _validate_explanation(draft.explanation)
    _validate_correction(draft)
    require(len(draft.postings) <= POSTINGS_MAX, "postings", f"at most {POSTINGS_MAX}",
             f"{len(draft.postings)} postings")
    if draft.kind in VALUE_FREE_KINDS:
        require(not draft.postings, "postings", f"none for a {draft.kind} record", draft.postings)
    else:
        require(len(draft.postings) >= 2, "postings", "at least two postings", draft.postings)
    for leg, posting in enumerate(draft.postings):
        _validate_posting(f"postings[{leg}]", posting, draft.partner_id)


def _validate_program_fields(draft: Draft) -> None:
    if draft.program_id is None:
        require(draft.program_version is None, "program_version", "null without program_id",
                 draft.program_version)
        require(draft.rule_id is None, "rule_id", "null without program_id", draft.rule_id)
        return
    require_token("program_id", draft.program_id)
    version = draft.program_version
    require(
        isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= INT64_MAX,
        "program_version",
        "a positive integer when program_id is set",
        version,
    )
    if draft.rule_id is not None:
        require_token("rule_id", draft.rule_id)


def _validate_correction(draft: Draft) -> None:
    # Corrections are new records; they must say who made them and why, or what they undo.
    explanation = draft.explanation
    if draft.kind is RecordKind.ADJUSTMENT:
        require(bool(explanation.author), "explanation.author", "the adjustment's author",
                 explanation.author)
        require(bool(explanation.reason), "explanation.reason", "the adjustment's reason",
                 explanation.reason)
    if draft.kind is RecordKind.REVERSAL:
        require(len(explanation.related_record_ids) > 0, "explanation.related_record_ids",
                 "the id of the record being reversed", explanation.related_record_ids)


def _validate_posting(path: str, posting: Posting, partner_id: str) -> None:
    require(is_account(posting.account), f"{path}.account", "an account of the chart",
             posting.account)
    owner = account_partner(posting.account)
    require(owner is None or owner == partner_id, f"{path}.account",
             f"an account of partner {partner_id!r}", posting.account)
    require(asset_kind(posting.asset) is not None, f"{path}.asset",
             "EUR, PTS:<program>, AWARD:<kind> or MDF:<currency>", posting.asset)
    amount = posting.amount
    require(
        isinstance(amount, int) and not isinstance(amount, bool) and amount != 0
        and INT64_MIN <= amount <= INT64_MAX,
        f"{path}.amount",
        "a non-zero 64-bit integer",
        amount,
    )


def _validate_explanation(explanation: Explanation) -> None:
    # PostgreSQL's jsonb cannot hold U+0000, and queries cast the stored explanation to jsonb.
    texts: list[tuple[str, str]] = [
        ("explanation.summary", explanation.summary),
        ("explanation.formula", explanation.formula),
        ("explanation.author", explanation.author or ""),
        ("explanation.reason", explanation.reason or ""),
    ]
    for key, value in explanation.inputs.items():
        texts.append((f"explanation.inputs[{key!r}]", key))
        values = value if isinstance(value, list) else [value]
        require(
            all(v is None or isinstance(v, (str, int)) for v in values),
            f"explanation.inputs[{key!r}]",
            "strings, integers, booleans or null (never floats)",
            value,
        )
        require(
            all(INT64_MIN <= v <= INT64_MAX for v in values if isinstance(v, int)),
            f"explanation.inputs[{key!r}]",
            "integers within 64 bits",
            value,
        )
        texts.extend((f"explanation.inputs[{key!r}]", v) for v in values if isinstance(v, str))
    if explanation.rounding is not None:
        texts.append(("explanation.rounding.mode", explanation.rounding.mode))
        texts.append(("explanation.rounding.exact", explanation.rounding.exact))
    for path, text in texts:
        require("\x00" not in text and _encodable(text), path, "UTF-8 text without NUL", text)
    size = len(_CANONICAL.encode(explanation))
    require(size <= EXPLANATION_BYTES_MAX, "explanation",
             f"at most {EXPLANATION_BYTES_MAX} bytes of JSON", f"{size} bytes")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
