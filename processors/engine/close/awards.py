"""Period awards before they become drafts: caps, the budget at close, ordering helpers.

Every period rule first computes ``Award``s (partner, amount, explanation inputs); caps are
applied per partner, then the budget over all awards of the close together:

- ``stop``: awards are paid in a fixed order (rule order in the document, then partner id)
  until the budget is reached; the award that reaches it is cut to fit, later ones get
  nothing. A non-cash award is granted whole or not at all.
- ``prorate``: non-cash awards are granted first, whole, while their cost fits; cash awards
  are then scaled down together so they use exactly what is left, split by largest
  remainder (ties by partner id and rule), the factor recorded in each explanation.
"""

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from ledger.core import InputValue, Rounding
from processors.engine.compiled import CompiledProgram, CompiledRule
from processors.engine.money import exact_text, largest_remainder
from processors.engine.state import Hold, PartnerState, counter_key
from schemas.programs import BudgetPolicy, TieBreak


@dataclass
class Award:
    partner_id: str
    rule: CompiledRule
    asset: str
    amount: int
    summary: str
    formula: str
    inputs: dict[str, InputValue]
    rounding: Rounding | None = None
    hold_days: int = 0
    leg: str = "award"
    rule_id: str = ""  # the rule recorded (a multiplier records its own rule)
    unit_cost: int = 0  # non-cash awards: program currency per item, counted in the budget
    count_for: str = ""  # the rule whose period counter the amount adds to
    extra: dict[str, InputValue] = field(default_factory=dict)
    # A note moves nothing: a record that says why nothing was paid (no target, withheld).
    note: bool = False
    # A negative amount is taken from the holds this picks first (else the target's hold).
    holds: Callable[[Hold], bool] | None = None
    # Called with the partner's state and the final amount when the award is posted.
    settle: Callable[[PartnerState, int], None] | None = None

    def __post_init__(self) -> None:
        self.rule_id = self.rule_id or self.rule.rule.id
        self.count_for = self.count_for or self.rule.rule.id

    @property
    def budget_cost(self) -> int:
        return self.amount * self.unit_cost


def cap(award: Award, state: PartnerState, cp: CompiledProgram, period: str,
        this_close: int = 0) -> None:
    """Cut ``award`` to what the rule's cap leaves: the period's counter, plus what earlier
    awards of the same rule and partner in this close take (``this_close``)."""
    limit = award.rule.cap
    if limit is None:
        return
    used = state.counters.get(counter_key(cp.program_id, award.count_for, period), 0)
    used += this_close
    room = max(limit - used, 0)
    if award.amount > room:
        award.inputs.update(cap=limit, cap_used_before=used, cut_by_cap=award.amount - room)
        award.amount = room


def fit_budget(cp: CompiledProgram, awards: Sequence[Award], spent: int) -> None:
    """Cut ``awards`` (in place) so that the close keeps within the program budget."""
    budget = cp.program.budget
    if budget is None:
        return
    left = max(budget - spent, 0)
    if cp.program.on_budget_exhausted is BudgetPolicy.STOP:
        for a in awards:
            left = _stop(cp, a, left)
        return
    for a in awards:
        if a.unit_cost and a.amount > 0:
            if a.budget_cost <= left:
                left -= a.budget_cost
            else:
                a.inputs.update(budget_left=left, cut_by_budget=a.amount)
                a.amount = 0
    cash = [a for a in awards if a.asset == cp.currency and a.amount > 0]
    total = sum(a.amount for a in cash)
    if total <= left:
        return
    shares = largest_remainder([a.amount for a in cash], left,
                               [f"{a.partner_id}|{a.rule_id}|{a.leg}" for a in cash])
    for a, share in zip(cash, shares, strict=True):
        a.inputs.update(prorated_from=a.amount, prorate_factor=exact_text(left, total),
                        budget_left=left, cash_awards_total=total)
        a.amount = share


def _stop(cp: CompiledProgram, a: Award, left: int) -> int:
    if a.amount <= 0:
        return left
    if a.unit_cost:
        if a.budget_cost <= left:
            return left - a.budget_cost
        a.inputs.update(budget_left=left, cut_by_budget=a.amount)
        a.amount = 0
        return left
    if a.asset != cp.currency:
        return left
    if a.amount > left:
        a.inputs.update(budget_left=left, cut_by_budget=a.amount - left)
        a.amount = left
    return left - a.amount


MAX_TIME = dt.datetime.max.replace(tzinfo=dt.UTC)


def order_key(value: int | Fraction, reached_at: dt.datetime | None, ident: str,
              tie_break: Sequence[TieBreak]) -> tuple[object, ...]:
    """Sort key: highest value first, then the tie-breaks in the order the rule lists them.
    ``reached_first``: the earlier last change of the period ranks higher."""
    key: list[object] = [-value]
    for tb in tie_break:
        key.append(reached_at or MAX_TIME if tb is TieBreak.REACHED_FIRST else ident)
    return tuple(key)
