"""``apply``: one event or command, one partner, the programs in effect -> drafts and state."""

import datetime as dt
from collections.abc import Sequence

from processors.engine import activity, commands
from processors.engine.book import NO_SPEND, Book, Budgets
from processors.engine.compiled import CompiledProgram
from processors.engine.periods import day_of
from processors.engine.results import Refusal, Result
from processors.engine.reversals import reverse_sale
from processors.engine.sales import record_sale
from processors.engine.state import PartnerState, copy_state
from processors.engine.targets import set_target
from processors.engine.tiers import upgrade
from schemas.commands import (
    AdjustBalance,
    ApproveClaim,
    ClaimFunds,
    ClosePeriod,
    RecordPayout,
    RedeemPoints,
    RejectClaim,
    TargetsSet,
)
from schemas.events import (
    PartnerRegistered,
    PartnerUpdated,
    SaleRecorded,
    SaleReversed,
    SurveyCompleted,
    TrainingCompleted,
)

Input = (
    SaleRecorded
    | SaleReversed
    | SurveyCompleted
    | TrainingCompleted
    | PartnerRegistered
    | PartnerUpdated
    | RecordPayout
    | RedeemPoints
    | AdjustBalance
    | ClaimFunds
    | ApproveClaim
    | RejectClaim
    | TargetsSet
)


# Inputs whose refusals are all decided before the state is changed.
_REFUSED_BEFORE_CHANGE = (
    SaleRecorded, SaleReversed, SurveyCompleted, TrainingCompleted, PartnerRegistered,
    PartnerUpdated,
)


def in_effect(programs: Sequence[CompiledProgram], day: dt.date) -> list[CompiledProgram]:
    """The programs effective on ``day``: per program id the highest version effective
    that day (a new version replaces the old from its effective date), ordered by program
    id, which is the order their rules pay in, whatever the caller's order."""
    newest: dict[str, CompiledProgram] = {}
    for cp in programs:
        if cp.effective_on(day):
            held = newest.get(cp.program_id)
            if held is None or cp.version > held.version:
                newest[cp.program_id] = cp
    return [newest[pid] for pid in sorted(newest)]


def apply(
    state: PartnerState,
    event: Input,
    programs: Sequence[CompiledProgram],
    *,
    budgets: Budgets = NO_SPEND,
    recorded_at: dt.datetime | None = None,
    owned: bool = False,
) -> Result:
    """Apply one event or command of ``state``'s partner.

    ``programs`` are the compiled versions the caller holds; those effective on the event's
    day (UTC) are used. ``budgets`` is program spend so far (see ``book.Budgets``).
    ``recorded_at`` stamps the drafts (default: the event's ``occurred_at``; the writer
    may stamp its own, ids do not depend on it). The given state is never changed, unless
    ``owned``: a caller that holds the only reference (the runner) gives it up and events
    change it in place, which spares a deep copy per event. Events are only refused before
    they change anything, so this is safe for them; commands are still copied.
    """
    assert not isinstance(event, ClosePeriod), "period closes go to close_period"
    assert event.partner_id == state.partner_id, (event.partner_id, state.partner_id)
    in_place = owned and isinstance(event, _REFUSED_BEFORE_CHANGE)
    new = state if in_place else copy_state(state)
    book = Book(new, event.event_id, event.occurred_at, recorded_at or event.occurred_at,
                budgets)
    book.day_facts = any(cp.day_window for cp in programs)
    day = day_of(event.occurred_at)
    active = in_effect(programs, day)
    refusal = (set_target(book, event, programs) if isinstance(event, TargetsSet)
               else _dispatch(book, event, active))
    if refusal is not None:
        return Result(drafts=[], state=state, refusal=refusal)
    if isinstance(event, (SaleRecorded, SaleReversed, SurveyCompleted, TrainingCompleted)):
        for cp in active:
            upgrade(book, cp, day)
    return Result(drafts=book.drafts, state=new, short_of=book.short_of)


def _dispatch(book: Book, event: Input, active: list[CompiledProgram]) -> Refusal | None:
    match event:
        case SaleRecorded():
            return record_sale(book, event, active)
        case SaleReversed():
            return reverse_sale(book, event)
        case SurveyCompleted():
            activity.record_survey(book, event, active)
        case TrainingCompleted():
            activity.record_training(book, event, active)
        case PartnerRegistered():
            activity.register(book, event)
        case PartnerUpdated():
            activity.update_profile(book, event)
        case RecordPayout():
            return commands.record_payout(book, event)
        case RedeemPoints():
            return commands.redeem_points(book, event, active)
        case AdjustBalance():
            return commands.adjust_balance(book, event, active)
        case ClaimFunds():
            return commands.claim_funds(book, event, active)
        case ApproveClaim():
            return commands.approve_claim(book, event, active)
        case RejectClaim():
            return commands.reject_claim(book, event)
    return None
