"""Semantic checks of a program's tiers: ordered upwards from an entry tier that asks for
nothing, criteria within the satisfaction scale, benefits that name what exists."""

from collections.abc import Sequence
from typing import Final

from schemas.program_check_parts import (
    Finding,
    Findings,
    duplicates,
    exactly_one,
    unknown_one,
)
from schemas.programs import CommissionRule, MdfRule, Program, Tier

# How a rate without a category is named in findings.
OTHER_CATEGORIES: Final = "(no category: every other category)"



def check_tiers(program: Program) -> Findings:
    found = duplicates([t.id for t in program.tiers], "$.tiers", "tier id", ".id")
    scale = program.satisfaction_scale
    for i, tier in enumerate(program.tiers):
        path = f"$.tiers[{i}]"
        avg = tier.qualify.avg_satisfaction_min_x100
        if avg is not None and not scale.min * 100 <= avg <= scale.max * 100:
            found.append(
                Finding(
                    f"{path}.qualify.avg_satisfaction_min_x100",
                    f"expected a value within the satisfaction scale "
                    f"({scale.min * 100}..{scale.max * 100}), got {avg}",
                )
            )
        found += _check_tier_order(program.tiers, i)
        found += _check_benefits(program, tier, path)
    return found


def _criteria(tier: Tier) -> dict[str, int]:
    q = tier.qualify
    avg = q.avg_satisfaction_min_x100
    return {
        "net_sales_min": q.net_sales_min,
        "certifications_min": q.certifications_min,
        "avg_satisfaction_min_x100": 0 if avg is None else avg,
    }


def _check_tier_order(tiers: Sequence[Tier], i: int) -> Findings:
    """The first tier is where partners start; each next tier asks at least as much."""
    path = f"$.tiers[{i}].qualify"
    here = _criteria(tiers[i])
    if i == 0:
        return [
            Finding(
                f"{path}.{name}",
                f"the first tier is the entry tier every partner starts in: "
                f"expected {name} 0, got {value}",
            )
            for name, value in here.items()
            if value != 0
        ]
    below = _criteria(tiers[i - 1])
    found = [
        Finding(
            f"{path}.{name}",
            f"tiers are listed from the entry tier upwards: expected {name} >= "
            f"{below[name]} (tier '{tiers[i - 1].id}'), got {here[name]}",
        )
        for name in here
        if here[name] < below[name]
    ]
    if not found and here == below:
        found.append(
            Finding(
                path,
                f"asks exactly what tier '{tiers[i - 1].id}' asks: expected at least one "
                f"criterion above it",
            )
        )
    return found


def _check_benefits(program: Program, tier: Tier, path: str) -> Findings:
    found: Findings = []
    rules = {r.id: r for r in program.rules}
    keys = [(o.rule, o.category) for o in tier.benefits.commission_overrides]
    found += duplicates(keys, f"{path}.benefits.commission_overrides", "override of")
    for j, override in enumerate(tier.benefits.commission_overrides):
        here = f"{path}.benefits.commission_overrides[{j}]"
        found += exactly_one(here, ("rate_bp", "per_unit"), (override.rate_bp, override.per_unit))
        rule = rules.get(override.rule)
        if not isinstance(rule, CommissionRule):
            commissions = [r.id for r in program.rules if isinstance(r, CommissionRule)]
            found += unknown_one(override.rule, commissions, f"{here}.rule", "commission rule")
            continue
        base = {r.category: r for r in rule.rates}.get(override.category)
        if base is None:
            found += unknown_one(
                override.category or OTHER_CATEGORIES,
                base_categories(rule),
                f"{here}.category",
                f"category of rule '{rule.id}'",
            )
        elif (base.rate_bp is None) != (override.rate_bp is None):
            unit = "rate_bp" if base.rate_bp is not None else "per_unit"
            found.append(
                Finding(here, f"expected {unit}, like rule '{rule.id}' for '{base.category}'")
            )
    if tier.benefits.mdf_share_bp is not None and not any(
        isinstance(r, MdfRule) for r in program.rules
    ):
        found.append(
            Finding(
                f"{path}.benefits.mdf_share_bp",
                "the program has no mdf rule for this share to replace: "
                "expected a rule of kind mdf",
            )
        )
    return found


def base_categories(rule: CommissionRule) -> list[str]:
    return [r.category or OTHER_CATEGORIES for r in rule.rates]


