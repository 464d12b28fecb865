"""Ids, assets and the chart of accounts of the ledger (pure), and the errors of its core.

The rules they follow are written out in ``ledger.core``'s module docstring; ``ledger.core``
re-exports every name here, so callers keep using ``core.partner_pending`` and the like.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated

import msgspec

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]

# Ids become parts of account names, assets and record-id names, where ":" is the separator.
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}"
TOKEN_RE = re.compile(_TOKEN)
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_AWARD_KIND_RE = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")
_ACCOUNT_RE = re.compile(
    rf"program:({_TOKEN}):(?:expense|penalty)"
    rf"|partner:({_TOKEN}):(?:pending|available)"
    r"|payout:clearing|points:redeemed|points:expired|awards:fulfilled|ledger:adjustments"
)
Asset = str
Account = str

class LedgerError(Exception):
    """An expected failure of the ledger core; the message says what was expected and found."""


class InvalidDraft(LedgerError, ValueError):
    """A draft that breaks a rule of the ledger. A ValueError, so that msgspec reports it as a
    ValidationError (with the path) when a Draft is decoded rather than built."""

    def __init__(self, path: str, expected: str, found: object) -> None:
        self.path = path
        self.expected = expected
        self.found = found
        super().__init__(f"invalid ledger draft at `{path}`: expected {expected}, found {found!r}")



def require(ok: bool, path: str, expected: str, found: object) -> None:
    if not ok:
        raise InvalidDraft(path, expected, found)


def require_token(path: str, value: object) -> None:
    require(
        isinstance(value, str) and TOKEN_RE.fullmatch(value) is not None,
        path,
        "an id of letters, digits, '.', '_' or '-' (no ':'), at most 128 characters",
        value,
    )


# --- assets ---------------------------------------------------------------------------------


class AssetKind(enum.StrEnum):
    CURRENCY = "currency"
    POINTS = "points"
    AWARD = "award"
    MDF = "mdf"


def currency(code: str) -> Asset:
    require(_CURRENCY_RE.fullmatch(code) is not None, "asset", "an ISO 4217 code like EUR", code)
    return code


def points(program_id: str) -> Asset:
    require_token("asset.program_id", program_id)
    return f"PTS:{program_id}"


def award(kind: str) -> Asset:
    require(_AWARD_KIND_RE.fullmatch(kind) is not None, "asset", "an award kind like trip", kind)
    return f"AWARD:{kind}"


def mdf(currency_code: str) -> Asset:
    return f"MDF:{currency(currency_code)}"


def asset_kind(asset: str) -> AssetKind | None:
    """The kind of a well-formed asset, or None when the string is not one."""
    prefix, sep, rest = asset.partition(":")
    if not sep:
        return AssetKind.CURRENCY if _CURRENCY_RE.fullmatch(asset) else None
    if prefix == "PTS" and TOKEN_RE.fullmatch(rest):
        return AssetKind.POINTS
    if prefix == "AWARD" and _AWARD_KIND_RE.fullmatch(rest):
        return AssetKind.AWARD
    if prefix == "MDF" and _CURRENCY_RE.fullmatch(rest):
        return AssetKind.MDF
    return None


# --- accounts -------------------------------------------------------------------------------

PAYOUT_CLEARING: Account = "payout:clearing"
POINTS_REDEEMED: Account = "points:redeemed"
POINTS_EXPIRED: Account = "points:expired"
AWARDS_FULFILLED: Account = "awards:fulfilled"
LEDGER_ADJUSTMENTS: Account = "ledger:adjustments"


def program_expense(program_id: str) -> Account:
    require_token("account.program_id", program_id)
    return f"program:{program_id}:expense"


def program_penalty(program_id: str) -> Account:
    require_token("account.program_id", program_id)
    return f"program:{program_id}:penalty"


def partner_pending(partner_id: str) -> Account:
    require_token("account.partner_id", partner_id)
    return f"partner:{partner_id}:pending"


def partner_available(partner_id: str) -> Account:
    require_token("account.partner_id", partner_id)
    return f"partner:{partner_id}:available"


def account_partner(account: str) -> str | None:
    """The partner id of a ``partner:<id>:...`` account, else None."""
    match = _ACCOUNT_RE.fullmatch(account)
    return match.group(2) if match else None


def is_account(account: str) -> bool:
    return _ACCOUNT_RE.fullmatch(account) is not None
