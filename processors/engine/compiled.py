"""A program version compiled once into plain Python: assets, rates and eligibility closures.

``compile_program`` is called once per program version (the processor keeps the result);
every condition of the document becomes a small closure over the values it names, so
evaluating a rule is a few comparisons, and nothing from the document is ever evaluated.
"""

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Final, NamedTuple

from ledger import core
from processors.engine.periods import tenure_months
from processors.engine.state import PartnerStatus, Profile
from schemas.events import SCALES
from schemas.programs import (
    CategoryRate,
    ClawbackRule,
    CommissionRule,
    EarningRule,
    Eligibility,
    MdfRule,
    PointsRule,
    Program,
    RuleBase,
    Tier,
    rule_kind,
    rule_period,
)
from schemas.programs import Period as PeriodKind

# The key of a commission rate without a category (no category id can be "*").
OTHER: Final = "*"
PER_SALE_CLAWBACK_KINDS: Final = frozenset({"commission", "threshold_bonus", "new_customer", "mdf"})


class Subject(NamedTuple):
    """What eligibility conditions look at: the partner, its tier, the day, its volume."""

    profile: Profile | None
    tier: str | None
    day: dt.date
    period_volume: int
    # (count, sum of scores) of the period's surveys so far; only filled for rules whose
    # eligibility asks for an average (``CompiledRule.needs_surveys``).
    period_surveys: tuple[int, int] = (0, 0)


Predicate = Callable[[Subject], bool]


def _always(_: Subject) -> bool:
    return True


def compile_eligibility(eligibility: Eligibility | None) -> Predicate:
    """All conditions must hold; a partner without a profile or not active earns nothing."""
    checks: list[Predicate] = [
        lambda s: s.profile is not None and s.profile.status is PartnerStatus.ACTIVE
    ]
    if eligibility is not None:
        checks += _conditions(eligibility)

    def eligible(subject: Subject) -> bool:
        return all(check(subject) for check in checks)

    return eligible


def _conditions(e: Eligibility) -> list[Predicate]:
    checks: list[Predicate] = []
    if e.tenure_months_min:
        need = e.tenure_months_min
        checks.append(
            lambda s: s.profile is not None
            and tenure_months(s.profile.joined_on, s.day) >= need
        )
    if e.tiers:
        tiers = frozenset(e.tiers)
        checks.append(lambda s: s.tier in tiers)
    if e.regions:
        regions = frozenset(e.regions)
        checks.append(lambda s: s.profile is not None and s.profile.region in regions)
    if e.partner_kinds:
        kinds = frozenset(str(k) for k in e.partner_kinds)
        checks.append(lambda s: s.profile is not None and s.profile.kind in kinds)
    if e.min_period_volume:
        minimum = e.min_period_volume
        checks.append(lambda s: s.period_volume >= minimum)
    if e.min_avg_satisfaction_x100 is not None:
        checks.append(_average_at_least(e.min_avg_satisfaction_x100, e.min_surveys))
    return checks


def _average_at_least(minimum_x100: int, surveys_min: int) -> Predicate:
    # average * 100 >= minimum, compared exactly: sum * 100 >= minimum * count.
    def check(s: Subject) -> bool:
        count, total = s.period_surveys
        return count >= surveys_min and total * 100 >= minimum_x100 * count

    return check


class CompiledRule(NamedTuple):
    rule: RuleBase
    kind: str
    period: PeriodKind | None  # None for policies (points, clawback)
    asset: str | None  # the ledger asset paid, None for policies and multipliers
    eligible: Predicate
    hold_days: int
    cap: int | None
    needs_surveys: bool = False  # eligibility on the period's average satisfaction


class CompiledProgram:
    """One program version, ready for the engine. Immutable after construction."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.program_id = program.program_id
        self.version = program.version
        self.currency = core.currency(program.currency)
        self.points_asset = core.points(program.program_id)
        self.mdf_asset = core.mdf(program.currency)
        self.expense_account = core.program_expense(program.program_id)
        self.rules: tuple[CompiledRule, ...] = tuple(self._compile(r) for r in program.rules)
        self.by_id: Mapping[str, CompiledRule] = {c.rule.id: c for c in self.rules}
        self.tiers: tuple[Tier, ...] = program.tiers
        self.tier_index: Mapping[str, int] = {t.id: i for i, t in enumerate(program.tiers)}
        # The longest tier window in days (0: none), for which daily facts are kept.
        self.day_window = max((t.qualify.window_days or 0 for t in program.tiers), default=0)
        self._rates = self._rate_table(program)
        self._mdf_shares = {
            t.id: t.benefits.mdf_share_bp
            for t in program.tiers
            if t.benefits.mdf_share_bp is not None
        }
        self.points_rule: PointsRule | None = next(
            (r for r in program.rules if isinstance(r, PointsRule)), None
        )
        self.mdf_rule: MdfRule | None = next(
            (r for r in program.rules if isinstance(r, MdfRule)), None
        )
        scale = (program.satisfaction_scale.min, program.satisfaction_scale.max)
        # Surveys count only on the program's scale; a scale no event type uses counts none.
        self.scale_name: str | None = next(
            (name for name, bounds in sorted(SCALES.items()) if bounds == scale), None
        )
        clawback = next((r for r in program.rules if isinstance(r, ClawbackRule)), None)
        self.clawback_rule_id = clawback.id if clawback is not None else None
        self._clawback_days = clawback.window_days if clawback is not None else None
        self._clawback_rules = (
            frozenset(clawback.applies_to) if clawback is not None and clawback.applies_to
            else None
        )

    @property
    def key(self) -> tuple[str, int]:
        return (self.program_id, self.version)

    def effective_on(self, day: dt.date) -> bool:
        end = self.program.effective_to
        return self.program.effective_from <= day and (end is None or day <= end)

    def asset_of(self, pays: str) -> str:
        if pays == "currency":
            return self.currency
        if pays == "points":
            return self.points_asset
        return core.award(pays.removeprefix("AWARD:"))

    def _compile(self, rule: RuleBase) -> CompiledRule:
        if not isinstance(rule, EarningRule):
            return CompiledRule(rule, rule_kind(type(rule)), None, None, _always, 0, None)
        pays: str | None = getattr(rule, "pays", None)
        asset = self.mdf_asset if isinstance(rule, MdfRule) else None
        if pays is not None:
            asset = self.asset_of(pays)
        return CompiledRule(
            rule=rule,
            kind=rule_kind(type(rule)),
            period=rule_period(self.program, rule),
            asset=asset,
            eligible=compile_eligibility(rule.eligibility),
            hold_days=rule.hold_days,
            cap=rule.cap,
            needs_surveys=rule.eligibility is not None
            and rule.eligibility.min_avg_satisfaction_x100 is not None,
        )

    @staticmethod
    def _rate_table(program: Program) -> dict[tuple[str, str, str], CategoryRate]:
        """(rule, tier or "", category or OTHER) -> rate; "" is the rule's own rate."""
        table: dict[tuple[str, str, str], CategoryRate] = {}
        for rule in program.rules:
            if isinstance(rule, CommissionRule):
                for rate in rule.rates:
                    table[(rule.id, "", rate.category or OTHER)] = rate
        for tier in program.tiers:
            for o in tier.benefits.commission_overrides:
                table[(o.rule, tier.id, o.category or OTHER)] = CategoryRate(
                    category=o.category, rate_bp=o.rate_bp, per_unit=o.per_unit
                )
        return table

    def commission_rate(
        self, rule_id: str, tier: str | None, category: str
    ) -> tuple[CategoryRate, bool] | None:
        """The rate for a category at a tier, and whether it is the tier's override: the
        category's own rate, else the rule's rate without a category (the tier's first)."""
        for key in (category, OTHER):
            if tier is not None:
                override = self._rates.get((rule_id, tier, key))
                if override is not None:
                    return override, True
            base = self._rates.get((rule_id, "", key))
            if base is not None:
                return base, False
        return None

    def mdf_share(self, rule: MdfRule, tier: str | None) -> int:
        if tier is not None and tier in self._mdf_shares:
            share = self._mdf_shares[tier]
            assert share is not None
            return share
        return rule.share_bp

    def clawable(self, rule_id: str) -> bool:
        return self._clawback_rules is None or rule_id in self._clawback_rules

    def clawback_until(self, earned_at: dt.datetime) -> dt.datetime | None:
        days = self._clawback_days
        return None if days is None else earned_at + dt.timedelta(days=days)

    def entry_tier(self) -> str | None:
        return self.tiers[0].id if self.tiers else None


def compile_program(program: Program) -> CompiledProgram:
    return CompiledProgram(program)
