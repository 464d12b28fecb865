"""Events: the facts upstream systems publish, named in the past tense.

Every event is a frozen msgspec Struct on the same envelope, in this order:
``type`` (the tag, the class name), ``event_id``, ``occurred_at``, ``partner_id``,
``schema_version``, then its body. Rules every type follows, because they are the contract:

- Unknown fields are rejected (``forbid_unknown_fields``). A typo such as ``net_amout``
  would otherwise be dropped without a word and the sale counted as zero; producers may
  send only the fields of the schema version they name.
- Schemas only grow: a new field gets a default and goes last, and ``SCHEMA_VERSION`` is
  raised. A message naming a newer ``schema_version`` than this code knows is rejected
  rather than half-understood. A breaking change is a new type name.
- Defaults are omitted when encoding (``omit_defaults``), so a field added later with a
  default leaves the canonical bytes, and so the fingerprint, of older events unchanged.
- Cross-field rules (known currency, one currency per order, score within its scale, ...)
  live in ``__post_init__``, so no code path can build an invalid event: the decoder,
  ``msgspec.convert`` and plain construction in Python all run them. They raise
  ``ContractViolation``, which ``schemas.codec`` turns into a ``Rejection``.

The rejection vocabulary (``RejectCode``, ``Rejection``, ``ContractViolation``) is defined
here rather than in ``codec`` because the types themselves raise it and ``codec`` imports
the types; ``schemas.codec`` re-exports it for users.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from schemas.money import CurrencyCode, NonNegativeAmount, is_currency

# ---------------------------------------------------------------------------------------
# The rejection vocabulary.


class RejectCode(enum.StrEnum):
    """Why a message was not applied: one machine-readable code per kind of failure."""

    # Checked by ``codec.decode`` from the bytes alone.
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    INVALID_UTF8 = "invalid_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_FIELD = "unknown_field"
    NON_POSITIVE_QUANTITY = "non_positive_quantity"
    FRACTIONAL_AMOUNT = "fractional_amount"
    UNKNOWN_CURRENCY = "unknown_currency"
    CURRENCY_MISMATCH = "currency_mismatch"
    NAIVE_TIMESTAMP = "naive_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    SCORE_OFF_SCALE = "score_off_scale"
    INVALID_VALUE = "invalid_value"
    TOO_DEEP = "too_deep"
    CONTROL_CHARACTER = "control_character"
    TOO_OLD = "too_old"
    # Checked later by the processor against ledger state; listed here so that every
    # dead letter carries a code from this one enum.
    UNKNOWN_PARTNER = "unknown_partner"
    UNKNOWN_ORDER = "unknown_order"
    REVERSAL_EXCEEDS_SALE = "reversal_exceeds_sale"
    CONFLICT = "conflict"
    # Decided by the worker when applying a valid message failed and the failure was
    # narrowed down to this one message (see processors.writer.isolation).
    PROCESSING_FAILED = "processing_failed"
    # Not a dead letter: a duplicate is counted once and skipped. It has a code so that
    # publisher summaries and reconciliation can name it in the same vocabulary.
    DUPLICATE = "duplicate"


STATEFUL_CODES: frozenset[RejectCode] = frozenset(
    {
        RejectCode.UNKNOWN_PARTNER,
        RejectCode.UNKNOWN_ORDER,
        RejectCode.REVERSAL_EXCEEDS_SALE,
        RejectCode.CONFLICT,
        RejectCode.PROCESSING_FAILED,
        RejectCode.DUPLICATE,
    }
)


class Rejection(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A message that will not be applied: what is wrong (code), where, and in words.

    ``path`` is a JSON path into the message, like ``$.lines[1].net_amount``; ``$`` means
    the message as a whole.
    """

    code: RejectCode
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.code})"


class ContractViolation(ValueError):
    """A decoded value breaks a rule of the contract that the type system cannot express.

    ``path`` is relative to the struct that raised it (``"currency"``,
    ``"lines[1].line_id"``, or ``""`` for the struct itself); msgspec adds the struct's
    own position when the violation happens while decoding.
    """

    def __init__(self, code: RejectCode, path: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.path = path
        self.message = message


# ---------------------------------------------------------------------------------------
# Field types shared by events and commands.

# Python's `$` also matches before a trailing newline; `$(?!\n)` means "end of string" in
# both Python's and JSON Schema's (ECMA-262) regex dialects, so "P1\n" is not "P1".
END = r"$(?!\n)"

PARTNER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}" + END
ID_PATTERN = r"^\S(?:.*\S)?" + END
TEXT_PATTERN = r"\S"
# What each pattern means, in words, for rejection messages (a regex is no explanation).
PATTERNS: Mapping[str, str] = MappingProxyType(
    {
        PARTNER_ID_PATTERN: "a partner id: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter"
        " or digit",
        ID_PATTERN: "an identifier without surrounding whitespace or line breaks",
        TEXT_PATTERN: "text that is not only whitespace",
    }
)

PartnerId = Annotated[
    str,
    Meta(
        pattern=PARTNER_ID_PATTERN,
        description="Partner id: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit."
        " It is the Kafka message key.",
    ),
]
# Identifiers chosen by upstream systems (orders, lines, SKUs, customers, ...). Any text
# is allowed except surrounding whitespace and line breaks, which make two spellings of
# the same id look different to every join downstream.
Id = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=ID_PATTERN,
        description="Identifier: 1-128 characters, no surrounding whitespace, line breaks or"
        " other control characters.",
    ),
]
Text = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=2000,
        pattern=TEXT_PATTERN,
        description="Free text for people: 1-2000 characters, not only whitespace; tab and"
        " line breaks are the only control characters allowed.",
    ),
]
UtcDatetime = Annotated[
    datetime,
    Meta(
        tz=True,
        description="RFC 3339 timestamp with a timezone offset ('Z' or '+01:00');"
        " normalised to UTC.",
    ),
]
SchemaVersion = Annotated[int, Meta(ge=1, description="Version of this type's schema.")]
Quantity = Annotated[
    int, Meta(gt=0, le=1_000_000_000, description="Number of units, a whole number > 0.")
]

# A sale or reversal carries at most this many lines, which bounds the work and memory of
# one message (and of grouping CSV rows into one order).
MAX_LINES = 1000

SCALES: Mapping[str, tuple[int, int]] = MappingProxyType({"csat_1_5": (1, 5), "nps_0_10": (0, 10)})
Scale = Literal["csat_1_5", "nps_0_10"]
PartnerKind = Literal["distributor", "reseller", "agent"]
PartnerStatus = Literal["active", "suspended", "terminated"]


def check_currency(code: str, path: str) -> None:
    """Raise ``unknown_currency`` at ``path`` unless ``code`` is in the ISO 4217 table."""
    if not is_currency(code):
        hint = " (codes are upper case)" if is_currency(code.upper()) else ""
        raise ContractViolation(
            RejectCode.UNKNOWN_CURRENCY, path, f"{code!r} is not an ISO 4217 currency{hint}"
        )


def _check_unique_lines(line_ids: Iterable[str]) -> None:
    seen: dict[str, int] = {}
    for index, line_id in enumerate(line_ids):
        if line_id in seen:
            raise ContractViolation(
                RejectCode.INVALID_VALUE,
                f"lines[{index}].line_id",
                f"line_id {line_id!r} repeats lines[{seen[line_id]}]",
            )
        seen[line_id] = index


# ---------------------------------------------------------------------------------------
# The envelope.


class Envelope(
    msgspec.Struct,
    tag=True,
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
):
    """Fields every event and command starts with. Not sent on its own."""

    # The newest schema version of this type that this code understands.
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: Annotated[
        uuid.UUID, Meta(description="Chosen by the producer; the same id is the same event.")
    ]
    occurred_at: UtcDatetime
    partner_id: PartnerId
    schema_version: SchemaVersion = 1

    def __post_init__(self) -> None:
        # msgspec rejects naive timestamps when decoding (Meta(tz=True)), but not when an
        # event is built in Python, so check here too.
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() is None:
            raise ContractViolation(
                RejectCode.NAIVE_TIMESTAMP, "occurred_at", "occurred_at has no timezone"
            )
        if self.occurred_at.tzinfo is not UTC:
            # One representation per instant, so equal events encode to equal bytes.
            msgspec.structs.force_setattr(self, "occurred_at", self.occurred_at.astimezone(UTC))
        if self.schema_version > self.SCHEMA_VERSION:
            raise ContractViolation(
                RejectCode.INVALID_VALUE,
                "schema_version",
                f"schema_version {self.schema_version} of {type(self).__name__} is newer"
                f" than the newest this system accepts ({self.SCHEMA_VERSION})",
            )


# ---------------------------------------------------------------------------------------
# Sales.


class SaleLine(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """One line of an order. ``net_amount`` is the line total after discounts, before tax."""

    line_id: Id
    sku: Id
    category: Id
    quantity: Quantity
    net_amount: NonNegativeAmount
    # Optional so that exports that repeat the currency on every line can be sent as they
    # are; when present it must equal the order's currency.
    currency: CurrencyCode | None = None


class SaleRecorded(Envelope, kw_only=True, frozen=True):
    """A partner sold to a customer: one order with one or more lines, in one currency.

    Rules beyond the types: the currency is an ISO 4217 code; a line's currency, if given,
    equals the order's (else ``currency_mismatch``); line ids are unique within the order.
    """

    order_id: Id
    lines: Annotated[tuple[SaleLine, ...], Meta(min_length=1, max_length=MAX_LINES)]
    currency: CurrencyCode
    customer_id: Id
    new_customer: bool
    region: Id

    def __post_init__(self) -> None:
        super().__post_init__()
        check_currency(self.currency, "currency")
        for index, line in enumerate(self.lines):
            if line.currency is None:
                continue
            path = f"lines[{index}].currency"
            check_currency(line.currency, path)
            if line.currency != self.currency:
                raise ContractViolation(
                    RejectCode.CURRENCY_MISMATCH,
                    path,
                    f"line currency {line.currency} differs from the order's {self.currency}",
                )
        _check_unique_lines(line.line_id for line in self.lines)


class ReversalLine(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """What is returned of one original sale line: quantity and the net amount refunded."""

    line_id: Id
    quantity: Quantity
    net_amount: NonNegativeAmount


class SaleReversed(Envelope, kw_only=True, frozen=True):
    """A return or cancellation of an earlier ``SaleRecorded`` order, in full or in part.

    ``scope: "full"`` reverses whatever remains of the order and sends no lines;
    ``scope: "partial"`` lists the original lines (by ``line_id``) with the quantity and
    net amount returned. Whether the order exists (``unknown_order``), the currency matches
    the sale (``currency_mismatch``) and the reversal fits what remains
    (``reversal_exceeds_sale``) is checked by the processor against the ledger.
    """

    order_id: Id
    reversal_id: Id
    scope: Literal["full", "partial"]
    reason: Text
    currency: CurrencyCode
    lines: Annotated[tuple[ReversalLine, ...], Meta(max_length=MAX_LINES)] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_currency(self.currency, "currency")
        if self.scope == "partial" and not self.lines:
            raise ContractViolation(
                RejectCode.INVALID_VALUE, "lines", "a partial reversal must list its lines"
            )
        if self.scope == "full" and self.lines:
            raise ContractViolation(
                RejectCode.INVALID_VALUE,
                "lines",
                "a full reversal reverses every remaining line: send no lines,"
                " or use scope 'partial'",
            )
        _check_unique_lines(line.line_id for line in self.lines)


# ---------------------------------------------------------------------------------------
# Surveys and trainings.


class SurveyCompleted(Envelope, kw_only=True, frozen=True):
    """A customer answered a satisfaction survey about the partner.

    ``survey_id`` identifies this response. ``score`` must lie on ``scale``:
    ``csat_1_5`` is 1..5, ``nps_0_10`` is 0..10 (else ``score_off_scale``).
    """

    survey_id: Id
    customer_id: Id
    score: int
    scale: Scale
    order_id: Id | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        low, high = SCALES[self.scale]
        if not low <= self.score <= high:
            raise ContractViolation(
                RejectCode.SCORE_OFF_SCALE,
                "score",
                f"score {self.score} is off the {self.scale} scale ({low}..{high})",
            )


class TrainingCompleted(Envelope, kw_only=True, frozen=True):
    """The partner completed a course; ``certification`` names what passing it grants."""

    course_id: Id
    passed: bool
    certification: Id | None = None


# ---------------------------------------------------------------------------------------
# Partners.


def _check_parent(partner_id: str, parent: str | None | UnsetType) -> None:
    if parent == partner_id:
        raise ContractViolation(
            RejectCode.INVALID_VALUE,
            "parent_partner_id",
            f"partner {partner_id} cannot be its own parent",
        )


class PartnerRegistered(Envelope, kw_only=True, frozen=True):
    """A channel partner joined; ``partner_id`` is the partner being registered."""

    kind: PartnerKind
    region: Id
    joined_on: date
    status: PartnerStatus
    team: Id | None = None
    parent_partner_id: PartnerId | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_parent(self.partner_id, self.parent_partner_id)


class PartnerUpdated(Envelope, kw_only=True, frozen=True):
    """Some of a partner's attributes changed. An absent field is unchanged.

    ``team`` and ``parent_partner_id`` may be sent as ``null`` to clear them. At least one
    field must be present.
    """

    kind: PartnerKind | UnsetType = UNSET
    region: Id | UnsetType = UNSET
    joined_on: date | UnsetType = UNSET
    status: PartnerStatus | UnsetType = UNSET
    team: Id | None | UnsetType = UNSET
    parent_partner_id: PartnerId | None | UnsetType = UNSET

    CHANGEABLE: ClassVar[tuple[str, ...]] = (
        "kind", "region", "joined_on", "status", "team", "parent_partner_id",
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if all(getattr(self, name) is UNSET for name in self.CHANGEABLE):
            raise ContractViolation(
                RejectCode.INVALID_VALUE,
                "",
                "PartnerUpdated changes nothing: send at least one of"
                f" {', '.join(self.CHANGEABLE)}",
            )
        _check_parent(self.partner_id, self.parent_partner_id)


Event = (
    SaleRecorded
    | SaleReversed
    | SurveyCompleted
    | TrainingCompleted
    | PartnerRegistered
    | PartnerUpdated
)
EVENT_TYPES: tuple[type[Envelope], ...] = (
    SaleRecorded,
    SaleReversed,
    SurveyCompleted,
    TrainingCompleted,
    PartnerRegistered,
    PartnerUpdated,
)
