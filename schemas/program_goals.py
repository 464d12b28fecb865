"""Rule kinds that measure a partner against a goal or pay along the distribution chain.

- ``target_attainment``: pays by how much of the partner's own target (set by finance with
  ``TargetsSet``) the period reached, in bands of basis points of the target;
- ``growth_bonus`` (业绩突破): pays by the growth of a metric over a base period (the same
  period a year before, or the period before), with a minimum base;
- ``override`` (分销模式): pays a distributor a share of the sales of the partners below it
  in the ``parent_partner_id`` hierarchy, one rate per level.

All three settle at the close of their period. Bands are half-open like every band of the
language: ``at_least_bp <= value < below_bp``; only the last band may leave out ``below_bp``.
"""

from typing import Annotated

from msgspec import Meta

from schemas.program_parts import (
    BP_PER_UNIT,
    Amount,
    Asset,
    AttainmentBp,
    CompareTo,
    EarningRule,
    ExternalId,
    Metric,
    NonEmpty,
    PositiveAmount,
    RateBp,
    _Doc,
)

# Growth may be negative (a period below its base); -100 % is the floor (nothing sold).
GrowthBp = Annotated[int, Meta(ge=-BP_PER_UNIT, le=100 * BP_PER_UNIT)]
OVERRIDE_LEVELS_MAX = 5


class AttainmentBand(_Doc, frozen=True, kw_only=True):
    """What one band of attainment pays: a fixed ``amount``, ``rate_bp`` of the period's net
    sales, ``excess_rate_bp`` of the net sales above this band's start (the accelerator), or
    a sum of them. ``at_least_bp``/``below_bp`` are of the target: 10_000 is 100 %."""

    at_least_bp: AttainmentBp
    below_bp: AttainmentBp | None = None
    amount: Amount | None = None
    rate_bp: RateBp | None = None
    excess_rate_bp: RateBp | None = None


class TargetAttainmentRule(EarningRule, tag="target_attainment", frozen=True, kw_only=True):
    """Pays at period close by the band of ``metric`` / the partner's target for the period.

    A partner without a target for the period earns nothing from the rule (a record says
    so). The rates apply to net sales (money) whatever ``metric`` picks the band."""

    pays: Asset
    metric: Metric = Metric.NET_SALES
    bands: NonEmpty[AttainmentBand]


class GrowthBand(_Doc, frozen=True, kw_only=True):
    """What one band of growth pays: a fixed ``amount``, ``rate_bp`` of the increase of net
    sales over the base period, or both. ``at_least_bp``/``below_bp`` are growth in bp of the
    base (1_000 = +10 %)."""

    at_least_bp: GrowthBp
    below_bp: GrowthBp | None = None
    amount: Amount | None = None
    rate_bp: RateBp | None = None


class GrowthBonusRule(EarningRule, tag="growth_bonus", frozen=True, kw_only=True):
    """业绩突破: pays at period close by the band of the growth of ``metric`` over the base
    period; a base below ``base_min`` (a partner new last year) earns nothing."""

    pays: Asset
    metric: Metric = Metric.NET_SALES
    categories: tuple[ExternalId, ...] = ()
    compare_to: CompareTo
    # Growth divides by the base, so the minimum is at least 1 by its type.
    base_min: PositiveAmount
    bands: NonEmpty[GrowthBand]


class OverrideLevel(_Doc, frozen=True, kw_only=True):
    rate_bp: RateBp


class OverrideRule(EarningRule, tag="override", frozen=True, kw_only=True):
    """分销模式: at period close, ``levels[0].rate_bp`` of the net sales of each partner whose
    ``parent_partner_id`` is the earning partner, ``levels[1]`` of their children's, and so
    on. Eligibility and caps are the earning partner's; the sellers below need none."""

    pays: Asset
    levels: Annotated[
        tuple[OverrideLevel, ...], Meta(min_length=1, max_length=OVERRIDE_LEVELS_MAX)
    ]
    categories: tuple[ExternalId, ...] = ()


GOAL_RULE_TYPES = (TargetAttainmentRule, GrowthBonusRule, OverrideRule)
