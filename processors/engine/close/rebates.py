"""Per-partner period awards: volume rebates (返利) and non-cash awards.

- Retroactive: ``metric`` (over the rule's categories) picks the band ``at_least <= value <
  below``; its rate applies to the whole period's net sales of those categories.
- Marginal: each band's rate applies to the part of net sales inside the band; the pieces
  are added exactly and rounded once.
A period with net sales of zero or less earns no rebate.
"""

from ledger.core import InputValue
from processors.engine.close.awards import Award
from processors.engine.close.context import Close
from processors.engine.compiled import CompiledRule
from processors.engine.metrics import metric_value
from processors.engine.money import apply_bp, rounded
from schemas.programs import Metric, NonCashAwardRule, RebateMode, VolumeRebateRule


def volume_rebate(close: Close, cr: CompiledRule, rule: VolumeRebateRule) -> list[Award]:
    awards: list[Award] = []
    categories = frozenset(rule.categories) or None
    for pid, state in close.partners(cr):
        months = close.months(cr)
        base = metric_value(state, Metric.NET_SALES, months, close.cp.currency, categories)
        value = metric_value(state, rule.metric, months, close.cp.currency, categories)
        inputs: dict[str, InputValue] = {
            "period": close.period_key(cr), "metric": str(rule.metric), "value": value,
            "net_sales": base, "mode": str(rule.mode),
        }
        if base <= 0:
            continue
        if rule.mode is RebateMode.RETROACTIVE:
            band = next((b for b in rule.bands
                         if b.at_least <= value and (b.below is None or value < b.below)), None)
            if band is None or band.rate_bp == 0:
                continue
            amount, rounding = apply_bp(base, band.rate_bp)
            inputs.update(band_at_least=band.at_least, band_below=band.below,
                          rate_bp=band.rate_bp)
            formula = "net_sales * rate_bp(band of value) / 10000"
            summary = f"Rebate {rule.id}: {band.rate_bp} bp of {base}"
        else:
            pieces = [
                max(0, (base if b.below is None else min(base, b.below)) - b.at_least)
                for b in rule.bands
            ]
            numerator = sum(p * b.rate_bp for p, b in zip(pieces, rule.bands, strict=True))
            amount, rounding = rounded(numerator, 10_000)
            inputs.update(band_pieces=list(pieces), band_rates_bp=[b.rate_bp for b in rule.bands])
            formula = "sum(piece_in_band * rate_bp) / 10000"
            summary = f"Marginal rebate {rule.id} on {base}"
        if amount <= 0:
            continue
        awards.append(Award(partner_id=pid, rule=cr, asset=cr.asset or "", amount=amount,
                            summary=summary, formula=formula, inputs=inputs, rounding=rounding,
                            hold_days=cr.hold_days))
    return awards


def non_cash_award(close: Close, cr: CompiledRule, rule: NonCashAwardRule) -> list[Award]:
    awards: list[Award] = []
    for pid, state in close.partners(cr):
        value = metric_value(state, rule.condition.metric, close.months(cr), close.cp.currency)
        if value < rule.condition.at_least:
            continue
        inputs: dict[str, InputValue] = {
            "period": close.period_key(cr), "metric": str(rule.condition.metric),
            "value": value, "at_least": rule.condition.at_least, "quantity": rule.quantity,
            "unit_cost": rule.unit_cost,
        }
        awards.append(Award(partner_id=pid, rule=cr, asset=cr.asset or "", amount=rule.quantity,
                            summary=f"{rule.quantity} x {rule.pays} for reaching "
                            f"{rule.condition.at_least}", formula="quantity when value >= at_least",
                            inputs=inputs, hold_days=cr.hold_days, unit_cost=rule.unit_cost))
    return awards
