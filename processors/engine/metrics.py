"""Metrics over a partner's monthly facts: net sales, units, new customers, surveys.

Money metrics count sales in the program currency only (the engine never converts);
``categories`` limits them to some product categories, ``None`` counts every category.
"""

import datetime as dt
from collections.abc import Iterable

from processors.engine.periods import period_months
from processors.engine.state import PartnerState
from schemas.programs import Metric
from schemas.programs import Period as PeriodKind

Categories = frozenset[str] | None


def _by_category(table: dict[str, dict[str, int]], currency: str, categories: Categories) -> int:
    values = table.get(currency, {})
    if categories is None:
        return sum(values.values())
    return sum(v for c, v in values.items() if c in categories)


def metric_value(
    state: PartnerState,
    metric: Metric,
    months: Iterable[str],
    currency: str,
    categories: Categories = None,
) -> int:
    total = 0
    for key in months:
        agg = state.months.get(key)
        if agg is None:
            continue
        if metric is Metric.NET_SALES:
            total += _by_category(agg.net, currency, categories)
        elif metric is Metric.UNITS:
            total += _by_category(agg.units, currency, categories)
        else:
            total += agg.new_customers
    return total


def net_sales(state: PartnerState, months: Iterable[str], currency: str) -> int:
    return metric_value(state, Metric.NET_SALES, months, currency)


def period_net_sales(state: PartnerState, period: PeriodKind, day: dt.date, currency: str) -> int:
    return net_sales(state, period_months(period, day), currency)


def last_change(state: PartnerState, metric: Metric, months: Iterable[str]) -> dt.datetime | None:
    """When the metric last changed in these months: the ``reached_first`` tie-break."""
    latest: dt.datetime | None = None
    for key in months:
        agg = state.months.get(key)
        if agg is None:
            continue
        at = agg.last_new_customer_at if metric is Metric.NEW_CUSTOMERS else agg.last_sale_at
        if at is not None and (latest is None or at > latest):
            latest = at
    return latest


def surveys(state: PartnerState, months: Iterable[str], scale: str | None) -> tuple[int, int]:
    """(count, sum of scores) of surveys on ``scale``; None: the program has no known scale."""
    count = total = 0
    if scale is None:
        return 0, 0
    for key in months:
        agg = state.months.get(key)
        if agg is not None and scale in agg.surveys:
            count += agg.surveys[scale].count
            total += agg.surveys[scale].score_sum
    return count, total


def certifications(state: PartnerState, months: Iterable[str]) -> int:
    wanted = set(months)
    return sum(1 for month in state.certifications.values() if month in wanted)
