"""Semantic checks of a program document that msgspec's types cannot express.

A document that decodes is well shaped; these checks make sure it also means one thing:
bands ordered and contiguous, references to tiers, categories and rules that exist, no
divisor the engine forms that could be zero, dates that fit the periods. Each finding
carries the path of the bad value (the same ``$.rules[2].bands[1].at_least`` form msgspec
uses), so the loader can point at its line, and says what was expected and what came.

The checks are pure and collect every finding instead of stopping at the first, so one
run of ``programs validate`` lists everything an author has to fix.
"""

import datetime as dt
from collections.abc import Sequence
from typing import Final

from schemas.money import EXPONENTS
from schemas.program_check_parts import Finding, Findings, check_bands
from schemas.program_check_parts import duplicates as _duplicates
from schemas.program_check_parts import exactly_one as _exactly_one
from schemas.program_check_parts import known_categories as _known_categories
from schemas.program_check_parts import known_category as _known_category
from schemas.program_check_parts import non_increasing as _non_increasing
from schemas.program_check_parts import unknown as _unknown
from schemas.program_check_parts import unknown_one as _unknown_one
from schemas.program_checks_goals import check_goals
from schemas.program_checks_tiers import base_categories, check_tiers
from schemas.programs import (
    PER_SALE_KINDS,
    BudgetPolicy,
    ClawbackRule,
    CommissionRule,
    EarningRule,
    Metric,
    PointsRule,
    PoolShareRule,
    Program,
    RankingRule,
    RateBand,
    RebateMode,
    RuleBase,
    SatisfactionRule,
    Split,
    TeamCompetitionRule,
    TieBreak,
    TrainingRule,
    VolumeRebateRule,
    rule_kind,
    rule_period,
)
from schemas.programs import Period as P

_MONTHS_PER: Final = {P.MONTH: 1, P.QUARTER: 3, P.YEAR: 12}
# Awards are counted items, so a rate or a split of one makes no sense; only rules that
# hand out whole prizes may pay them.
_AWARD_KINDS: Final = frozenset({"ranking", "team_competition", "non_cash_award"})
_SINGLETON_KINDS: Final = ("points", "clawback", "mdf")


def check_program(program: Program) -> Findings:
    """Every semantic problem of ``program``; empty when it is sound. The loader sorts them
    by position, so the order here is only the order of the checks."""
    found: Findings = []
    found += _check_dates(program)
    if program.budget is None and program.on_budget_exhausted == BudgetPolicy.PRORATE:
        found.append(
            Finding(
                "$.on_budget_exhausted",
                "prorate needs a budget to prorate against: expected a budget, "
                "or on_budget_exhausted: stop",
            )
        )
    if program.currency not in EXPONENTS:
        found.append(
            Finding(
                "$.currency",
                f"unknown currency '{program.currency}': expected an ISO 4217 code such as EUR",
            )
        )
    found += _duplicates(program.categories, "$.categories", "category")
    scale = program.satisfaction_scale
    if scale.max <= scale.min:
        found.append(
            Finding(
                "$.satisfaction_scale.max", f"expected more than min ({scale.min}), got {scale.max}"
            )
        )
    found += check_tiers(program)
    found += check_goals(program)
    found += _check_rules(program)
    return found


# -------------------------------------------------------------------------------- dates


def _is_period_start(day: dt.date, period: P) -> bool:
    return day.day == 1 and (day.month - 1) % _MONTHS_PER[period] == 0


def _check_dates(program: Program) -> Findings:
    # Period awards are computed per whole period, so a version boundary inside a period
    # would let two versions both claim it; dates must fall on the coarsest period in use.
    periods = [program.period] + [
        rule_period(program, r) for r in program.rules if isinstance(r, EarningRule)
    ]
    coarsest = max(periods, key=lambda p: _MONTHS_PER[p])
    found: Findings = []
    start, end = program.effective_from, program.effective_to
    if not _is_period_start(start, coarsest):
        found.append(
            Finding(
                "$.effective_from",
                f"expected the first day of a {coarsest} (the longest period in use), got {start}",
            )
        )
    if end is None:
        return found
    if end < start:
        found.append(
            Finding(
                "$.effective_to",
                f"effective_to is before effective_from: expected {start} or later, got {end}",
            )
        )
    elif not _is_period_start(end + dt.timedelta(days=1), coarsest):
        found.append(
            Finding(
                "$.effective_to",
                f"expected the last day of a {coarsest} (the longest period in use), got {end}",
            )
        )
    return found


# -------------------------------------------------------------------------------- rules


def _check_rules(program: Program) -> Findings:
    found = _duplicates([r.id for r in program.rules], "$.rules", "rule id", ".id")
    for kind in _SINGLETON_KINDS:
        same = [i for i, r in enumerate(program.rules) if rule_kind(type(r)) == kind]
        found += [
            Finding(
                f"$.rules[{i}].kind",
                f"expected at most one rule of kind {kind}, first at $.rules[{same[0]}]",
            )
            for i in same[1:]
        ]
    has_points = any(isinstance(r, PointsRule) for r in program.rules)
    for i, rule in enumerate(program.rules):
        path = f"$.rules[{i}]"
        if isinstance(rule, EarningRule):
            found += _check_earning(program, rule, path, has_points)
        found += _check_kind(program, rule, path)
    return found


def _check_earning(program: Program, rule: EarningRule, path: str, has_points: bool) -> Findings:
    found: Findings = []
    eligibility = rule.eligibility
    if eligibility is not None:
        here = f"{path}.eligibility"
        found += _unknown(eligibility.tiers, [t.id for t in program.tiers], f"{here}.tiers", "tier")
        found += _duplicates(eligibility.tiers, f"{here}.tiers", "tier")
        found += _duplicates(eligibility.regions, f"{here}.regions", "region")
        found += _duplicates(eligibility.partner_kinds, f"{here}.partner_kinds", "partner kind")
    categories = getattr(rule, "categories", ())
    found += _known_categories(categories, program, f"{path}.categories")
    found += _duplicates(categories, f"{path}.categories", "category")
    pays: str | None = getattr(rule, "pays", None)
    kind = rule_kind(type(rule))
    if pays is None:
        return found
    if pays.startswith("AWARD:") and kind not in _AWARD_KINDS:
        found.append(
            Finding(
                f"{path}.pays",
                f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} rule pays amounts that are "
                f"computed, not whole items: "
                f"expected currency or points, got {pays}",
            )
        )
    elif not pays.startswith("AWARD:") and kind == "non_cash_award":
        found.append(
            Finding(f"{path}.pays", f"expected an award asset such as AWARD:trip, got {pays}")
        )
    elif pays == "points" and not has_points:
        found.append(
            Finding(
                f"{path}.pays",
                "pays points, but the program has no points rule: expected a rule of kind "
                "points (expiry and redemption)",
            )
        )
    return found


def _check_commission(program: Program, rule: CommissionRule, path: str) -> Findings:
    found = _duplicates(base_categories(rule), f"{path}.rates", "category", ".category")
    for j, rate in enumerate(rule.rates):
        here = f"{path}.rates[{j}]"
        found += _exactly_one(here, ("rate_bp", "per_unit"), (rate.rate_bp, rate.per_unit))
        if rate.category is not None:
            found += _known_category(rate.category, program, f"{here}.category")
    return found


def _rate_bands(bands: Sequence[RateBand]) -> list[tuple[int, int | None]]:
    return [(b.at_least, b.below) for b in bands]


def _check_volume_rebate(program: Program, rule: VolumeRebateRule, path: str) -> Findings:
    found = check_bands(_rate_bands(rule.bands), f"{path}.bands", "at_least", "below")
    if rule.metric == Metric.NEW_CUSTOMERS:
        found.append(Finding(f"{path}.metric", "expected net_sales or units, got new_customers"))
    elif rule.mode == RebateMode.MARGINAL and rule.metric != Metric.NET_SALES:
        found.append(
            Finding(
                f"{path}.metric",
                f"a marginal rebate applies each band's rate to the sales inside that band, "
                f"so its bands must be in money: expected net_sales, got {rule.metric}",
            )
        )
    return found


def _check_tie_break(
    tie_break: Sequence[TieBreak], path: str, last: TieBreak, other: TieBreak
) -> Findings:
    found = _duplicates(tie_break, path, "tie-break")
    if not tie_break or tie_break[-1] != last:
        found.append(
            Finding(
                path,
                f"ties must end in a total order: expected {last} as the last tie-break, "
                f"got {', '.join(tie_break) or 'none'}",
            )
        )
    found += [
        Finding(f"{path}[{i}]", f"expected reached_first or {last}, got {other}")
        for i, key in enumerate(tie_break)
        if key == other
    ]
    return found


def _check_ranking(program: Program, rule: RankingRule, path: str) -> Findings:
    found: Findings = []
    if len(rule.amounts) != rule.top_n:
        found.append(
            Finding(
                f"{path}.amounts",
                f"expected {rule.top_n} amounts (one per rank, top_n: {rule.top_n}), "
                f"got {len(rule.amounts)}",
            )
        )
    found += _non_increasing(rule.amounts, f"{path}.amounts")
    found += _check_tie_break(
        rule.tie_break, f"{path}.tie_break", TieBreak.PARTNER_ID, TieBreak.TEAM_ID
    )
    return found


def _check_team(program: Program, rule: TeamCompetitionRule, path: str) -> Findings:
    found: Findings = []
    if len(rule.prizes) != rule.winners:
        found.append(
            Finding(
                f"{path}.prizes",
                f"expected {rule.winners} prizes (one per winning team, winners: "
                f"{rule.winners}), got {len(rule.prizes)}",
            )
        )
    if rule.teams and rule.winners > len(rule.teams):
        found.append(
            Finding(
                f"{path}.winners",
                f"expected at most {len(rule.teams)} (the teams listed), got {rule.winners}",
            )
        )
    found += _non_increasing(rule.prizes, f"{path}.prizes")
    found += _duplicates(rule.teams, f"{path}.teams", "team")
    found += _check_tie_break(
        rule.tie_break, f"{path}.tie_break", TieBreak.TEAM_ID, TieBreak.PARTNER_ID
    )
    if rule.split == Split.CONTRIBUTION and rule.min_team_value == 0:
        found.append(
            Finding(
                f"{path}.min_team_value",
                "split by contribution divides by the team's total, which could be zero: "
                "expected min_team_value >= 1, got 0",
            )
        )
    return found


def _check_satisfaction(program: Program, rule: SatisfactionRule, path: str) -> Findings:
    found: Findings = []
    if rule.per_score is None and rule.multiplier is None:
        found.append(Finding(path, "expected per_score, multiplier or both, got neither"))
    if rule.per_score is not None:
        found += _check_per_score(program, rule, path)
    if rule.multiplier is not None:
        here = f"{path}.multiplier"
        bands = [(b.at_least_x100, b.below_x100) for b in rule.multiplier.bands]
        found += check_bands(bands, f"{here}.bands", "at_least_x100", "below_x100")
        found += _duplicates(rule.multiplier.applies_to, f"{here}.applies_to", "rule")
        for j, target in enumerate(rule.multiplier.applies_to):
            found += _check_multiplied(program, rule, target, f"{here}.applies_to[{j}]")
    return found


def _check_per_score(program: Program, rule: SatisfactionRule, path: str) -> Findings:
    assert rule.per_score is not None
    found: Findings = []
    if rule.pays is None:
        found.append(
            Finding(f"{path}.pays", "per_score pays bonuses: expected pays (currency or points)")
        )
    scale, score = program.satisfaction_scale, rule.per_score
    for name, value in (("good_at_least", score.good_at_least), ("bad_at_most", score.bad_at_most)):
        if not scale.min <= value <= scale.max:
            found.append(
                Finding(
                    f"{path}.per_score.{name}",
                    f"expected a score within the satisfaction scale ({scale.min}..{scale.max}), "
                    f"got {value}",
                )
            )
    if score.bad_at_most >= score.good_at_least:
        found.append(
            Finding(
                f"{path}.per_score.bad_at_most",
                f"a score cannot be both good and bad: expected less than good_at_least "
                f"({score.good_at_least}), got {score.bad_at_most}",
            )
        )
    return found


def _check_multiplied(program: Program, rule: SatisfactionRule, target: str, path: str) -> Findings:
    rules = {r.id: r for r in program.rules}
    other = rules.get(target)
    multipliable = [
        r.id
        for r in program.rules
        if r is not rule
        and isinstance(r, EarningRule)
        and getattr(r, "pays", None) in ("currency", "points")
    ]
    if other is None or other.id not in multipliable:
        return _unknown_one(target, multipliable, path, "rule paying currency or points")
    assert isinstance(other, EarningRule)
    mine, theirs = rule_period(program, rule), rule_period(program, other)
    if mine != theirs:
        return [
            Finding(
                path,
                f"the multiplier uses the average of each {mine}, but rule '{target}' counts "
                f"by {theirs}: expected a rule with period {mine}",
            )
        ]
    return []


def _check_training(program: Program, rule: TrainingRule, path: str) -> Findings:
    found = _duplicates(rule.courses, f"{path}.courses", "course")
    if rule.per_course == 0 and rule.per_certification == 0:
        found.append(
            Finding(path, "pays nothing: expected per_course or per_certification above 0")
        )
    return found


def _check_points(program: Program, rule: PointsRule, path: str) -> Findings:
    return _duplicates([c.id for c in rule.catalogue], f"{path}.catalogue", "item id", ".id")


def _check_clawback(program: Program, rule: ClawbackRule, path: str) -> Findings:
    per_sale = [r.id for r in program.rules if rule_kind(type(r)) in PER_SALE_KINDS]
    found = _duplicates(rule.applies_to, f"{path}.applies_to", "rule")
    found += _unknown(rule.applies_to, per_sale, f"{path}.applies_to", "per-sale rule")
    return found


def _check_pool(program: Program, rule: PoolShareRule, path: str) -> Findings:
    found = _exactly_one(
        path, ("pool_fixed", "pool_share_bp"), (rule.pool_fixed, rule.pool_share_bp)
    )
    tiers = [w.tier for w in rule.weights]
    found += _duplicates(tiers, f"{path}.weights", "tier", ".tier")
    for j, weight in enumerate(rule.weights):
        here = f"{path}.weights[{j}]"
        found += _unknown_one(weight.tier, [t.id for t in program.tiers], f"{here}.tier", "tier")
        if weight.weight == 0:
            found.append(
                Finding(
                    f"{here}.weight",
                    "a zero weight could make the sum of weighted contributions zero, the "
                    "divisor of the split: expected weight >= 1 (exclude a tier with "
                    "eligibility.tiers instead), got 0",
                )
            )
    if rule.min_contribution == 0:
        found.append(
            Finding(
                f"{path}.min_contribution",
                "the split divides by the total contribution, which could be zero: "
                "expected min_contribution >= 1, got 0",
            )
        )
    return found


def _check_kind(program: Program, rule: RuleBase, path: str) -> Findings:
    """The checks particular to one rule kind; kinds without any return nothing."""
    match rule:
        case CommissionRule():
            return _check_commission(program, rule, path)
        case VolumeRebateRule():
            return _check_volume_rebate(program, rule, path)
        case RankingRule():
            return _check_ranking(program, rule, path)
        case TeamCompetitionRule():
            return _check_team(program, rule, path)
        case SatisfactionRule():
            return _check_satisfaction(program, rule, path)
        case TrainingRule():
            return _check_training(program, rule, path)
        case PointsRule():
            return _check_points(program, rule, path)
        case ClawbackRule():
            return _check_clawback(program, rule, path)
        case PoolShareRule():
            return _check_pool(program, rule, path)
        case _:
            return []
