"""What the ledger stage hands the projections: the typed facts of a batch (`batch`), and the
same facts for every partner when the projections are checked or rebuilt (`StoredFacts`).

The projections never read the engine's state JSON (projections/facts.py). This module is
the one place that turns engine state into their typed values: the profile, the activity
per month that leaderboards rank, and per program in force the tier and the gap to the
next tier per criterion, measured with the engine's own tier functions so that the
figures finance reads are the ones the engine decides with. For a check or a rebuild the
command line feeds every stored state through `partner_facts` (incentives/cli_projections.py).

Cost on the hot path: once per partner a batch touched (not per event), one measure of the
next tier per program with tiers, and only the months the batch's messages fall in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from processors.engine import CompiledProgram, PartnerState, in_effect
from processors.engine.periods import add_months, month_key
from processors.engine.runner import Outcome
from processors.engine.state import MONTHS_KEPT, MonthAgg
from processors.engine.tiers import current_tier, measure
from processors.intake.batch import Accepted
from projections.facts import (
    Activity,
    Batch,
    Criterion,
    PartnerFacts,
    Profile,
    Refusal,
    Source,
    TierProgress,
)
from schemas.commands import ALL_PARTNER_COMMANDS
from schemas.events import PartnerRegistered, PartnerUpdated
from schemas.programs import Metric, Tier
from schemas.streams import Message


def batch(
    messages: Sequence[Message],
    outcome: Outcome,
    states: Mapping[str, PartnerState],
    programs: Sequence[CompiledProgram],
    accepted: Sequence[Accepted] = (),
) -> Batch:
    """The projections' input for one batch of the ledger stage."""
    months: dict[str, set[str]] = {}
    profiled: set[str] = set()
    for m in messages:
        if isinstance(m, ALL_PARTNER_COMMANDS):
            continue
        months.setdefault(m.partner_id, set()).add(month_key(m.occurred_at.astimezone(dt.UTC)))
        if isinstance(m, PartnerRegistered | PartnerUpdated):
            profiled.add(m.partner_id)
    facts = [
        partner_facts(states[pid], programs, months.get(pid, set()), pid in profiled)
        for pid in sorted(outcome.touched)
    ]
    refusals = [
        Refusal(event_id=r.message.event_id, partner_id=r.message.partner_id,
                event_type=type(r.message).__name__, code=r.refusal.code.value,
                path=r.refusal.path, message=r.refusal.message,
                occurred_at=r.message.occurred_at)
        for r in outcome.refused
    ]
    sources = [Source(topic=a.topic, partition=a.partition, offset=a.offset,
                      occurred_at=a.message.occurred_at) for a in accepted]
    return Batch(records=outcome.records, facts=facts, refusals=refusals, sources=sources)


def partner_facts(state: PartnerState, programs: Sequence[CompiledProgram],
                  months: Iterable[str] | None, with_profile: bool = True) -> PartnerFacts:
    """The facts of one partner; ``months`` None means every month the state holds."""
    keys = sorted(state.months) if months is None else sorted(set(months) & set(state.months))
    profile = state.profile
    return PartnerFacts(
        partner_id=state.partner_id,
        profile=None if profile is None or not with_profile else Profile(
            kind=profile.kind, region=profile.region, joined_on=profile.joined_on,
            status=profile.status, team=profile.team),
        tiers=tuple(_tiers(state, programs)),
        activity=tuple(a for key in keys for a in _activity(key, state.months[key])),
        activity_from=_remembered_from(state),
    )


def _remembered_from(state: PartnerState) -> str | None:
    if state.pruned_on is None:
        return None
    first = dt.date(state.pruned_on.year, state.pruned_on.month, 1)
    return month_key(add_months(first, -MONTHS_KEPT + 1))


def _activity(key: str, agg: MonthAgg) -> Iterable[Activity]:
    for currency in sorted(agg.net):
        yield Activity(month=key, metric=Metric.NET_SALES.value, currency=currency,
                       value=sum(agg.net[currency].values()), reached_at=agg.last_sale_at)
    for currency in sorted(agg.units):
        yield Activity(month=key, metric=Metric.UNITS.value, currency=currency,
                       value=sum(agg.units[currency].values()), reached_at=agg.last_sale_at)
    if agg.new_customers:
        yield Activity(month=key, metric=Metric.NEW_CUSTOMERS.value, currency="",
                       value=agg.new_customers, reached_at=agg.last_new_customer_at)


def _tiers(state: PartnerState, programs: Sequence[CompiledProgram]) -> Iterable[TierProgress]:
    day = state.pruned_on  # the day of the partner's latest input (``due`` prunes to it)
    if day is None:
        return
    for cp in in_effect(programs, day):
        if not cp.tiers:
            continue
        tier = current_tier(state, cp)
        assert tier is not None
        here = cp.tier_index.get(tier, 0)
        held = state.tiers.get(cp.program_id)
        nxt = cp.tiers[here + 1] if here + 1 < len(cp.tiers) else None
        yield TierProgress(
            program_id=cp.program_id, program_version=cp.version, tier=tier,
            since=held.since if held is not None else None,
            below_periods=held.below_periods if held is not None else 0,
            next_tier=None if nxt is None else nxt.id,
            window_months=None if nxt is None else nxt.qualify.window_months,
            measured_on=day,
            criteria=() if nxt is None else _criteria(state, cp, nxt, day),
        )


def _criteria(state: PartnerState, cp: CompiledProgram, tier: Tier, day: dt.date
              ) -> tuple[Criterion, ...]:
    q, m = tier.qualify, measure(state, cp, tier, day)
    out = [
        _criterion("net_sales", q.net_sales_min, m["net_sales"]),
        _criterion("certifications", q.certifications_min, m["certifications"]),
    ]
    if q.avg_satisfaction_min_x100 is not None:
        count, total = m["surveys"], m["survey_score_sum"]
        out.append(_criterion("surveys", q.surveys_min, count))
        out.append(_criterion("avg_satisfaction_x100", q.avg_satisfaction_min_x100,
                              total * 100 // count if count else 0))
    return tuple(out)


def _criterion(name: str, required: int, actual: int) -> Criterion:
    return Criterion(name=name, required=required, actual=actual, gap=max(required - actual, 0))
