"""Commands: requests from finance and operations, named in the imperative.

Commands travel on the ``commands`` stream in the same envelope as events (see
``schemas.events``): ``event_id`` identifies the command, so a command sent twice is
carried out once, and ``partner_id`` is the Kafka key, so a partner's commands keep their
order relative to each other.

``ClosePeriod`` and ``AdvanceClock`` are the commands that are not about one partner:
closing a period settles rankings and competitions that compare partners, and advancing
the clock posts what fell due for every partner. Their ``partner_id`` must be the reserved
value ``"*"`` (``ALL_PARTNERS``), which no real partner id can take (partner ids start with
a letter or digit), and every other message must name a real partner.
Amounts are integers of minor units of ``currency``; for ``AdjustBalance`` of the asset.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal

from msgspec import Meta

from schemas.events import (
    END,
    ContractViolation,
    Envelope,
    Id,
    RejectCode,
    Text,
    check_currency,
)
from schemas.money import Amount, CurrencyCode, PositiveAmount

ALL_PARTNERS = "*"

PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])" + END
TARGET_PERIOD_PATTERN = r"^[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?" + END
ASSET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}" + END
PATTERNS: Mapping[str, str] = MappingProxyType(
    {
        PERIOD_PATTERN: "a month as YYYY-MM",
        TARGET_PERIOD_PATTERN: "a period as YYYY-MM (a month), YYYY-Qn (a quarter) or YYYY"
        " (a year)",
        ASSET_PATTERN: "an asset name: 1-64 of A-Z a-z 0-9 : . _ -, starting with a letter"
        " or digit",
    }
)

Period = Annotated[
    str,
    Meta(
        pattern=PERIOD_PATTERN,
        description="Calendar month as YYYY-MM, e.g. 2026-03.",
    ),
]
TargetPeriod = Annotated[
    str,
    Meta(
        pattern=TARGET_PERIOD_PATTERN,
        description="The period a target is for: a month 2026-03, a quarter 2026-Q1 or a"
        " year 2026, matching the period of the rules that measure it.",
    ),
]
TargetMetric = Literal["net_sales", "units", "new_customers"]
Asset = Annotated[
    str,
    Meta(
        pattern=ASSET_PATTERN,
        description="What a balance holds: an ISO currency code (EUR), 'points', or a"
        " non-cash award such as 'award:travel-2026'.",
    ),
]


class ClosePeriod(Envelope, kw_only=True, frozen=True):
    """Close a period: compute period awards (rankings, rebates, competitions) and freeze it.

    Sent with ``partner_id: "*"``. Without ``program_id`` every program's period closes.
    Closing an already closed period changes nothing.
    """

    partner_id: Literal["*"]  # narrows the envelope's field to the reserved value
    period: Period
    program_id: Id | None = None


class TargetsSet(Envelope, kw_only=True, frozen=True):
    """Finance set the partner's target for one metric of one period of a program.

    ``value`` is in the metric's unit: minor units of the program's currency for
    ``net_sales``, units sold for ``units``, customers for ``new_customers``. A later
    ``TargetsSet`` for the same program, period and metric replaces it, until the period
    closes; after the close the ledger refuses it (``period_closed``). ``set_by`` names
    who set it, for the audit.
    """

    program_id: Id
    period: TargetPeriod
    metric: TargetMetric
    value: PositiveAmount
    set_by: Id


class AdvanceClock(Envelope, kw_only=True, frozen=True):
    """Post the time-driven work due by ``occurred_at`` for every partner: holds that ended
    and points or funds that expired, each record dated when it fell due.

    Sent with ``partner_id: "*"``. The worker sends one itself as event time passes
    (``timer_interval_s``); a scheduler may send one too, e.g. daily with wall-clock time
    when traffic is quiet. Advancing to a moment already passed changes nothing.
    """

    partner_id: Literal["*"]


class RecordPayout(Envelope, kw_only=True, frozen=True):
    """Finance paid the partner ``amount`` from its available balance; ``reference`` is the
    bank or ERP payment reference."""

    amount: PositiveAmount
    currency: CurrencyCode
    reference: Id

    def __post_init__(self) -> None:
        super().__post_init__()
        check_currency(self.currency, "currency")


class RedeemPoints(Envelope, kw_only=True, frozen=True):
    """The partner exchanged ``points`` for the catalogue item ``reward_id``."""

    points: Annotated[int, Meta(gt=0, le=10**12, description="Points spent, a whole number.")]
    reward_id: Id


class AdjustBalance(Envelope, kw_only=True, frozen=True):
    """A manual correction of a balance, up (positive) or down (negative).

    ``author`` and ``reason`` are required and must not be blank: a correction without
    them could not be audited. ``amount`` must not be zero.
    """

    asset: Asset
    amount: Amount
    author: Id
    reason: Text

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.amount == 0:
            raise ContractViolation(
                RejectCode.INVALID_VALUE, "amount", "an adjustment of 0 changes nothing"
            )


class ClaimFunds(Envelope, kw_only=True, frozen=True):
    """The partner claims reimbursement (e.g. marketing development funds); it awaits
    ``ApproveClaim`` or ``RejectClaim`` with the same ``claim_id``."""

    claim_id: Id
    amount: PositiveAmount
    currency: CurrencyCode
    submitted_by: Id
    description: Text

    def __post_init__(self) -> None:
        super().__post_init__()
        check_currency(self.currency, "currency")


class ApproveClaim(Envelope, kw_only=True, frozen=True):
    """Approve the partner's claim ``claim_id`` in full. The ``approver`` must be someone
    other than the claim's ``submitted_by``; the ledger refuses it otherwise."""

    claim_id: Id
    approver: Id


class RejectClaim(Envelope, kw_only=True, frozen=True):
    """Reject the partner's claim ``claim_id``; ``reason`` is shown to the partner."""

    claim_id: Id
    approver: Id
    reason: Text


Command = (
    ClosePeriod
    | AdvanceClock
    | RecordPayout
    | RedeemPoints
    | AdjustBalance
    | ClaimFunds
    | ApproveClaim
    | RejectClaim
    | TargetsSet
)
COMMAND_TYPES: tuple[type[Envelope], ...] = (
    ClosePeriod,
    AdvanceClock,
    RecordPayout,
    RedeemPoints,
    AdjustBalance,
    ClaimFunds,
    ApproveClaim,
    RejectClaim,
    TargetsSet,
)
# The commands that concern every partner (``partner_id`` "*"): each is applied with every
# other writer held off, see processors.intake.batch.
ALL_PARTNER_COMMANDS: tuple[type[Envelope], ...] = (ClosePeriod, AdvanceClock)
