"""Gates: conditions a rule's earnings of a period must meet at the period's close.

A rule with ``gate`` keeps what it earned in a period only if, at the close, the partner's
period meets every condition of the gate:

- ``avg_satisfaction_min_x100``: at least ``surveys_min`` surveys on the program's scale in
  the period, averaging at least the minimum (compared exactly: ``sum * 100 >= minimum *
  count``);
- ``certifications_min``: certifications held at the period's end (earned then or before);
- ``attainment_min_bp``: the period's ``attainment_metric`` reached that share of the
  partner's target for the period (``value * 10_000 >= attainment_min_bp * target``); no
  target, no pass.

When the gate fails, what the rule's per-event payments earned in the period (its counter,
net of clawbacks) is taken back in one record of its own (leg ``gate``), from the rule's
holds of that period first, and the period is marked (``PartnerState.gated``): a later
reversal of those sales takes nothing more, and a late event of the period earns nothing.
The rule's own period awards of this close are withheld: each becomes a note saying what
it would have paid and why not. Satisfaction multipliers see what is left.
"""

from collections.abc import Callable

from ledger.core import InputScalar, InputValue
from processors.engine.close.awards import Award
from processors.engine.close.context import Close
from processors.engine.compiled import CompiledRule
from processors.engine.metrics import metric_value, surveys
from processors.engine.periods import month_key
from processors.engine.state import Hold, PartnerState, RuleKey, counter_key
from processors.engine.targets import target_of
from schemas.programs import EarningRule, Gate

Failures = dict[tuple[str, str], dict[str, InputValue]]  # (partner, rule) -> measures


def failures(close: Close) -> Failures:
    """Every (partner, rule) whose gate fails at this close, with what was measured."""
    found: Failures = {}
    for cr in close.cp.rules:
        rule = cr.rule
        if not isinstance(rule, EarningRule) or rule.gate is None or not close.ends(cr):
            continue
        for pid, state in close.states.items():
            measured, failed = _measure(close, cr, rule.gate, state)
            if failed:
                measured["failed"] = list[InputScalar](failed)
                found[(pid, rule.id)] = measured
    return found


def _measure(close: Close, cr: CompiledRule, gate: Gate,
             state: PartnerState) -> tuple[dict[str, InputValue], list[str]]:
    measured: dict[str, InputValue] = {"period": close.period_key(cr)}
    failed: list[str] = []
    if gate.avg_satisfaction_min_x100 is not None:
        count, total = surveys(state, close.months(cr), close.cp.scale_name)
        measured.update(surveys=count, score_sum=total, surveys_min=gate.surveys_min,
                        avg_satisfaction_min_x100=gate.avg_satisfaction_min_x100)
        if count < gate.surveys_min or total * 100 < gate.avg_satisfaction_min_x100 * count:
            failed.append("avg_satisfaction_min_x100")
    if gate.certifications_min:
        last = month_key(close.last_day)
        held = sum(1 for month in state.certifications.values() if month <= last)
        measured.update(certifications=held, certifications_min=gate.certifications_min)
        if held < gate.certifications_min:
            failed.append("certifications_min")
    if gate.attainment_min_bp is not None:
        target = target_of(state, close.cp, close.period_key(cr), gate.attainment_metric)
        value = metric_value(state, gate.attainment_metric, close.months(cr), close.cp.currency)
        measured.update(attainment_metric=str(gate.attainment_metric), value=value,
                        target=None if target is None else target.value,
                        attainment_min_bp=gate.attainment_min_bp)
        if target is None or value * 10_000 < gate.attainment_min_bp * target.value:
            failed.append("attainment_min_bp")
    return measured, failed


def withhold(awards: list[Award], failed: Failures) -> None:
    """Turn the positive period awards of failed gates into notes (in place)."""
    for a in awards:
        measured = failed.get((a.partner_id, a.rule_id))
        if measured is None or a.amount <= 0 or a.note:
            continue
        a.inputs.update(measured)
        a.inputs["withheld"] = a.amount
        a.summary = f"Withheld by the gate of {a.rule_id}: {a.summary}"
        a.leg, a.amount, a.note, a.rounding = f"gate:{a.leg}", 0, True, None


def take_backs(close: Close, failed: Failures) -> list[Award]:
    """For each failed gate, what the rule's per-event payments earned in the period."""
    out: list[Award] = []
    for (pid, rule_id), measured in sorted(failed.items()):
        cr = close.cp.by_id[rule_id]
        period = close.period_key(cr)
        key = counter_key(close.cp.program_id, rule_id, period)
        earned = close.states[pid].counters.get(key, 0)
        inputs = dict(measured)
        inputs["earned"] = earned
        out.append(Award(
            partner_id=pid, rule=cr, asset=cr.asset or "", amount=-max(earned, 0),
            summary=f"Gate of {rule_id} not met in {period}: what the period earned is "
            f"taken back", formula="the period's earnings of the rule, net of clawbacks",
            inputs=inputs, leg="gate",
            holds=_period_holds(close.cp.program_id, rule_id, period),
            settle=_mark(key, close.cp.program_id, rule_id, period, month_key(close.last_day)),
        ))
    return out


def _period_holds(program_id: str, rule_id: str, period: str) -> Callable[[Hold], bool]:
    return lambda h: h.program_id == program_id and h.rule_id == rule_id and h.period == period


def _mark(key: RuleKey, program_id: str, rule_id: str, period: str,
          month: str) -> Callable[[PartnerState, int], None]:
    def mark(state: PartnerState, amount: int) -> None:
        state.gated[key] = month
        if key in state.counters:
            state.counters[key] += amount
        for earning in state.thresholds.values():
            if (earning.program_id, earning.rule_id, earning.period) == (program_id, rule_id,
                                                                          period):
                earning.left = 0

    return mark
