"""``TargetsSet``: finance's target for one partner, program, period and metric.

The target is kept in the partner's state (``PartnerState.targets``, key
``program|period|metric``) and read at the period's close by ``target_attainment`` rules and
by gates on attainment. A later ``TargetsSet`` replaces it until the period closes; the
close reads whatever is set then. Every target set is a value-free ``note`` record in the
partner's chain, so a statement shows which target an award was measured against and
when it changed.

Refused (nothing recorded, the state unchanged):

- ``no_program``: no version of the program is in effect in the target's period;
- ``unused_target``: no rule of that version measures the metric by that period kind (a
  ``target_attainment`` rule, or a gate on attainment): a target nothing reads is a
  mistake of the sender, not something to keep silently;
- ``period_closed``: the period was already closed for the partner (its close, or a later
  one, is marked in the state).
"""

import datetime as dt
from collections.abc import Sequence

from ledger.core import Explanation, InputScalar, InputValue, RecordKind
from processors.engine.book import Book
from processors.engine.compiled import CompiledProgram
from processors.engine.periods import MONTHS_PER, add_months, month_key
from processors.engine.results import Refusal, RefusalCode
from processors.engine.state import PartnerState, TargetKey, TargetState, closed_periods
from schemas.commands import TargetsSet
from schemas.programs import EarningRule, Metric, TargetAttainmentRule, rule_period
from schemas.programs import Period as PeriodKind


def target_key(program_id: str, period: str, metric: str) -> TargetKey:
    return TargetKey(f"{program_id}|{period}|{metric}")


def period_of_key(key: str) -> tuple[PeriodKind, dt.date]:
    """The kind and the last day of a period key: ``2026``, ``2026-Q1`` or ``2026-03``."""
    year = int(key[:4])
    if len(key) == 4:
        return PeriodKind.YEAR, dt.date(year, 12, 31)
    if key[5] == "Q":
        first = dt.date(year, 3 * (int(key[6]) - 1) + 1, 1)
        kind = PeriodKind.QUARTER
    else:
        first, kind = dt.date(year, int(key[5:7]), 1), PeriodKind.MONTH
    return kind, add_months(first, MONTHS_PER[kind]) - dt.timedelta(days=1)


def measured_by(cp: CompiledProgram, kind: PeriodKind, metric: str) -> list[str]:
    """The rules of ``cp`` that read a target of ``metric`` for periods of ``kind``."""
    found: list[str] = []
    for rule in cp.program.rules:
        if not isinstance(rule, EarningRule) or rule_period(cp.program, rule) is not kind:
            continue
        if isinstance(rule, TargetAttainmentRule) and rule.metric == metric:
            found.append(rule.id)
        elif (rule.gate is not None and rule.gate.attainment_min_bp is not None
              and rule.gate.attainment_metric == metric):
            found.append(rule.id)
    return found


def closed_for(state: PartnerState, program_id: str, last_day: dt.date) -> str | None:
    """The closed month that settles the period ending ``last_day`` (or a later one)."""
    last_month = month_key(last_day)
    for closed in closed_periods(state):
        if closed.program_id == program_id and closed.month >= last_month:
            return closed.month
    return None


def set_target(book: Book, command: TargetsSet,
               programs: Sequence[CompiledProgram]) -> Refusal | None:
    kind, last_day = period_of_key(command.period)
    versions = [cp for cp in programs
                if cp.program_id == command.program_id and cp.effective_on(last_day)]
    if not versions:
        return Refusal(code=RefusalCode.NO_PROGRAM, path="$.program_id",
                       message=f"expected a program in effect in {command.period}, got "
                       f"{command.program_id!r}")
    cp = max(versions, key=lambda v: v.version)
    rules = measured_by(cp, kind, command.metric)
    if not rules:
        return Refusal(code=RefusalCode.UNUSED_TARGET, path="$.metric",
                       message=f"expected a metric and period that a rule of "
                       f"{cp.program_id} v{cp.version} measures against a target, got "
                       f"{command.metric} by {kind}: no target_attainment rule or gate on "
                       f"attainment reads it")
    closed = closed_for(book.state, cp.program_id, last_day)
    if closed is not None:
        return Refusal(code=RefusalCode.PERIOD_CLOSED, path="$.period",
                       message=f"expected a period that is still open, got {command.period}: "
                       f"closed with {closed}")
    key = target_key(cp.program_id, command.period, command.metric)
    old = book.state.targets.get(key)
    previous = None if old is None else old.value
    book.state.targets[key] = TargetState(value=command.value, event_id=command.event_id,
                                          set_at=command.occurred_at, set_by=command.set_by,
                                          previous=previous)
    inputs: dict[str, InputValue] = {
        "period": command.period, "metric": command.metric, "value": command.value,
        "previous": previous, "set_by": command.set_by,
        "measured_by": list[InputScalar](rules),
    }
    was = "" if previous is None else f" (was {previous})"
    book.record(RecordKind.NOTE, cp.key, None, f"target:{command.period}:{command.metric}", [],
                Explanation(summary=f"Target for {command.period} {command.metric} set to "
                            f"{command.value}{was} by {command.set_by}",
                            formula="the close measures attainment against the target set "
                            "last", inputs=inputs))
    return None


def target_of(state: PartnerState, cp: CompiledProgram, period: str,
              metric: Metric) -> TargetState | None:
    return state.targets.get(target_key(cp.program_id, period, str(metric)))
