"""Period close: the awards that need a whole period, and tier demotions.

``close_period("2026-03", program, states)`` closes the month 2026-03 for one program
version, and with it every period of a rule that ends with that month (the quarter
2026-Q1 for quarterly rules; the year only in December). It is a pure function of the
partners' states:

- Ids: every record's source event is the close id, ``uuid5(CLOSE_NAMESPACE,
  "close:<program_id>:<version>:<YYYY-MM>")``, so closing twice from the same states
  yields identical records, and the ledger skips them as known.
- The returned states mark the close (``PartnerState.closed``); a partner already marked
  gets nothing more and its state is returned unchanged, so feeding a close its own output
  is harmless. Values for comparisons (rankings, pools) still use every state given.
- Dating: records of a close belong to the month closed and are dated at its last instant,
  ``CLOSE_AT_BEFORE_NEXT`` (1 µs, the precision the ledger hashes) before 00:00 UTC of the
  next month, e.g. 2026-01-31T23:59:59.999999Z for January; each carries the month in its
  explanation (``inputs.closed_period``). So a balance or a statement "as of" the month's
  last day, which counts every record dated up to the end of that day, includes the
  month's own awards, and every sale of the month precedes them. Holds start there.
- Late events: a sale after the close still earns its per-sale rewards and counts in its
  month's facts, but closed period awards are final and are not recomputed.
- Tiers: at the end of the program's own period, a partner below its tier's criteria
  counts one period below; after ``grace_periods`` of them it moves down to the highest
  tier it qualifies for. Upgrades found at the close are applied too.
- Budget: ``budgets`` is spend so far (see ``book.Budgets``); ``close.awards`` says how
  ``stop`` and ``prorate`` cut the awards of the close.
"""

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Final

import msgspec

from ledger.core import Draft, Explanation, RecordKind
from processors.engine.book import NO_SPEND, Book, Budgets
from processors.engine.close import gates
from processors.engine.close.awards import Award, cap, fit_budget
from processors.engine.close.competitions import pool_share, ranking, team_competition
from processors.engine.close.context import Close
from processors.engine.close.goals import growth_bonus, target_attainment
from processors.engine.close.multiplier import multipliers
from processors.engine.close.overrides import override
from processors.engine.close.rebates import non_cash_award, volume_rebate
from processors.engine.compiled import CompiledProgram, CompiledRule
from processors.engine.periods import ends_with_month, month_start, period_last_day, start_of_day
from processors.engine.state import (
    ClosedPeriod,
    PartnerState,
    copy_state,
    is_closed,
    mark_closed,
)
from processors.engine.tiers import period_end
from schemas.programs import (
    GrowthBonusRule,
    NonCashAwardRule,
    OverrideRule,
    PoolShareRule,
    RankingRule,
    TargetAttainmentRule,
    TeamCompetitionRule,
    VolumeRebateRule,
)
from schemas.programs import Period as PeriodKind

CLOSE_NAMESPACE: Final = uuid.UUID("4d3b8a57-1f0e-5c6b-9a7d-2e8f0c1b3a90")
CLOSE_AT_BEFORE_NEXT: Final = dt.timedelta(microseconds=1)


class CloseResult(msgspec.Struct, frozen=True, kw_only=True):
    """Drafts per partner (only partners with records), and every partner's new state."""

    drafts: dict[str, list[Draft]]
    states: dict[str, PartnerState]


def close_id(program: CompiledProgram, period: str) -> uuid.UUID:
    return uuid.uuid5(CLOSE_NAMESPACE, f"close:{program.program_id}:{program.version}:{period}")


def close_at(period: str) -> dt.datetime:
    """The moment every record of the close of month ``period`` is dated: its last instant."""
    last_day = period_last_day(PeriodKind.MONTH, month_start(period))
    return start_of_day(last_day + dt.timedelta(days=1)) - CLOSE_AT_BEFORE_NEXT


def _in_period(draft: Draft, period: str) -> Draft:
    """The draft with the month it was closed in named in its explanation."""
    inputs = {**draft.explanation.inputs, "closed_period": period}
    return msgspec.structs.replace(
        draft, explanation=msgspec.structs.replace(draft.explanation, inputs=inputs))


def close_key(program: CompiledProgram, period: str) -> ClosedPeriod:
    return ClosedPeriod(program.program_id, program.version, period)


def close_period(
    period: str,
    program: CompiledProgram,
    states: Mapping[str, PartnerState],
    *,
    budgets: Budgets = NO_SPEND,
    recorded_at: dt.datetime | None = None,
    owned: bool = False,
) -> CloseResult:
    """Close ``period`` for ``program`` over ``states``; the states given are not changed,
    unless ``owned``: a caller holding the only references (the runner) gives them up,
    which spares a deep copy of every partner's state at every close."""
    month = month_start(period)
    last_day = period_last_day(PeriodKind.MONTH, month)
    at = close_at(period)
    out = {pid: states[pid] if owned else copy_state(states[pid]) for pid in sorted(states)}
    if not program.effective_on(last_day):
        return CloseResult(drafts={}, states=out)
    key = close_key(program, period)
    ctx = Close(program, last_day, out)
    awards = [a for a in _awards(ctx, out) if not is_closed(out[a.partner_id], key)]
    fit_budget(program, awards, budgets.get(program.key, 0))
    source = close_id(program, period)
    spent: dict[tuple[str, int], int] = {}
    drafts: dict[str, list[Draft]] = {}
    for pid, state in out.items():
        if is_closed(state, key):
            continue
        book = Book(state, source, at, recorded_at or at, budgets, spent)
        book.checked = True
        _post(book, program, [a for a in awards if a.partner_id == pid], ctx)
        if ends_with_month(program.program.period, last_day):
            period_end(book, program, last_day)
        mark_closed(state, key)
        if book.drafts:
            drafts[pid] = [_in_period(d, period) for d in book.drafts]
    return CloseResult(drafts=drafts, states=out)


def _awards(ctx: Close, states: Mapping[str, PartnerState]) -> list[Award]:
    awards: list[Award] = []
    for cr in ctx.cp.rules:
        if not ctx.ends(cr):
            continue
        made = _rule_awards(ctx, cr)
        # A rule may make several awards for one partner (an override per seller).
        taken: dict[str, int] = {}
        for award in made:
            cap(award, states[award.partner_id], ctx.cp, ctx.period_key(cr),
                taken.get(award.partner_id, 0))
            if award.amount > 0:
                taken[award.partner_id] = taken.get(award.partner_id, 0) + award.amount
        awards += made
    failed = gates.failures(ctx)
    if failed:
        gates.withhold(awards, failed)
        awards += gates.take_backs(ctx, failed)
    scaled = multipliers(ctx, awards)
    gates.withhold(scaled, failed)
    return awards + scaled


def _rule_awards(ctx: Close, cr: CompiledRule) -> list[Award]:
    rule = cr.rule
    if isinstance(rule, VolumeRebateRule):
        return volume_rebate(ctx, cr, rule)
    if isinstance(rule, RankingRule):
        return ranking(ctx, cr, rule)
    if isinstance(rule, TeamCompetitionRule):
        return team_competition(ctx, cr, rule)
    if isinstance(rule, PoolShareRule):
        return pool_share(ctx, cr, rule)
    if isinstance(rule, NonCashAwardRule):
        return non_cash_award(ctx, cr, rule)
    if isinstance(rule, TargetAttainmentRule):
        return target_attainment(ctx, cr, rule)
    if isinstance(rule, GrowthBonusRule):
        return growth_bonus(ctx, cr, rule)
    if isinstance(rule, OverrideRule):
        return override(ctx, cr, rule)
    return []


def _post(book: Book, cp: CompiledProgram, awards: list[Award], ctx: Close) -> None:
    made: dict[str, uuid.UUID] = {}
    for a in awards:
        period = ctx.period_key(a.rule)
        if a.settle is not None:
            a.settle(book.state, a.amount)
        inputs = dict(a.inputs)
        if a.note:
            book.record(RecordKind.NOTE, cp.key, a.rule_id, a.leg, [],
                        Explanation(summary=a.summary, formula=a.formula, inputs=inputs))
            continue
        inputs["amount"] = a.amount
        if a.unit_cost and a.amount > 0:
            inputs["budget_cost"] = a.budget_cost
        explanation = Explanation(summary=a.summary, formula=a.formula, inputs=inputs,
                                  rounding=a.rounding)
        if a.amount > 0:
            rule = a.rule._replace(asset=a.asset, hold_days=a.hold_days)
            draft = book.accrue(cp, rule, period, a.leg, a.amount, explanation,
                                budget_cost=a.budget_cost)
            made[a.rule_id] = draft.record_id
        elif a.amount < 0:
            target = str(a.inputs.get("target_rule", ""))
            book.take_back(RecordKind.CLAWBACK, cp.key, a.rule_id, a.leg, a.asset, -a.amount,
                           explanation, hold_record=None if a.holds else made.get(target),
                           holds=a.holds)


__all__ = [
    "CLOSE_AT_BEFORE_NEXT", "CLOSE_NAMESPACE", "CloseResult", "close_at", "close_id", "close_key",
    "close_period",
]
