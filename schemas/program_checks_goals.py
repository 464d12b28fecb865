"""Semantic checks of the goal kinds (target attainment, growth, overrides), of gates, of
satisfaction conditions and of day windows: the parts of the language that measure a
partner against a goal."""

from collections.abc import Sequence

from schemas.program_check_parts import (
    Finding,
    Findings,
    check_bands,
)
from schemas.programs import (
    AttainmentBand,
    EarningRule,
    GrowthBand,
    GrowthBonusRule,
    Metric,
    OverrideRule,
    Program,
    RuleBase,
    TargetAttainmentRule,
)


def check_goals(program: Program) -> Findings:
    """Findings of the goal kinds, gates, satisfaction conditions and tier windows."""
    found: Findings = []
    for i, tier in enumerate(program.tiers):
        q = tier.qualify
        if q.window_days is not None and q.window_months is not None:
            found.append(
                Finding(
                    f"$.tiers[{i}].qualify.window_days",
                    f"a window is in days or in months: expected window_days or "
                    f"window_months, got both ({q.window_days} days, {q.window_months} months)",
                )
            )
    for i, rule in enumerate(program.rules):
        found += _check_rule(program, rule, f"$.rules[{i}]")
    return found


def _check_rule(program: Program, rule: RuleBase, path: str) -> Findings:
    found: Findings = []
    if isinstance(rule, EarningRule):
        if rule.eligibility is not None:
            found += _score(program, rule.eligibility.min_avg_satisfaction_x100,
                            f"{path}.eligibility.min_avg_satisfaction_x100")
        if rule.gate is not None:
            found += _score(program, rule.gate.avg_satisfaction_min_x100,
                            f"{path}.gate.avg_satisfaction_min_x100")
            if rule.gate == type(rule.gate)():
                found.append(Finding(f"{path}.gate", "a gate without conditions lets everything "
                                     "through: expected at least one condition"))
    if isinstance(rule, TargetAttainmentRule):
        found += _check_attainment(rule, path)
    elif isinstance(rule, GrowthBonusRule):
        found += _check_growth(rule, path)
    elif isinstance(rule, OverrideRule):
        # Categories are checked with every rule's (schemas.program_checks).
        if all(level.rate_bp == 0 for level in rule.levels):
            found.append(Finding(f"{path}.levels", "pays nothing: expected a rate_bp above 0"))
    return found


def _score(program: Program, value: int | None, path: str) -> Findings:
    scale = program.satisfaction_scale
    if value is None or scale.min * 100 <= value <= scale.max * 100:
        return []
    return [Finding(path, f"expected a value within the satisfaction scale "
                          f"({scale.min * 100}..{scale.max * 100}), got {value}")]


def _pays_something(bands: Sequence[AttainmentBand | GrowthBand], path: str,
                    fields: tuple[str, ...]) -> Findings:
    return [
        Finding(f"{path}[{j}]", f"the band pays nothing: expected at least one of "
                                f"{', '.join(fields)}")
        for j, band in enumerate(bands)
        if all(getattr(band, name) is None for name in fields)
    ]


def _check_attainment(rule: TargetAttainmentRule, path: str) -> Findings:
    here = f"{path}.bands"
    found = check_bands([(b.at_least_bp, b.below_bp) for b in rule.bands], here,
                        "at_least_bp", "below_bp")
    found += _pays_something(rule.bands, here, ("amount", "rate_bp", "excess_rate_bp"))
    if rule.metric != Metric.NET_SALES:
        found += [
            Finding(f"{here}[{j}].excess_rate_bp",
                    f"the excess is the money above the band's start, so the metric must be "
                    f"money: expected metric net_sales, got {rule.metric}")
            for j, band in enumerate(rule.bands)
            if band.excess_rate_bp is not None
        ]
    return found


def _check_growth(rule: GrowthBonusRule, path: str) -> Findings:
    here = f"{path}.bands"
    found = check_bands([(b.at_least_bp, b.below_bp) for b in rule.bands], here,
                        "at_least_bp", "below_bp")
    found += _pays_something(rule.bands, here, ("amount", "rate_bp"))
    return found
