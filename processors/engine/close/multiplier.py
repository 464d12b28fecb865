"""Satisfaction multiplier: scales what other rules earned in the period, at its close.

The period's surveys on the program's scale give an average; with at least
``surveys_min`` surveys the band ``at_least_x100 <= average * 100 < below_x100`` gives the
factor (compared exactly: ``at_least_x100 * count <= score_sum * 100``). The base is what
each rule in ``applies_to`` earned in the period: its counter (per-sale rules, net of
clawbacks) plus its awards in this close (after caps, before the budget). The difference
``round(base * factor / 10000) - base`` is posted by the satisfaction rule, in the target's
asset and with its hold; a negative difference is taken back (from the target award's hold
when it has one).
"""

from ledger.core import InputValue
from processors.engine.close.awards import Award
from processors.engine.close.context import Close
from processors.engine.compiled import CompiledRule
from processors.engine.metrics import surveys
from processors.engine.money import rounded
from processors.engine.state import counter_key
from schemas.programs import SatisfactionMultiplier, SatisfactionRule


def factor_bp(m: SatisfactionMultiplier, count: int, total: int) -> int:
    if count < m.surveys_min:
        return 10_000
    for band in m.bands:
        if band.at_least_x100 * count <= total * 100 and (
            band.below_x100 is None or total * 100 < band.below_x100 * count
        ):
            return band.multiplier_bp
    return 10_000


def multipliers(close: Close, awards: list[Award]) -> list[Award]:
    out: list[Award] = []
    for cr in close.cp.rules:
        rule = cr.rule
        if not isinstance(rule, SatisfactionRule) or rule.multiplier is None:
            continue
        if close.ends(cr):
            out += _multiply(close, cr, rule.multiplier, awards)
    return out


def _multiply(close: Close, cr: CompiledRule, m: SatisfactionMultiplier,
              awards: list[Award]) -> list[Award]:
    out: list[Award] = []
    period = close.period_key(cr)
    for pid, state in close.partners(cr):
        count, total = surveys(state, close.months(cr), close.cp.scale_name)
        factor = factor_bp(m, count, total)
        if factor == 10_000:
            continue
        for target_id in m.applies_to:
            target = close.cp.by_id[target_id]
            counted = state.counters.get(counter_key(close.cp.program_id, target_id, period), 0)
            closing = sum(a.amount for a in awards
                          if a.partner_id == pid and a.rule_id == target_id)
            base = counted + closing
            if base <= 0:
                continue
            scaled, rounding = rounded(base * factor, 10_000)
            diff = scaled - base
            if diff == 0:
                continue
            inputs: dict[str, InputValue] = {
                "period": period, "target_rule": target_id, "surveys": count,
                "score_sum": total, "multiplier_bp": factor, "base": base,
                "base_counted": counted, "base_this_close": closing, "scaled": scaled,
            }
            out.append(Award(
                partner_id=pid, rule=cr, asset=target.asset or "", amount=diff,
                summary=f"Satisfaction multiplier {factor} bp on {target_id}",
                formula="round(base * multiplier_bp / 10000) - base", inputs=inputs,
                rounding=rounding, hold_days=target.hold_days, leg=f"multiplier:{target_id}",
                count_for=cr.rule.id,
            ))
    return out
