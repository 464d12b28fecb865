"""The parts every program document is built of: units, enums, shared structs, rule bases.

Split from ``schemas.programs`` (which re-exports every name here, so documents and code
import from there) so that the rule kinds can live in modules of their own: the kinds of
``schemas.program_goals`` (targets, growth, two-tier overrides) build on these bases.
"""

import enum
from typing import Annotated, Final, TypeAlias, TypeVar

import msgspec
from msgspec import Meta

# Bounds keep every product the engine forms (an amount times a rate or a multiplier in
# basis points) below 2**63, so results always fit PostgreSQL's bigint.
AMOUNT_MAX: Final = 10**14
BP_PER_UNIT: Final = 10_000

# Our own identifiers end up in ledger account names and deterministic record ids, where
# case or punctuation variants of one name would be a source of silent splits.
Slug = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
# Identifiers owned by upstream systems (product categories, regions, teams, courses) keep
# their own spelling, so they must match the events byte for byte.
ExternalId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$", max_length=64)]
Text = Annotated[str, Meta(min_length=1, max_length=200)]
CurrencyCode = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
# ``currency`` is the program currency; awards are their own assets, one per kind of award.
Asset = Annotated[str, Meta(pattern=r"^(currency|points|AWARD:[a-z0-9][a-z0-9_-]*)$")]

Amount = Annotated[int, Meta(ge=0, le=AMOUNT_MAX)]
PositiveAmount = Annotated[int, Meta(ge=1, le=AMOUNT_MAX)]
RateBp = Annotated[int, Meta(ge=0, le=BP_PER_UNIT)]
MultiplierBp = Annotated[int, Meta(ge=0, le=5 * BP_PER_UNIT)]
Months = Annotated[int, Meta(ge=1, le=120)]
Count = Annotated[int, Meta(ge=0, le=10_000)]
RankCount = Annotated[int, Meta(ge=1, le=100)]
ScoreX100 = Annotated[int, Meta(ge=0, le=100_000)]
HoldDays = Annotated[int, Meta(ge=0, le=365)]

_T = TypeVar("_T")
# Lists that would make their rule meaningless when empty, and bounded so that a document
# cannot make the engine loop over millions of entries.
NonEmpty: TypeAlias = Annotated[tuple[_T, ...], Meta(min_length=1, max_length=1000)]


class Period(enum.StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


class BudgetPolicy(enum.StrEnum):
    """What happens to awards once the program budget is spent."""

    STOP = "stop"  # Awards stop as soon as the budget is reached; the last one is cut to fit.
    PRORATE = "prorate"  # Period awards are scaled down at close so the period fits the budget.


class Rounding(enum.StrEnum):
    # A single value today; declared in the document so that every ledger explanation can
    # name the rounding it applied, and a future mode is a new value, not a silent change.
    HALF_EVEN = "half_even"


class PartnerKind(enum.StrEnum):
    DISTRIBUTOR = "distributor"
    RESELLER = "reseller"
    AGENT = "agent"


class Metric(enum.StrEnum):
    NET_SALES = "net_sales"  # Minor units, sales minus reversals in the period.
    UNITS = "units"  # Quantity sold minus quantity reversed.
    NEW_CUSTOMERS = "new_customers"  # Customers counted by the new_customer rule's meaning.


class RebateMode(enum.StrEnum):
    RETROACTIVE = "retroactive"  # The reached band's rate applies to the whole volume.
    MARGINAL = "marginal"  # Each band's rate applies to the volume inside that band.


class OncePer(enum.StrEnum):
    PERIOD = "period"
    PROGRAM = "program"


class NewTo(enum.StrEnum):
    MANUFACTURER = "manufacturer"  # First purchase from any partner in this program.
    PARTNER = "partner"  # First purchase from this partner.


class TieBreak(enum.StrEnum):
    REACHED_FIRST = "reached_first"  # Whoever reached the final value earlier ranks higher.
    PARTNER_ID = "partner_id"  # Ascending partner id: total, so it must come last.
    TEAM_ID = "team_id"  # Ascending team id: the last key for team competitions.


class TeamAggregate(enum.StrEnum):
    SUM = "sum"
    AVERAGE_PER_MEMBER = "average_per_member"  # Lets small teams compete with large ones.


class Split(enum.StrEnum):
    EQUAL = "equal"
    CONTRIBUTION = "contribution"  # Largest-remainder split by each member's metric.


class ClawbackBasis(enum.StrEnum):
    # A reversal takes back what the sale earned at the rates recorded when it was earned,
    # not at today's rates or tier: this is what lets a reversal cancel its sale exactly.
    ORIGINAL_RATES = "original_rates"


class Scope(enum.StrEnum):
    """Whose sales a comparing rule counts for a partner (two-tier distribution, 分销模式)."""

    OWN = "own"
    # The partner's own and those of every partner below it (its ``parent_partner_id``
    # children, their children, ...), each counted once.
    WITH_CHILDREN = "with_children"


class CompareTo(enum.StrEnum):
    """The base period a growth bonus (业绩突破) compares with."""

    SAME_PERIOD_LAST_YEAR = "same_period_last_year"
    PREVIOUS_PERIOD = "previous_period"


class RemainderRule(enum.StrEnum):
    # Floor every share, then hand the leftover units one each to the largest fractional
    # remainders, ties by ascending partner id: deterministic, and the pool is paid exactly.
    LARGEST_REMAINDER = "largest_remainder"


class _Doc(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Base of every document type: immutable, unknown keys rejected, keyword-only.

    msgspec applies ``kw_only`` to the fields a class itself defines, so every subclass
    repeats it (and ``frozen``, which type checkers otherwise read as turned off); this lets
    required and optional fields mix in the order a reader expects.
    """


# --------------------------------------------------------------------------- shared parts


class ScoreScale(_Doc, frozen=True, kw_only=True):
    """The survey scale the program counts; surveys on another scale do not count."""

    min: Annotated[int, Meta(ge=0, le=1000)] = 1
    max: Annotated[int, Meta(ge=1, le=1000)] = 5


class Eligibility(_Doc, frozen=True, kw_only=True):
    """Who may earn from a rule. Every condition must hold; an empty list means no limit."""

    tenure_months_min: Annotated[int, Meta(ge=0, le=600)] = 0
    tiers: tuple[Slug, ...] = ()
    regions: tuple[ExternalId, ...] = ()
    partner_kinds: tuple[PartnerKind, ...] = ()
    # Net sales of the partner in the rule's period (including the current sale).
    min_period_volume: Amount = 0
    # The average survey score of the rule's period so far, times 100, over at least
    # ``min_surveys`` surveys on the program's scale; fewer surveys: not eligible.
    min_avg_satisfaction_x100: ScoreX100 | None = None
    min_surveys: Annotated[int, Meta(ge=1, le=10_000)] = 1


AttainmentBp = Annotated[int, Meta(ge=0, le=100 * BP_PER_UNIT)]


class Gate(_Doc, frozen=True, kw_only=True):
    """Conditions on the partner's period that must hold at the period's close for what the
    rule earned in the period to stay; what a failed gate takes back is its own record."""

    # The period's average survey score times 100, over at least surveys_min surveys.
    avg_satisfaction_min_x100: ScoreX100 | None = None
    surveys_min: Annotated[int, Meta(ge=1, le=10_000)] = 1
    # Certifications the partner holds at the period's end (earned then or before).
    certifications_min: Count = 0
    # The period's attainment of the partner's target for attainment_metric, in bp of the
    # target (10_000 = 100 %); a partner without a target does not pass.
    attainment_min_bp: AttainmentBp | None = None
    attainment_metric: Metric = Metric.NET_SALES


class RateBand(_Doc, frozen=True, kw_only=True):
    at_least: Amount
    below: Amount | None = None  # None only on the last band: unbounded above.
    rate_bp: RateBp


class MultiplierBand(_Doc, frozen=True, kw_only=True):
    at_least_x100: ScoreX100
    below_x100: ScoreX100 | None = None
    multiplier_bp: MultiplierBp  # 10_000 leaves rewards unchanged.


class CategoryRate(_Doc, frozen=True, kw_only=True):
    """A commission for one product category: exactly one of ``rate_bp`` and ``per_unit``.
    Without ``category`` the rate applies to every category the rule does not list."""

    category: ExternalId | None = None
    rate_bp: RateBp | None = None  # Share of the line's net amount.
    per_unit: Amount | None = None  # Flat amount per unit sold.


# --------------------------------------------------------------------------------- rules


class RuleBase(_Doc, tag_field="kind", frozen=True, kw_only=True):
    id: Slug
    description: str = ""


class EarningRule(RuleBase, frozen=True, kw_only=True):
    """Fields shared by every rule that credits a partner."""

    eligibility: Eligibility | None = None
    cap: PositiveAmount | None = None  # Per partner per period, in units of the asset paid.
    hold_days: HoldDays = 0  # Pending this many days (a return window), then available.
    period: Period | None = None  # Period for caps and period awards; None: the program's.
    gate: Gate | None = None  # Checked at the period's close; failing, the period's earnings go.


