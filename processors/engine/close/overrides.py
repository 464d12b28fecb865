"""Two-tier distribution (分销模式): the override a distributor earns on the sales of the
partners below it, at the close of the rule's period.

For each eligible partner and each partner below it down to ``len(levels)`` levels (see
``engine.hierarchy``), the override is ``net_sales * levels[level - 1].rate_bp / 10_000``,
rounded half-even, where ``net_sales`` is the seller's net sales of the period in the
rule's categories: its sales less its returns in the period, the same fact a volume rebate
reads. One record per seller and period (leg ``override:<seller>``), naming the seller,
its level and the path down to it; the seller's own chain shows each of its sales.

Returns claw the override back: a return lowers the seller's net sales of the period it
happens in, and when a period's returns exceed its sales (a sale of an earlier period came
back), the negative override is taken back from the distributor, from that override's
holds first, but never more than the distributor has earned on that seller so far
(``PartnerState.override_earned``).

Why at the close and not with each sale: the reseller's sale is applied by the worker that
owns the reseller's partition, while the distributor's chain may belong to another worker;
partners meet only at a period close, where every partner's state is loaded, so this is
where one partner's facts can pay another without two workers writing one chain.
"""

from collections.abc import Callable

from ledger.core import InputScalar, InputValue, Rounding
from processors.engine.close.awards import Award
from processors.engine.close.context import Close
from processors.engine.compiled import CompiledRule
from processors.engine.hierarchy import Below, below
from processors.engine.metrics import metric_value
from processors.engine.money import apply_bp
from processors.engine.state import EarnedKey, Hold, PartnerState, RuleKey, counter_key
from schemas.programs import Metric, OverrideRule


def earned_key(program_id: str, rule_id: str, seller: str) -> EarnedKey:
    return EarnedKey(f"{program_id}|{rule_id}|{seller}")


def override(close: Close, cr: CompiledRule, rule: OverrideRule) -> list[Award]:
    children = close.children
    categories = frozenset(rule.categories) or None
    months = close.months(cr)
    awards: list[Award] = []
    for pid, state in close.partners(cr):
        for seller in below(children, pid, len(rule.levels)):
            sold = close.states.get(seller.partner_id)
            if sold is None:
                continue
            net = metric_value(sold, Metric.NET_SALES, months, close.cp.currency, categories)
            award = _award(close, cr, rule, state, pid, seller, net)
            if award is not None:
                awards.append(award)
    return awards


def _award(close: Close, cr: CompiledRule, rule: OverrideRule, state: PartnerState, pid: str,
           seller: Below, net: int) -> Award | None:
    if net == 0:
        return None
    rate = rule.levels[seller.level - 1].rate_bp
    amount, exact = apply_bp(net, rate)
    rounding: Rounding | None = exact
    key = earned_key(close.cp.program_id, rule.id, seller.partner_id)
    earned = state.override_earned.get(key, 0)
    period = close.period_key(cr)
    inputs: dict[str, InputValue] = {
        "period": period, "seller": seller.partner_id, "level": seller.level,
        "path": list[InputScalar](seller.path), "net_sales": net, "rate_bp": rate,
        "categories": list[InputScalar](rule.categories),
    }
    if amount < 0:
        inputs.update(earned_before=earned, computed=amount)
        if amount < -earned:
            amount, rounding = -earned, None
        if amount == 0:
            return None
    leg = f"override:{seller.partner_id}"
    what = "on" if amount > 0 else "taken back: returns exceeded sales of"
    return Award(
        partner_id=pid, rule=cr, asset=cr.asset or "", amount=amount,
        summary=f"Override {what} {seller.partner_id} (level {seller.level}) in {period}",
        formula="net_sales * rate_bp / 10000" + ("" if amount > 0 else
                                                  ", at most what was earned on the seller"),
        inputs=inputs, rounding=rounding, hold_days=cr.hold_days, leg=leg,
        holds=_override_holds(close.cp.program_id, rule.id, leg),
        settle=_settle(key, counter_key(close.cp.program_id, rule.id, period)),
    )


def _override_holds(program_id: str, rule_id: str, leg: str) -> Callable[[Hold], bool]:
    return lambda h: h.program_id == program_id and h.rule_id == rule_id and h.leg == leg


def _settle(key: EarnedKey, counter: RuleKey) -> Callable[[PartnerState, int], None]:
    def settle(state: PartnerState, amount: int) -> None:
        state.override_earned[key] = state.override_earned.get(key, 0) + amount
        if amount < 0:  # accruals count themselves (Book.accrue)
            state.counters[counter] = state.counters.get(counter, 0) + amount

    return settle
