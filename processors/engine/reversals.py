"""SaleReversed: clawback of exactly what the reversed lines earned, at the original rates.

What a line earned is remembered per rule (``Earning``: amount paid after caps and budget,
how it was computed, its program version, its clawback deadline), so a reversal after a
tier change or under a newer program version still cancels its sale exactly.

- A partial reversal takes ``left * reversed / remaining`` of each earning, half-even,
  where the basis is the line's net amount for rates and its quantity for per-unit
  amounts; the reversal that empties the basis takes all that is left, so a sale reversed
  in several steps is clawed back to the unit, and never more than it earned.
- New-customer rewards are taken back when the order's remaining net amount falls below
  the rule's ``first_order_min`` (or to zero).
- Threshold bonuses are taken back when a reversal brings the bonus period's value back
  below the level: the period's metric, less what later periods reversed of the period's
  own sales (so a sale and its reversal cancel whenever the reversal comes). The bonus can
  then be earned again by a later sale in that period.
- An amount still on hold is taken from pending (the hold shrinks), the rest from
  available, which may go negative. Reversals after ``clawback.window_days`` reduce the
  volumes but take nothing back.
- Volumes: a reversal reduces the facts of the month it happens in (net sales are "sales
  minus reversals in the period"); closed periods are never recomputed.
- A rule period whose gate failed at its close (``PartnerState.gated``) was taken back
  whole then: a reversal of its sales takes nothing more.
"""

import datetime as dt

from ledger.core import Explanation, InputValue, RecordKind, Rounding
from processors.engine.book import Book
from processors.engine.metrics import metric_value
from processors.engine.money import rounded
from processors.engine.periods import day_of, month_key, period_key, period_months
from processors.engine.results import Refusal, RefusalCode
from processors.engine.state import (
    Earning,
    LineState,
    OrderState,
    counter_key,
    day_facts,
    month,
    visible_order,
)
from schemas.events import SaleReversed
from schemas.programs import Metric
from schemas.programs import Period as PeriodKind

Part = tuple[LineState, int, int]  # line, quantity reversed, net amount reversed


def reverse_sale(book: Book, event: SaleReversed) -> Refusal | None:
    state = book.state
    order = visible_order(state, event.order_id)
    if order is None:
        return Refusal(code=RefusalCode.UNKNOWN_ORDER, path="$.order_id",
                       message=f"expected an order recorded for this partner, got "
                       f"{event.order_id!r}")
    if event.currency != order.currency:
        return Refusal(code=RefusalCode.CURRENCY_MISMATCH, path="$.currency",
                       message=f"expected the order's currency {order.currency}, "
                       f"got {event.currency}")
    parts = _parts(order, event)
    if isinstance(parts, Refusal):
        return parts
    day = day_of(event.occurred_at)
    agg = month(state, month_key(day))
    net = agg.net.setdefault(order.currency, {})
    units = agg.units.setdefault(order.currency, {})
    for line, quantity, amount in parts:
        net[line.category] = net.get(line.category, 0) - amount
        units[line.category] = units.get(line.category, 0) - quantity
    if agg.last_sale_at is None or event.occurred_at > agg.last_sale_at:
        agg.last_sale_at = event.occurred_at
    if book.day_facts:
        daily = day_facts(state, day)
        daily.net[order.currency] = daily.net.get(order.currency, 0) - sum(a for _, _, a in parts)
    for line, quantity, amount in parts:
        for earning in line.earnings:
            _claw_line(book, event, order, line, earning, quantity, amount)
        line.quantity_left -= quantity
        line.amount_left -= amount
    remaining = sum(line.amount_left for line in order.lines.values())
    for earning in order.earnings:
        if (earning.left and remaining < earning.level and _in_window(earning, event)
                and not _gated(book, earning)):
            inputs: dict[str, InputValue] = {
                "order_id": order.order_id, "order_left": remaining, "level": earning.level,
            }
            _take(book, event, order, earning, earning.left, "clawback:order", inputs,
                  "order net amount left < first_order_min: all of it", None)
    _thresholds(book, event, order, parts, day)
    return None


def _parts(order: OrderState, event: SaleReversed) -> list[Part] | Refusal:
    if event.scope == "full":
        parts = [
            (line, line.quantity_left, line.amount_left)
            for line in order.lines.values()
            if line.quantity_left or line.amount_left
        ]
        if not parts:
            return Refusal(code=RefusalCode.REVERSAL_EXCEEDS_SALE, path="$.order_id",
                           message=f"order {order.order_id!r} is already fully reversed")
        return parts
    found: list[Part] = []
    for i, rl in enumerate(event.lines):
        line = order.lines.get(rl.line_id)
        path = f"$.lines[{i}]"
        if line is None:
            return Refusal(code=RefusalCode.REVERSAL_EXCEEDS_SALE, path=f"{path}.line_id",
                           message=f"expected a line of order {order.order_id!r}, "
                           f"got {rl.line_id!r}")
        if rl.quantity > line.quantity_left:
            return Refusal(code=RefusalCode.REVERSAL_EXCEEDS_SALE, path=f"{path}.quantity",
                           message=f"expected at most {line.quantity_left} (not yet "
                           f"reversed), got {rl.quantity}")
        if rl.net_amount > line.amount_left:
            return Refusal(code=RefusalCode.REVERSAL_EXCEEDS_SALE, path=f"{path}.net_amount",
                           message=f"expected at most {line.amount_left} (not yet "
                           f"reversed), got {rl.net_amount}")
        found.append((line, rl.quantity, rl.net_amount))
    return found


def _in_window(earning: Earning, event: SaleReversed) -> bool:
    return earning.clawback_until is None or event.occurred_at <= earning.clawback_until


def _gated(book: Book, earning: Earning) -> bool:
    """Whether a gate took the earning's period back at its close: nothing left to take."""
    return counter_key(earning.program_id, earning.rule_id, earning.period) in book.state.gated


def _claw_line(book: Book, event: SaleReversed, order: OrderState, line: LineState,
               earning: Earning, quantity: int, amount: int) -> None:
    if earning.left == 0 or not _in_window(earning, event) or _gated(book, earning):
        return
    if earning.basis == "quantity":
        part, whole, unit = quantity, line.quantity_left, "quantity"
    else:
        part, whole, unit = amount, line.amount_left, "net_amount"
    inputs: dict[str, InputValue] = {
        "order_id": order.order_id,
        "line_id": line.line_id,
        f"reversed_{unit}": part,
        f"{unit}_left": whole,
    }
    if part >= whole:
        _take(book, event, order, earning, earning.left, f"clawback:line:{line.line_id}",
              inputs, f"all that is left: the reversal empties the line's {unit}", None)
        return
    claw, rounding = rounded(earning.left * part, whole)
    claw = min(claw, earning.left)
    if claw > 0:
        _take(book, event, order, earning, claw, f"clawback:line:{line.line_id}", inputs,
              f"earned_left * reversed_{unit} / {unit}_left, half-even", rounding)


def _take(book: Book, event: SaleReversed, order: OrderState | None, earning: Earning,
          amount: int, leg: str, inputs: dict[str, InputValue], formula: str,
          rounding: Rounding | None) -> None:
    inputs.update(
        reversal_id=event.reversal_id,
        earned=earning.earned,
        earned_left=earning.left,
        amount=amount,
        original_formula=earning.formula,
        original_version=earning.version,
    )
    sources = (event.event_id,) if order is None else (event.event_id, order.event_id)
    book.take_back(
        RecordKind.CLAWBACK,
        (earning.program_id, earning.version),
        earning.rule_id,
        leg,
        earning.asset,
        amount,
        Explanation(
            summary=f"Clawback of {earning.rule_id}: {amount} of {earning.left} still held "
            f"back from {earning.earned} earned",
            formula=formula,
            inputs=inputs,
            rounding=rounding,
            related_record_ids=(earning.record_id,),
        ),
        hold_record=earning.record_id,
        source_event_ids=sources,
    )
    earning.left -= amount
    key = counter_key(earning.program_id, earning.rule_id, earning.period)
    if key in book.state.counters:
        book.state.counters[key] -= amount


def _thresholds(book: Book, event: SaleReversed, order: OrderState, parts: list[Part],
                day: dt.date) -> None:
    """Take back a threshold bonus when its period no longer reaches the level.

    The period's value is its metric (sales minus reversals in the period) minus what
    later periods reversed of the period's own sales, so a sale and its reversal cancel
    whenever the reversal comes.
    """
    state = book.state
    sold_on = day_of(order.occurred_at)
    for key in sorted(state.thresholds):
        earning = state.thresholds[key]
        if not earning.left or not earning.period_kind:
            continue
        kind = PeriodKind(earning.period_kind)
        sold_in, reversed_in = period_key(kind, sold_on), period_key(kind, day)
        if earning.period not in (sold_in, reversed_in):
            continue
        if sold_in == earning.period and reversed_in != earning.period:
            earning.returned_later += _contribution(earning, order, parts)
        if not _in_window(earning, event):
            continue
        months = period_months(kind, sold_on if sold_in == earning.period else day)
        value = metric_value(state, Metric(earning.metric), months, earning.currency,
                             frozenset(earning.categories) or None) - earning.returned_later
        if value >= earning.level:
            continue
        inputs: dict[str, InputValue] = {
            "metric": earning.metric, "after": value, "level": earning.level,
            "period": earning.period, "returned_later": earning.returned_later,
        }
        _take(book, event, None, earning, earning.left, "clawback:threshold", inputs,
              "the period's metric fell back below the level: all of it", None)
        del state.thresholds[key]


def _contribution(earning: Earning, order: OrderState, parts: list[Part]) -> int:
    if order.currency != earning.currency or earning.metric == Metric.NEW_CUSTOMERS:
        return 0
    categories = frozenset(earning.categories)
    counted = [(q, a) for line, q, a in parts if not categories or line.category in categories]
    if earning.metric == Metric.UNITS:
        return sum(q for q, _ in counted)
    return sum(a for _, a in counted)
