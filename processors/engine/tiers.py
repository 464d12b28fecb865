"""Partner tiers (晋升): qualification over a rolling window, upgrade at once, demotion only
at a period end after the tier's grace periods.

A partner without a tier record is in the program's entry tier (the first), which asks for
nothing; entering it is not recorded. Every change is a value-free ``TIER_CHANGE`` record.
The window is the ``window_months`` calendar months ending with the month of the event
(or of the period end), the current month included; or, with ``window_days``, that many
days ending with the day of the event (or the period's last day), from the daily facts.
An upgrade is checked after an event has earned its rewards: a sale earns at the tier the
partner had when it was made.
"""

import datetime as dt
from collections.abc import Iterable

from ledger.core import Explanation, InputValue, RecordKind
from processors.engine.book import Book
from processors.engine.compiled import CompiledProgram
from processors.engine.metrics import certifications, net_sales, surveys
from processors.engine.periods import day_keys, window_months
from processors.engine.state import PartnerState, TierState
from schemas.programs import Tier

DEFAULT_WINDOW_MONTHS = 12


def current_tier(state: PartnerState, cp: CompiledProgram) -> str | None:
    found = state.tiers.get(cp.program_id)
    if found is not None and found.tier in cp.tier_index:
        return found.tier
    return cp.entry_tier()


def measure(state: PartnerState, cp: CompiledProgram, tier: Tier, day: dt.date) -> dict[str, int]:
    q = tier.qualify
    if q.window_days is not None:
        return measure_days(state, cp, q.window_days, day)
    window = q.window_months or DEFAULT_WINDOW_MONTHS
    months = window_months(day, window)
    count, total = surveys(state, months, cp.scale_name)
    return {
        "window_months": window,
        "net_sales": net_sales(state, months, cp.currency),
        "certifications": certifications(state, months),
        "surveys": count,
        "survey_score_sum": total,
    }


def measure_days(state: PartnerState, cp: CompiledProgram, window: int,
                 day: dt.date) -> dict[str, int]:
    """The criteria over the ``window`` days ending with ``day``, from the daily facts."""
    net = certified = count = total = 0
    scale, currency = cp.scale_name, cp.currency
    days = state.days
    if not days:
        keys: Iterable[str] = ()
    elif len(days) < window:
        # Fewer facts than days in the window: look at the facts, not at every day.
        first = day_keys(day, window)[-1]
        last = day.isoformat()
        keys = [k for k in days if first <= k <= last]
    else:
        keys = day_keys(day, window)
    for key in keys:
        agg = days.get(key)
        if agg is None:
            continue
        net += agg.net.get(currency, 0)
        certified += agg.certifications
        if scale is not None:
            found = agg.surveys.get(scale)
            if found is not None:
                count += found.count
                total += found.score_sum
    return {"window_days": window, "net_sales": net, "certifications": certified,
            "surveys": count, "survey_score_sum": total}


class Measures:
    """The criteria of one partner on one day, each window measured once: the tiers of a
    program share a few windows, and a tier check looks at several tiers."""

    def __init__(self, state: PartnerState, cp: CompiledProgram, day: dt.date) -> None:
        self.state, self.cp, self.day = state, cp, day
        self._done: dict[tuple[int | None, int | None], dict[str, int]] = {}

    def of(self, tier: Tier) -> dict[str, int]:
        q = tier.qualify
        key = (q.window_days, q.window_months)
        found = self._done.get(key)
        if found is None:
            found = self._done[key] = measure(self.state, self.cp, tier, self.day)
        return found


def qualifies(state: PartnerState, cp: CompiledProgram, tier: Tier, day: dt.date,
              measures: Measures | None = None) -> bool:
    q = tier.qualify
    m = measures.of(tier) if measures is not None else measure(state, cp, tier, day)
    if m["net_sales"] < q.net_sales_min or m["certifications"] < q.certifications_min:
        return False
    avg_min = q.avg_satisfaction_min_x100
    if avg_min is None:
        return True
    # average * 100 >= minimum, compared exactly: sum * 100 >= minimum * count.
    return m["surveys"] >= q.surveys_min and m["survey_score_sum"] * 100 >= avg_min * m["surveys"]


def qualified_index(state: PartnerState, cp: CompiledProgram, day: dt.date,
                    measures: Measures | None = None, above: int = -1) -> int:
    """The highest tier the partner qualifies for; 0 (the entry tier) when none, or when
    none above ``above`` (tiers at or below it are not looked at)."""
    measures = measures or Measures(state, cp, day)
    for i in range(len(cp.tiers) - 1, max(above, 0), -1):
        if qualifies(state, cp, cp.tiers[i], day, measures):
            return i
    return 0


def _change(book: Book, cp: CompiledProgram, old: str | None, new: Tier, day: dt.date,
            why: str, leg: str) -> None:
    inputs: dict[str, InputValue] = {"from": old, "to": new.id}
    inputs.update(measure(book.state, cp, new, day))
    book.state.tiers[cp.program_id] = TierState(tier=new.id, since=book.occurred_at)
    book.record(
        RecordKind.TIER_CHANGE,
        cp.key,
        None,
        leg,
        [],
        Explanation(
            summary=f"Tier {old} -> {new.id}: {why}",
            formula="qualify: net_sales >= net_sales_min, certifications >= certifications_min,"
            " surveys >= surveys_min and score_sum * 100 >= avg_satisfaction_min_x100 * surveys",
            inputs=inputs,
        ),
    )


def upgrade(book: Book, cp: CompiledProgram, day: dt.date) -> None:
    """Move the partner up at once to the highest tier it qualifies for, if above its own."""
    if not cp.tiers:
        return
    old = current_tier(book.state, cp)
    here = cp.tier_index.get(old, 0) if old is not None else 0
    best = qualified_index(book.state, cp, day, above=here)
    if best > here:
        _change(book, cp, old, cp.tiers[best], day, "qualified for a higher tier", "tier")


def period_end(book: Book, cp: CompiledProgram, last_day: dt.date) -> None:
    """At a period end: count a period below the criteria, demote after the grace."""
    if not cp.tiers:
        return
    state = book.state
    old = current_tier(state, cp)
    here = cp.tier_index.get(old, 0) if old is not None else 0
    measures = Measures(state, cp, last_day)
    best = qualified_index(state, cp, last_day, measures)
    if best > here:
        _change(book, cp, old, cp.tiers[best], last_day, "qualified for a higher tier", "tier")
        return
    tier_state = state.tiers.get(cp.program_id)
    if here == 0 or tier_state is None:
        return
    if qualifies(state, cp, cp.tiers[here], last_day, measures):
        tier_state.below_periods = 0
        return
    tier_state.below_periods += 1
    grace = cp.tiers[here].grace_periods
    if tier_state.below_periods > grace:
        why = (
            f"below the criteria of {old} at {tier_state.below_periods} period end(s) in a "
            f"row, grace {grace}"
        )
        _change(book, cp, old, cp.tiers[best], last_day, why, "tier")
