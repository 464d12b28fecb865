"""What the engine returns: drafts and the new state, or a typed refusal."""

import enum

import msgspec

from ledger.core import Draft
from processors.engine.state import PartnerState


class RefusalCode(enum.StrEnum):
    """Why an event or command was not applied. Event refusals use the codes of
    ``schemas.events.RejectCode`` (the processor dead-letters them with the same code)."""

    UNKNOWN_ORDER = "unknown_order"
    REVERSAL_EXCEEDS_SALE = "reversal_exceeds_sale"
    CURRENCY_MISMATCH = "currency_mismatch"
    DUPLICATE_ORDER = "duplicate_order"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    UNKNOWN_ASSET = "unknown_asset"
    AMBIGUOUS_ASSET = "ambiguous_asset"
    UNKNOWN_REWARD = "unknown_reward"
    WRONG_POINTS = "wrong_points"
    NO_PROGRAM = "no_program"
    UNKNOWN_CLAIM = "unknown_claim"
    DUPLICATE_CLAIM = "duplicate_claim"
    # Segregation of duties: whoever submitted a claim cannot also approve it.
    SELF_APPROVAL = "self_approval"
    # An account may hold at most schemas.money.MAX_BALANCE_MINOR_UNITS, so that no balance,
    # and no sum a reader makes of a partner's balances, leaves 64 bits.
    BALANCE_LIMIT = "balance_limit"
    # A target for a period that is already closed, or that no rule measures.
    PERIOD_CLOSED = "period_closed"
    UNUSED_TARGET = "unused_target"


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """An expected failure: what was expected and what came, at ``path`` in the message."""

    code: RefusalCode
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.code})"


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """Drafts to append to the partner's chain, and the state to store with them.

    A refused input has no drafts and the state it was given (unchanged). ``short_of``
    names the program versions (id, version) whose budget left, as given, cut an award of
    this input, with how much more the awards needed: the writer, which gives a budget
    lease as the budget left, then knows that the lease was too short and by how much
    (``processors.engine.leases``)."""

    drafts: list[Draft]
    state: PartnerState
    refusal: Refusal | None = None
    short_of: dict[tuple[str, int], int] = msgspec.field(default_factory=dict)
