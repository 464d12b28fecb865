"""What a ledger record says: its kind, its explanation and its postings (pure types).

``ledger.core`` re-exports them and documents how they are hashed.
"""

from __future__ import annotations

import enum
import uuid

import msgspec

from ledger.accounts import Account, Asset, Int64


class RecordKind(enum.StrEnum):
    ACCRUAL = "accrual"  # a program awarded value (cash, points, MDF, an award)
    HOLD_RELEASE = "hold_release"  # pending -> available once a hold ends
    CLAWBACK = "clawback"  # what a reversed sale earned goes back to the program
    PENALTY = "penalty"  # a negative incentive charged to the partner
    PAYOUT = "payout"  # available cash or MDF paid out
    REDEMPTION = "redemption"  # available points or awards consumed
    EXPIRY = "expiry"  # available points lapsed
    ADJUSTMENT = "adjustment"  # a manual correction, with author and reason
    REVERSAL = "reversal"  # undoes an earlier record named in the explanation
    TIER_CHANGE = "tier_change"  # status only: moves no value, has no postings
    # A decision that moves no value but belongs in the partner's statement: a target set,
    # an award a partner could not earn (no target, no base) or that a gate withheld.
    NOTE = "note"


# Kinds that move no value; every other kind must have at least two postings.
VALUE_FREE_KINDS = frozenset({RecordKind.TIER_CHANGE, RecordKind.NOTE})

InputScalar = str | Int64 | bool | None
InputValue = InputScalar | list[InputScalar]


class Rounding(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How an exact amount became an integer of minor units."""

    mode: str  # e.g. "half_even"
    exact: str  # the unrounded value as a decimal string, e.g. "1234.5"
    result: Int64  # the rounded amount in minor units


class Explanation(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Why a record exists, structured so statements and auditors can show every line.

    Treat `inputs` as immutable once the record is sealed: the hash covers it. Only add new
    fields with defaults (omit_defaults keeps old hashes stable).
    """

    summary: str
    formula: str = ""
    inputs: dict[str, InputValue] = {}
    rounding: Rounding | None = None
    author: str | None = None
    reason: str | None = None
    related_record_ids: tuple[uuid.UUID, ...] = ()


class Posting(msgspec.Struct, frozen=True, array_like=True):
    account: Account
    asset: Asset
    amount: int  # signed minor units (or points, or award units): what the account receives
