"""Period awards measured against a goal: target attainment and growth (业绩突破).

- ``target_attainment``: ``attainment = value / target`` (the period's metric over the
  partner's target for the period, ``TargetsSet``), compared exactly with the bands in
  basis points of the target: ``at_least_bp * target <= value * 10_000 < below_bp *
  target``. The band pays ``amount + net_sales * rate_bp / 10_000 + excess *
  excess_rate_bp / 10_000``, where ``excess`` is the value above the band's start
  (``value - target * at_least_bp / 10_000``), rounded half-even once. An eligible partner
  without a target, or below the first band, gets a note saying so and nothing else.
- ``growth_bonus``: ``growth = (value - base) / base`` over the base period (the same
  period a year before, or the period before), in bands of basis points compared exactly;
  the band pays ``amount + increase * rate_bp / 10_000`` where ``increase`` is the growth
  of net sales (never below 0). A base below ``base_min`` (a partner new last year, or one
  that sold almost nothing) earns nothing; a partner that sold in the period gets a note.
"""

import datetime as dt

from ledger.core import InputValue
from processors.engine.close.awards import Award
from processors.engine.close.context import Close
from processors.engine.compiled import CompiledRule
from processors.engine.metrics import metric_value
from processors.engine.money import exact_text, rounded
from processors.engine.periods import MONTHS_PER, add_months, period_key, period_months
from processors.engine.targets import target_of
from schemas.programs import (
    AttainmentBand,
    CompareTo,
    GrowthBand,
    GrowthBonusRule,
    Metric,
    TargetAttainmentRule,
)

_BP = 10_000


def _note(pid: str, cr: CompiledRule, leg: str, summary: str,
          inputs: dict[str, InputValue]) -> Award:
    return Award(partner_id=pid, rule=cr, asset=cr.asset or "", amount=0, summary=summary,
                 formula="nothing is paid", inputs=inputs, leg=leg, note=True)


def target_attainment(close: Close, cr: CompiledRule, rule: TargetAttainmentRule) -> list[Award]:
    awards: list[Award] = []
    period = close.period_key(cr)
    months = close.months(cr)
    currency = close.cp.currency
    for pid, state in close.partners(cr):
        target = target_of(state, close.cp, period, rule.metric)
        inputs: dict[str, InputValue] = {"period": period, "metric": str(rule.metric)}
        if target is None:
            awards.append(_note(pid, cr, "no-target", f"No target for {period} "
                                f"{rule.metric}: {rule.id} pays nothing", inputs))
            continue
        value = metric_value(state, rule.metric, months, currency)
        inputs.update(target=target.value, target_set_by=target.set_by,
                      target_set_at=target.set_at.isoformat(),
                      target_event_id=str(target.event_id), value=value,
                      attainment_bp=exact_text(value * _BP, target.value))
        band = _attainment_band(rule.bands, value, target.value)
        if band is None:
            awards.append(_note(pid, cr, "below-target", f"Attained {inputs['attainment_bp']}"
                                f" bp of the {period} target: below the first band", inputs))
            continue
        net = metric_value(state, Metric.NET_SALES, months, currency)
        excess_x_bp = max(value * _BP - target.value * band.at_least_bp, 0)
        numerator = ((band.amount or 0) * _BP * _BP + net * (band.rate_bp or 0) * _BP
                     + excess_x_bp * (band.excess_rate_bp or 0))
        amount, rounding = rounded(numerator, _BP * _BP)
        inputs.update(band_at_least_bp=band.at_least_bp, band_below_bp=band.below_bp,
                      band_amount=band.amount, rate_bp=band.rate_bp, net_sales=net,
                      excess_rate_bp=band.excess_rate_bp,
                      excess=exact_text(excess_x_bp, _BP))
        if amount <= 0:
            continue
        awards.append(Award(
            partner_id=pid, rule=cr, asset=cr.asset or "", amount=amount,
            summary=f"Target {period}: {value} of {target.value} {rule.metric}",
            formula="amount + net_sales * rate_bp / 10000 + excess * excess_rate_bp / 10000,"
            " excess = value - target * at_least_bp / 10000",
            inputs=inputs, rounding=rounding, hold_days=cr.hold_days))
    return awards


def _attainment_band(bands: tuple[AttainmentBand, ...], value: int,
                     target: int) -> AttainmentBand | None:
    scaled = value * _BP
    for band in bands:
        if band.at_least_bp * target <= scaled and (
            band.below_bp is None or scaled < band.below_bp * target
        ):
            return band
    return None


def base_day(compare_to: CompareTo, period_kind_months: int, last_day: dt.date) -> dt.date:
    """A day in the base period of the period ending ``last_day``."""
    months = 12 if compare_to is CompareTo.SAME_PERIOD_LAST_YEAR else period_kind_months
    return add_months(last_day.replace(day=1), -months)


def growth_bonus(close: Close, cr: CompiledRule, rule: GrowthBonusRule) -> list[Award]:
    assert cr.period is not None
    awards: list[Award] = []
    period = close.period_key(cr)
    months = close.months(cr)
    before = base_day(rule.compare_to, MONTHS_PER[cr.period], close.last_day)
    base_months = period_months(cr.period, before)
    categories = frozenset(rule.categories) or None
    currency = close.cp.currency
    for pid, state in close.partners(cr):
        value = metric_value(state, rule.metric, months, currency, categories)
        base = metric_value(state, rule.metric, base_months, currency, categories)
        inputs: dict[str, InputValue] = {
            "period": period, "base_period": period_key(cr.period, before),
            "metric": str(rule.metric), "value": value, "base": base,
            "base_min": rule.base_min, "compare_to": str(rule.compare_to),
        }
        if base < rule.base_min:
            if value > 0:
                awards.append(_note(pid, cr, "no-base", f"No growth bonus for {period}: the "
                                    f"base {base} is below base_min {rule.base_min}", inputs))
            continue
        growth_x_bp = (value - base) * _BP
        inputs["growth_bp"] = exact_text(growth_x_bp, base)
        band = _growth_band(rule.bands, growth_x_bp, base)
        if band is None:
            continue
        now = metric_value(state, Metric.NET_SALES, months, currency, categories)
        then = metric_value(state, Metric.NET_SALES, base_months, currency, categories)
        increase = max(now - then, 0)
        amount, rounding = rounded((band.amount or 0) * _BP + increase * (band.rate_bp or 0),
                                   _BP)
        inputs.update(band_at_least_bp=band.at_least_bp, band_below_bp=band.below_bp,
                      band_amount=band.amount, rate_bp=band.rate_bp, increase=increase)
        if amount <= 0:
            continue
        awards.append(Award(
            partner_id=pid, rule=cr, asset=cr.asset or "", amount=amount,
            summary=f"Growth {period} over {inputs['base_period']}: {value} from {base}",
            formula="amount + increase * rate_bp / 10000, band of (value - base) / base",
            inputs=inputs, rounding=rounding, hold_days=cr.hold_days))
    return awards


def _growth_band(bands: tuple[GrowthBand, ...], growth_x_bp: int, base: int) -> GrowthBand | None:
    for band in bands:
        if band.at_least_bp * base <= growth_x_bp and (
            band.below_bp is None or growth_x_bp < band.below_bp * base
        ):
            return band
    return None
