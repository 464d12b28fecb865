"""SaleRecorded: commission and market funds per line, new-customer reward per order,
threshold bonus when the period's metric first reaches its level.

Order of work for one sale: the month's facts are updated first (so eligibility's
``min_period_volume`` and the threshold see the sale), then each program in effect pays its
per-sale rules in document order, lines in order; a cap or the budget cuts the line that
reaches it and the lines after it get nothing, each said in its explanation. Every payment
a reversal could take back is remembered on its line (or order) as an ``Earning``.
Sales in another currency than a program's earn nothing from it (no conversion).
"""

import datetime as dt
import uuid

from ledger.core import Explanation, InputValue, Rounding
from processors.engine.book import Book
from processors.engine.compiled import OTHER, CompiledProgram, CompiledRule, Subject
from processors.engine.metrics import metric_value, period_net_sales, surveys
from processors.engine.money import apply_bp
from processors.engine.periods import day_of, month_key, period_key, period_months
from processors.engine.results import Refusal, RefusalCode
from processors.engine.state import (
    ORDER_RETENTION_DAYS,
    Earning,
    LineState,
    OrderState,
    ThresholdKey,
    day_facts,
    month,
    visible_order,
)
from processors.engine.tiers import current_tier
from schemas.events import SaleLine, SaleRecorded
from schemas.programs import (
    CommissionRule,
    MdfRule,
    Metric,
    NewCustomerRule,
    NewTo,
    OncePer,
    ThresholdBonusRule,
)


def record_sale(book: Book, event: SaleRecorded, programs: list[CompiledProgram]) -> Refusal | None:
    state = book.state
    known = visible_order(state, event.order_id)
    if known is not None:
        return Refusal(
            code=RefusalCode.DUPLICATE_ORDER,
            path="$.order_id",
            message=f"order {event.order_id!r} was already recorded by event "
            f"{known.event_id}: expected a new order id",
        )
    day = day_of(event.occurred_at)
    first_time = event.customer_id not in state.customers
    counted_new = event.new_customer and first_time
    _count(book, event, day, counted_new)
    book.subjects = {}
    order = OrderState(
        order_id=event.order_id,
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        customer_id=event.customer_id,
        currency=event.currency,
        lines={
            line.line_id: LineState(
                line_id=line.line_id,
                category=line.category,
                quantity=line.quantity,
                net_amount=line.net_amount,
                quantity_left=line.quantity,
                amount_left=line.net_amount,
            )
            for line in event.lines
        },
        keep_until=day + dt.timedelta(days=ORDER_RETENTION_DAYS),
    )
    state.orders[event.order_id] = order
    for cp in programs:
        if cp.currency != event.currency:
            continue
        for cr in cp.rules:
            rule = cr.rule
            if isinstance(rule, CommissionRule):
                _commission(book, cp, cr, rule, event, order, day)
            elif isinstance(rule, MdfRule):
                _mdf(book, cp, cr, rule, event, order, day)
            elif isinstance(rule, NewCustomerRule):
                _new_customer(book, cp, cr, rule, event, order, day, first_time)
            elif isinstance(rule, ThresholdBonusRule):
                _threshold(book, cp, cr, rule, event, day, counted_new)
        _extend_retention(order)
    book.subjects = None
    return None


def _count(book: Book, event: SaleRecorded, day: dt.date, counted_new: bool) -> None:
    state = book.state
    key = month_key(day)
    agg = month(state, key)
    net = agg.net.setdefault(event.currency, {})
    units = agg.units.setdefault(event.currency, {})
    for line in event.lines:
        net[line.category] = net.get(line.category, 0) + line.net_amount
        units[line.category] = units.get(line.category, 0) + line.quantity
    if agg.last_sale_at is None or event.occurred_at > agg.last_sale_at:
        agg.last_sale_at = event.occurred_at
    if book.day_facts:
        daily = day_facts(state, day)
        total = sum(line.net_amount for line in event.lines)
        daily.net[event.currency] = daily.net.get(event.currency, 0) + total
    if counted_new:
        agg.new_customers += 1
        if agg.last_new_customer_at is None or event.occurred_at > agg.last_new_customer_at:
            agg.last_new_customer_at = event.occurred_at
    state.customers.setdefault(event.customer_id, key)


def _extend_retention(order: OrderState) -> None:
    deadlines = [
        e.clawback_until.date()
        for line in order.lines.values()
        for e in line.earnings
        if e.clawback_until is not None
    ]
    if deadlines:
        order.keep_until = max(order.keep_until, max(deadlines))


def subject(book: Book, cp: CompiledProgram, cr: CompiledRule, day: dt.date) -> Subject:
    assert cr.period is not None
    if book.subjects is None:
        return _subject(book, cp, cr, day)
    key = (cp.program_id, cp.version, cr.period, cr.needs_surveys)
    found = book.subjects.get(key)
    if found is None:
        found = book.subjects[key] = _subject(book, cp, cr, day)
    return found


def _subject(book: Book, cp: CompiledProgram, cr: CompiledRule, day: dt.date) -> Subject:
    assert cr.period is not None
    return Subject(
        profile=book.state.profile,
        tier=current_tier(book.state, cp),
        day=day,
        period_volume=period_net_sales(book.state, cr.period, day, cp.currency),
        period_surveys=(surveys(book.state, period_months(cr.period, day), cp.scale_name)
                        if cr.needs_surveys else (0, 0)),
    )


def _earning(cp: CompiledProgram, cr: CompiledRule, amount: int, record_id: uuid.UUID,
             period: str, at: dt.datetime, basis: str, formula: str) -> Earning | None:
    if not cp.clawable(cr.rule.id):
        return None
    assert cr.asset is not None
    return Earning(
        program_id=cp.program_id,
        version=cp.version,
        rule_id=cr.rule.id,
        asset=cr.asset,
        earned=amount,
        left=amount,
        record_id=record_id,
        period=period,
        clawback_until=cp.clawback_until(at),
        basis=basis,
        formula=formula,
    )


def _pay_line(
    book: Book,
    cp: CompiledProgram,
    cr: CompiledRule,
    event: SaleRecorded,
    line: SaleLine,
    order: OrderState,
    period: str,
    computed: int,
    rounding: Rounding | None,
    summary: str,
    formula: str,
    inputs: dict[str, InputValue],
    basis: str,
) -> None:
    amount = book.limit(cp, cr, period, computed, inputs)
    if amount <= 0:
        return
    inputs["amount"] = amount
    draft = book.accrue(
        cp, cr, period, f"line:{line.line_id}", amount,
        Explanation(summary=summary, formula=formula, inputs=inputs, rounding=rounding),
    )
    earning = _earning(cp, cr, amount, draft.record_id, period, event.occurred_at, basis, formula)
    if earning is not None:
        order.lines[line.line_id].earnings.append(earning)


def _commission(book: Book, cp: CompiledProgram, cr: CompiledRule, rule: CommissionRule,
                event: SaleRecorded, order: OrderState, day: dt.date) -> None:
    assert cr.period is not None
    who = subject(book, cp, cr, day)
    if not cr.eligible(who):
        return
    period = period_key(cr.period, day)
    for line in event.lines:
        found = cp.commission_rate(rule.id, who.tier, line.category)
        if found is None:
            continue
        rate, override = found
        inputs: dict[str, InputValue] = {
            "order_id": event.order_id,
            "line_id": line.line_id,
            "category": line.category,
            "tier": who.tier,
            "tier_override": override,
            "period": period,
        }
        if rate.category is None:
            inputs["rate_category"] = OTHER
        if rate.rate_bp is not None:
            computed, rounding = apply_bp(line.net_amount, rate.rate_bp)
            inputs.update(net_amount=line.net_amount, rate_bp=rate.rate_bp)
            formula = "net_amount * rate_bp / 10000"
            basis: str = "amount"
            what = f"{rate.rate_bp} bp of {line.net_amount}"
        else:
            assert rate.per_unit is not None
            computed, rounding = line.quantity * rate.per_unit, None
            inputs.update(quantity=line.quantity, per_unit=rate.per_unit)
            formula = "quantity * per_unit"
            basis = "quantity"
            what = f"{line.quantity} x {rate.per_unit}"
        summary = f"Commission on line {line.line_id} ({line.category}): {what}"
        _pay_line(book, cp, cr, event, line, order, period, computed, rounding, summary,
                  formula, inputs, basis)


def _mdf(book: Book, cp: CompiledProgram, cr: CompiledRule, rule: MdfRule,
         event: SaleRecorded, order: OrderState, day: dt.date) -> None:
    assert cr.period is not None
    who = subject(book, cp, cr, day)
    if not cr.eligible(who):
        return
    period = period_key(cr.period, day)
    share = cp.mdf_share(rule, who.tier)
    categories = frozenset(rule.categories)
    for line in event.lines:
        if categories and line.category not in categories:
            continue
        computed, rounding = apply_bp(line.net_amount, share)
        inputs: dict[str, InputValue] = {
            "order_id": event.order_id,
            "line_id": line.line_id,
            "category": line.category,
            "tier": who.tier,
            "net_amount": line.net_amount,
            "share_bp": share,
            "period": period,
        }
        summary = f"Market fund on line {line.line_id} ({line.category}): {share} bp"
        _pay_line(book, cp, cr, event, line, order, period, computed, rounding, summary,
                  "net_amount * share_bp / 10000", inputs, "amount")


def _new_customer(book: Book, cp: CompiledProgram, cr: CompiledRule, rule: NewCustomerRule,
                  event: SaleRecorded, order: OrderState, day: dt.date, first_time: bool) -> None:
    assert cr.period is not None
    state = book.state
    key = f"{cp.program_id}|{event.customer_id}"
    new = event.new_customer if rule.new_to is NewTo.MANUFACTURER else first_time
    order_total = sum(line.net_amount for line in event.lines)
    if key in state.rewarded or not new or order_total < rule.first_order_min:
        return
    if not cr.eligible(subject(book, cp, cr, day)):
        return
    period = period_key(cr.period, day)
    state.rewarded[key] = month_key(day)
    inputs: dict[str, InputValue] = {
        "order_id": event.order_id,
        "customer_id": event.customer_id,
        "new_to": str(rule.new_to),
        "order_total": order_total,
        "first_order_min": rule.first_order_min,
        "period": period,
    }
    amount = book.limit(cp, cr, period, rule.amount, inputs)
    if amount <= 0:
        return
    inputs["amount"] = amount
    formula = "amount, once per customer, when order_total >= first_order_min"
    draft = book.accrue(
        cp, cr, period, f"customer:{event.customer_id}", amount,
        Explanation(summary=f"New customer {event.customer_id}", formula=formula, inputs=inputs),
    )
    earning = _earning(cp, cr, amount, draft.record_id, period, event.occurred_at,
                       "order", formula)
    if earning is not None:
        earning.level = max(rule.first_order_min, 1)
        order.earnings.append(earning)


def threshold_key(cp: CompiledProgram, rule: ThresholdBonusRule, period: str) -> ThresholdKey:
    scope = period if rule.once_per is OncePer.PERIOD else "*"
    return ThresholdKey(f"{cp.program_id}|{rule.id}|{scope}")


def sale_contribution(rule: ThresholdBonusRule, event: SaleRecorded, counted_new: bool) -> int:
    categories = frozenset(rule.categories)
    lines = [ln for ln in event.lines if not categories or ln.category in categories]
    if rule.metric is Metric.NET_SALES:
        return sum(ln.net_amount for ln in lines)
    if rule.metric is Metric.UNITS:
        return sum(ln.quantity for ln in lines)
    return 1 if counted_new else 0


def _threshold(book: Book, cp: CompiledProgram, cr: CompiledRule, rule: ThresholdBonusRule,
               event: SaleRecorded, day: dt.date, counted_new: bool) -> None:
    assert cr.period is not None
    state = book.state
    period = period_key(cr.period, day)
    key = threshold_key(cp, rule, period)
    if key in state.thresholds:
        return
    categories = frozenset(rule.categories) or None
    after = metric_value(state, rule.metric, period_months(cr.period, day), cp.currency,
                         categories)
    before = after - sale_contribution(rule, event, counted_new)
    if not before < rule.level <= after:
        return
    if not cr.eligible(subject(book, cp, cr, day)):
        return
    inputs: dict[str, InputValue] = {
        "order_id": event.order_id,
        "metric": str(rule.metric),
        "before": before,
        "after": after,
        "level": rule.level,
        "period": period,
        "once_per": str(rule.once_per),
    }
    amount = book.limit(cp, cr, period, rule.amount, inputs)
    if amount <= 0:
        return
    inputs["amount"] = amount
    formula = "amount when before < level <= after"
    draft = book.accrue(
        cp, cr, period, "threshold", amount,
        Explanation(summary=f"Reached {rule.level} {rule.metric} in {period}", formula=formula,
                    inputs=inputs),
    )
    earning = _earning(cp, cr, amount, draft.record_id, period, event.occurred_at,
                       "threshold", formula)
    if earning is not None:
        earning.level = rule.level
        earning.metric = str(rule.metric)
        earning.categories = list(rule.categories)
        earning.period_kind = str(cr.period)
        earning.currency = cp.currency
    else:  # Not clawable: still remembered, so it is paid only once.
        earning = Earning(
            program_id=cp.program_id, version=cp.version, rule_id=rule.id, asset=cr.asset or "",
            earned=amount, left=0, record_id=draft.record_id, period=period,
            clawback_until=None, basis="threshold", formula=formula,
        )
    state.thresholds[key] = earning
