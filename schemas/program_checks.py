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
import difflib
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

from schemas.money import EXPONENTS
from schemas.programs import (
    PER_SALE_KINDS,
    BudgetPolicy,
    ClawbackRule,
    CommissionRule,
    EarningRule,
    MdfRule,
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
    Tier,
    TrainingRule,
    VolumeRebateRule,
    rule_kind,
    rule_period,
)
from schemas.programs import Period as P


class Finding(NamedTuple):
    path: str
    message: str


Findings = list[Finding]

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
    found += _check_tiers(program)
    found += _check_rules(program)
    return found


# ------------------------------------------------------------------------------ helpers


def _duplicates(values: Sequence[object], path: str, what: str, field: str = "") -> Findings:
    """Repeated values in a list; ``field`` names the key inside each item (``.id``)."""
    seen: dict[object, int] = {}
    found: Findings = []
    for i, value in enumerate(values):
        shown = "(" + ", ".join(map(str, value)) + ")" if isinstance(value, tuple) else value
        if value in seen:
            found.append(
                Finding(
                    f"{path}[{i}]{field}",
                    f"duplicate {what} '{shown}': expected each once, "
                    f"first at {path}[{seen[value]}]{field}",
                )
            )
        else:
            seen[value] = i
    return found


def _unknown_one(value: str, known: Iterable[str], path: str, what: str) -> Findings:
    known_sorted = sorted(set(known))
    if value in known_sorted:
        return []
    if not known_sorted:
        return [Finding(path, f"unknown {what} '{value}': the program declares none")]
    close = difflib.get_close_matches(value, known_sorted, n=1, cutoff=0.7)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    choices = ", ".join(known_sorted)
    return [Finding(path, f"unknown {what} '{value}': expected one of: {choices}{hint}")]


def _unknown(values: Sequence[str], known: Iterable[str], path: str, what: str) -> Findings:
    known_set = frozenset(known)
    found: Findings = []
    for i, value in enumerate(values):
        found += _unknown_one(value, known_set, f"{path}[{i}]", what)
    return found


def _exactly_one(path: str, names: tuple[str, str], values: tuple[object, object]) -> Findings:
    given = [n for n, v in zip(names, values, strict=True) if v is not None]
    if len(given) == 1:
        return []
    got = "both" if given else "neither"
    return [Finding(path, f"expected exactly one of {names[0]} and {names[1]}, got {got}")]


def _non_increasing(amounts: Sequence[int], path: str) -> Findings:
    return [
        Finding(
            f"{path}[{i}]",
            f"a lower rank pays more than the rank above: expected at most "
            f"{amounts[i - 1]} ({path.rsplit('.', 1)[-1]}[{i - 1}]), got {amounts[i]}",
        )
        for i in range(1, len(amounts))
        if amounts[i] > amounts[i - 1]
    ]


def check_bands(
    bands: Sequence[tuple[int, int | None]], path: str, low: str, high: str
) -> Findings:
    """Bands must be ascending, non-empty, contiguous, and open-ended only at the end.

    Contiguity is required, not only the absence of overlap: a gap would leave volumes that
    belong to no band, and a marginal rebate would have no rate for them.
    """
    found: Findings = []
    for i, (at_least, below) in enumerate(bands):
        here = f"{path}[{i}]"
        if below is not None and below <= at_least:
            found.append(
                Finding(
                    f"{here}.{high}",
                    f"empty band: expected {high} > {low} ({at_least}), got {below}",
                )
            )
        if below is None and i < len(bands) - 1:
            found.append(
                Finding(f"{here}.{high}", f"only the last band may be open-ended: expected {high}")
            )
        if i == 0:
            continue
        prev_at_least, prev_below = bands[i - 1]
        if at_least < prev_at_least:
            found.append(
                Finding(
                    f"{here}.{low}",
                    f"bands out of order: expected {low} >= {prev_at_least} "
                    f"({path.rsplit('.', 1)[-1]}[{i - 1}].{low}), got {at_least}",
                )
            )
        elif prev_below is not None and at_least != prev_below:
            trouble = "overlaps" if at_least < prev_below else "leaves a gap after"
            found.append(
                Finding(
                    f"{here}.{low}",
                    f"{trouble} the previous band: expected {low} == {prev_below} "
                    f"({path.rsplit('.', 1)[-1]}[{i - 1}].{high}), got {at_least}",
                )
            )
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


# -------------------------------------------------------------------------------- tiers


def _check_tiers(program: Program) -> Findings:
    found = _duplicates([t.id for t in program.tiers], "$.tiers", "tier id", ".id")
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
    found += _duplicates(keys, f"{path}.benefits.commission_overrides", "override of")
    for j, override in enumerate(tier.benefits.commission_overrides):
        here = f"{path}.benefits.commission_overrides[{j}]"
        found += _exactly_one(here, ("rate_bp", "per_unit"), (override.rate_bp, override.per_unit))
        rule = rules.get(override.rule)
        if not isinstance(rule, CommissionRule):
            commissions = [r.id for r in program.rules if isinstance(r, CommissionRule)]
            found += _unknown_one(override.rule, commissions, f"{here}.rule", "commission rule")
            continue
        base = {r.category: r for r in rule.rates}.get(override.category)
        if base is None:
            found += _unknown_one(
                override.category,
                _base_categories(rule),
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


def _base_categories(rule: CommissionRule) -> list[str]:
    return [r.category for r in rule.rates]


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
    found += _unknown(categories, program.categories, f"{path}.categories", "category")
    found += _duplicates(categories, f"{path}.categories", "category")
    pays: str | None = getattr(rule, "pays", None)
    kind = rule_kind(type(rule))
    if pays is None:
        return found
    if pays.startswith("AWARD:") and kind not in _AWARD_KINDS:
        found.append(
            Finding(
                f"{path}.pays",
                f"a {kind} rule pays amounts that are computed, not whole items: "
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
    found = _duplicates(_base_categories(rule), f"{path}.rates", "category", ".category")
    for j, rate in enumerate(rule.rates):
        here = f"{path}.rates[{j}]"
        found += _exactly_one(here, ("rate_bp", "per_unit"), (rate.rate_bp, rate.per_unit))
        found += _unknown_one(rate.category, program.categories, f"{here}.category", "category")
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
