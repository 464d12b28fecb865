"""The program document: the declarative rule language of incentive programs, as msgspec types.

A program is data, never code. Every condition (eligibility, bands, thresholds, tie-breaks)
is a field with a closed set of meanings, so the engine can compile it once into plain
Python callables without evaluating any text from the document.

Units, used the same way everywhere:

- money and other asset quantities are integers: minor units of the program currency for
  ``currency``, whole points for ``points``, whole items for an ``AWARD:<id>`` asset;
  a field named ``amount``, ``cap`` or ``budget`` is in units of the asset it concerns;
- rates are integers in basis points (``_bp``; 10_000 bp = 100 %), never floats;
- average satisfaction scores are integers times one hundred (``_x100``; 4.2 -> 420);
- durations carry their unit in the name (``hold_days``, ``window_months``).

Bands are half-open, ``at_least <= value < below``, so two neighbouring bands share one
number and a value on a boundary belongs to exactly one band.

The types only say what shape a document has. What makes a well-shaped document
meaningful (ordered bands, known references, divisors that cannot be zero) is checked by
``schemas.program_checks``; loading with line-precise errors is ``schemas.program_loader``.
"""

import datetime as dt
from typing import Annotated, Final, TypeAlias

import msgspec
from msgspec import Meta

from schemas.program_goals import (
    AttainmentBand,
    GrowthBand,
    GrowthBonusRule,
    OverrideLevel,
    OverrideRule,
    TargetAttainmentRule,
)
from schemas.program_parts import (
    AMOUNT_MAX,
    BP_PER_UNIT,
    Amount,
    Asset,
    BudgetPolicy,
    CategoryRate,
    ClawbackBasis,
    CompareTo,
    Count,
    CurrencyCode,
    EarningRule,
    Eligibility,
    ExternalId,
    Gate,
    HoldDays,
    Metric,
    Months,
    MultiplierBand,
    MultiplierBp,
    NewTo,
    NonEmpty,
    OncePer,
    PartnerKind,
    Period,
    PositiveAmount,
    RankCount,
    RateBand,
    RateBp,
    RebateMode,
    RemainderRule,
    Rounding,
    RuleBase,
    Scope,
    ScoreScale,
    ScoreX100,
    Slug,
    Split,
    TeamAggregate,
    Text,
    TieBreak,
    _Doc,
)

# Everything a document is made of, importable from here (the parts and the goal kinds live
# in modules of their own to keep each one small).
__all__ = [
    "AMOUNT_MAX", "BP_PER_UNIT", "PER_SALE_KINDS", "RULE_KINDS", "RULE_TYPES", "Amount",
    "Asset", "AttainmentBand", "AwardCondition", "Benefits", "BudgetPolicy", "CatalogueItem",
    "CategoryRate", "ClawbackBasis", "ClawbackRule", "CommissionOverride", "CommissionRule",
    "CompareTo", "Count", "CurrencyCode", "EarningRule", "Eligibility", "ExternalId", "Gate",
    "GrowthBand", "GrowthBonusRule", "HoldDays", "MdfRule", "Metric", "Months",
    "MultiplierBand", "MultiplierBp", "NewCustomerRule", "NewTo", "NonCashAwardRule",
    "NonEmpty", "OncePer", "OverrideLevel", "OverrideRule", "PartnerKind", "PerScore",
    "Period", "PointsRule", "PoolShareRule", "PositiveAmount", "Program", "Qualification",
    "RankCount", "RankingRule", "RateBand", "RateBp", "RebateMode", "RemainderRule",
    "Rounding", "Rule", "RuleBase", "SatisfactionMultiplier", "SatisfactionRule",
    "ScoreScale", "ScoreX100", "Scope", "Slug", "Split", "TargetAttainmentRule",
    "TeamAggregate", "TeamCompetitionRule", "Text", "ThresholdBonusRule", "Tier",
    "TierWeight", "TieBreak", "TrainingRule", "VolumeRebateRule", "rule_kind", "rule_period",
]  # fmt: skip

# --------------------------------------------------------------------------------- tiers


class Qualification(_Doc, frozen=True, kw_only=True):
    """Criteria over a rolling window; a partner qualifies when all of them hold."""

    # The window is window_days days, or window_months calendar months (12 when neither is
    # given), ending with the day or the month of the event or period end.
    window_months: Annotated[int, Meta(ge=1, le=36)] | None = None
    window_days: Annotated[int, Meta(ge=1, le=366)] | None = None
    net_sales_min: Amount = 0
    certifications_min: Count = 0
    avg_satisfaction_min_x100: ScoreX100 | None = None
    # An average over no surveys would divide by zero, so a minimum count is structural.
    surveys_min: Annotated[int, Meta(ge=1, le=10_000)] = 1


class CommissionOverride(_Doc, frozen=True, kw_only=True):
    """A tier's own rate for one category of one commission rule (no category: for the
    rule's rate without a category)."""

    rule: Slug
    category: ExternalId | None = None
    rate_bp: RateBp | None = None
    per_unit: Amount | None = None


class Benefits(_Doc, frozen=True, kw_only=True):
    commission_overrides: tuple[CommissionOverride, ...] = ()
    credit_limit: Amount = 0  # 授信额度, in minor units of the program currency.
    mdf_share_bp: RateBp | None = None  # Replaces the mdf rule's share for this tier.
    priority_support: bool = False


class Tier(_Doc, frozen=True, kw_only=True):
    """A partner tier. Tiers are listed from the entry tier upwards."""

    id: Slug
    name: Text
    qualify: Qualification = msgspec.field(default_factory=Qualification)
    benefits: Benefits = msgspec.field(default_factory=Benefits)
    # Period ends below the criteria tolerated before a demotion; upgrades are immediate.
    grace_periods: Annotated[int, Meta(ge=0, le=12)] = 0


class CommissionRule(EarningRule, tag="commission", frozen=True, kw_only=True):
    pays: Asset
    rates: NonEmpty[CategoryRate]


class VolumeRebateRule(EarningRule, tag="volume_rebate", frozen=True, kw_only=True):
    """返利: the band is chosen by ``metric``; the rate always applies to net sales."""

    pays: Asset
    metric: Metric = Metric.NET_SALES
    mode: RebateMode
    bands: NonEmpty[RateBand]
    categories: tuple[ExternalId, ...] = ()


class ThresholdBonusRule(EarningRule, tag="threshold_bonus", frozen=True, kw_only=True):
    """达成奖: paid when the period's metric first reaches ``level``."""

    pays: Asset
    metric: Metric = Metric.NET_SALES
    level: PositiveAmount
    amount: PositiveAmount
    once_per: OncePer = OncePer.PERIOD
    categories: tuple[ExternalId, ...] = ()


class NewCustomerRule(EarningRule, tag="new_customer", frozen=True, kw_only=True):
    """Paid once per customer id over the program's life, to the partner who sold first."""

    pays: Asset
    amount: PositiveAmount
    new_to: NewTo = NewTo.MANUFACTURER
    first_order_min: Amount = 0


class RankingRule(EarningRule, tag="ranking", frozen=True, kw_only=True):
    """销售冠军: the period's top N by ``metric``; ``amounts[i]`` pays rank i + 1."""

    pays: Asset
    metric: Metric = Metric.NET_SALES
    top_n: RankCount
    amounts: NonEmpty[PositiveAmount]
    tie_break: tuple[TieBreak, ...] = (TieBreak.REACHED_FIRST, TieBreak.PARTNER_ID)
    min_value: Amount = 1  # Below this a partner is not ranked at all.
    scope: Scope = Scope.OWN


class TeamCompetitionRule(EarningRule, tag="team_competition", frozen=True, kw_only=True):
    """团队竞赛: teams (the partner's ``team``) ranked; ``prizes[i]`` goes to team i + 1."""

    pays: Asset
    metric: Metric = Metric.NET_SALES
    aggregate: TeamAggregate = TeamAggregate.SUM
    winners: RankCount
    prizes: NonEmpty[PositiveAmount]
    split: Split
    teams: tuple[ExternalId, ...] = ()  # Empty: every team competes.
    tie_break: tuple[TieBreak, ...] = (TieBreak.REACHED_FIRST, TieBreak.TEAM_ID)
    min_team_value: Amount = 1
    scope: Scope = Scope.OWN


class PerScore(_Doc, frozen=True, kw_only=True):
    good_at_least: Annotated[int, Meta(ge=0, le=1000)]
    bonus: Amount  # Per survey scoring good_at_least or more.
    bad_at_most: Annotated[int, Meta(ge=0, le=1000)]
    penalty: Amount  # 负激励: taken per survey scoring bad_at_most or less.


class SatisfactionMultiplier(_Doc, frozen=True, kw_only=True):
    """Scales the period rewards of other rules by the period's average score."""

    applies_to: NonEmpty[Slug]
    bands: NonEmpty[MultiplierBand]
    surveys_min: Annotated[int, Meta(ge=1, le=10_000)] = 1  # Fewer surveys: factor 1.


class SatisfactionRule(EarningRule, tag="satisfaction", frozen=True, kw_only=True):
    """客户满意度: per-score bonus and penalty, a multiplier, or both."""

    pays: Asset | None = None  # Required with per_score; a multiplier pays in its rules' assets.
    per_score: PerScore | None = None
    multiplier: SatisfactionMultiplier | None = None


class TrainingRule(EarningRule, tag="training", frozen=True, kw_only=True):
    """培训: paid once per course per partner; certification replaces the course amount."""

    pays: Asset
    per_course: Amount
    per_certification: Amount
    courses: tuple[ExternalId, ...] = ()  # Empty: every course counts.


class CatalogueItem(_Doc, frozen=True, kw_only=True):
    id: ExternalId
    name: Text
    cost: PositiveAmount  # Points.


class PointsRule(RuleBase, tag="points", frozen=True, kw_only=True):
    """积分兑换: the policy of the points asset; at most one per program."""

    # Points earned on day D can be redeemed up to the day before D + expiry_months.
    expiry_months: Months | None = None  # None: points never expire.
    catalogue: tuple[CatalogueItem, ...] = ()


class AwardCondition(_Doc, frozen=True, kw_only=True):
    metric: Metric = Metric.NET_SALES
    at_least: PositiveAmount


class NonCashAwardRule(EarningRule, tag="non_cash_award", frozen=True, kw_only=True):
    """Travel, gifts: an ``AWARD:<id>`` asset granted at period close when the condition holds."""

    pays: Asset
    condition: AwardCondition
    quantity: PositiveAmount = 1
    unit_cost: Amount = 0  # Minor units of the program currency, counted against the budget.


class ClawbackRule(RuleBase, tag="clawback", frozen=True, kw_only=True):
    """How reversals take back earnings; at most one per program."""

    basis: ClawbackBasis = ClawbackBasis.ORIGINAL_RATES
    window_days: Annotated[int, Meta(ge=1, le=3650)] | None = None  # None: no time limit.
    applies_to: tuple[Slug, ...] = ()  # Empty: every per-sale rule.


class MdfRule(EarningRule, tag="mdf", frozen=True, kw_only=True):
    """市场费用支持: a share of sales accrues into the partner's fund, its own asset."""

    share_bp: RateBp
    categories: tuple[ExternalId, ...] = ()
    auto_approve_max: Amount = 0  # Claims up to this are approved without finance; 0: none.
    expiry_months: Months | None = None  # Unclaimed fund expires; None: it does not.


class TierWeight(_Doc, frozen=True, kw_only=True):
    tier: Slug
    weight: Annotated[int, Meta(ge=0, le=1000)]


class PoolShareRule(EarningRule, tag="pool_share", frozen=True, kw_only=True):
    """分享销售利润: a period pool split among eligible partners by contribution."""

    pays: Asset
    pool_fixed: PositiveAmount | None = None
    pool_share_bp: RateBp | None = None  # Of all partners' net sales in the period.
    metric: Metric = Metric.NET_SALES
    categories: tuple[ExternalId, ...] = ()
    weights: tuple[TierWeight, ...] = ()  # Contribution multipliers by tier; default 1.
    min_contribution: Amount = 1
    remainder: RemainderRule = RemainderRule.LARGEST_REMAINDER


Rule: TypeAlias = (
    CommissionRule
    | VolumeRebateRule
    | ThresholdBonusRule
    | NewCustomerRule
    | RankingRule
    | TeamCompetitionRule
    | SatisfactionRule
    | TrainingRule
    | PointsRule
    | NonCashAwardRule
    | ClawbackRule
    | MdfRule
    | PoolShareRule
    | TargetAttainmentRule
    | GrowthBonusRule
    | OverrideRule
)

RULE_TYPES: Final[tuple[type[RuleBase], ...]] = (
    CommissionRule,
    VolumeRebateRule,
    ThresholdBonusRule,
    NewCustomerRule,
    RankingRule,
    TeamCompetitionRule,
    SatisfactionRule,
    TrainingRule,
    PointsRule,
    NonCashAwardRule,
    ClawbackRule,
    MdfRule,
    PoolShareRule,
    TargetAttainmentRule,
    GrowthBonusRule,
    OverrideRule,
)


def rule_kind(rule_type: type[RuleBase]) -> str:
    """The ``kind`` tag of a rule type, as written in documents."""
    tag = rule_type.__struct_config__.tag
    assert isinstance(tag, str), rule_type
    return tag


RULE_KINDS: Final[tuple[str, ...]] = tuple(rule_kind(t) for t in RULE_TYPES)
# Rules that earn on a single sale, so a reversal of that sale can take the earning back.
PER_SALE_KINDS: Final = frozenset({"commission", "threshold_bonus", "new_customer", "mdf"})


class Program(_Doc, frozen=True, kw_only=True):
    program_id: Slug
    version: Annotated[int, Meta(ge=1)]
    name: Text
    description: str = ""
    currency: CurrencyCode
    effective_from: dt.date
    effective_to: dt.date | None = None  # Inclusive; None: until a later version replaces it.
    period: Period
    rounding: Rounding = Rounding.HALF_EVEN
    budget: PositiveAmount | None = None  # Minor units of the program currency.
    on_budget_exhausted: BudgetPolicy = BudgetPolicy.STOP
    # The product categories rules may name; empty: any category, names are not checked.
    categories: Annotated[tuple[ExternalId, ...], Meta(max_length=1000)] = ()
    satisfaction_scale: ScoreScale = msgspec.field(default_factory=ScoreScale)
    tiers: tuple[Tier, ...] = ()
    rules: NonEmpty[Rule]


def rule_period(program: Program, rule: EarningRule) -> Period:
    """The period a rule counts in: its own, or else the program's."""
    return rule.period if rule.period is not None else program.period
