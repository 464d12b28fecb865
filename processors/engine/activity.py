"""Surveys (satisfaction per score), trainings (points per course), partner profiles."""

import datetime as dt

from msgspec import UNSET

from ledger import core
from ledger.core import Explanation, InputValue, RecordKind
from processors.engine.book import Book
from processors.engine.compiled import CompiledProgram, CompiledRule
from processors.engine.periods import day_of, month_key, period_key
from processors.engine.sales import subject
from processors.engine.state import PartnerStatus, Profile, SurveyAgg, day_facts, month
from schemas.events import PartnerRegistered, PartnerUpdated, SurveyCompleted, TrainingCompleted
from schemas.programs import SatisfactionRule, TrainingRule


def record_survey(book: Book, event: SurveyCompleted, programs: list[CompiledProgram]) -> None:
    """Every survey counts in the month's facts; per-score rules pay or charge per survey
    on the program's own scale (surveys on another scale do not count for it)."""
    day = day_of(event.occurred_at)
    agg = month(book.state, month_key(day))
    survey = agg.surveys.setdefault(event.scale, SurveyAgg())
    survey.count += 1
    survey.score_sum += event.score
    if book.day_facts:
        daily = day_facts(book.state, day).surveys.setdefault(event.scale, SurveyAgg())
        daily.count += 1
        daily.score_sum += event.score
    for cp in programs:
        if cp.scale_name != event.scale:
            continue
        for cr in cp.rules:
            if isinstance(cr.rule, SatisfactionRule) and cr.rule.per_score is not None:
                _per_score(book, cp, cr, cr.rule, event, day)


def _per_score(book: Book, cp: CompiledProgram, cr: CompiledRule, rule: SatisfactionRule,
               event: SurveyCompleted, day: dt.date) -> None:
    score = rule.per_score
    assert score is not None and cr.period is not None and cr.asset is not None
    if not cr.eligible(subject(book, cp, cr, day)):
        return
    period = period_key(cr.period, day)
    inputs: dict[str, InputValue] = {
        "survey_id": event.survey_id,
        "score": event.score,
        "scale": event.scale,
        "good_at_least": score.good_at_least,
        "bad_at_most": score.bad_at_most,
        "period": period,
    }
    if event.score >= score.good_at_least and score.bonus:
        amount = book.limit(cp, cr, period, score.bonus, inputs)
        if amount > 0:
            inputs["amount"] = amount
            book.accrue(cp, cr, period, "survey:bonus", amount, Explanation(
                summary=f"Survey {event.survey_id} scored {event.score}: bonus",
                formula="bonus per survey with score >= good_at_least", inputs=inputs))
    elif event.score <= score.bad_at_most and score.penalty:
        inputs["amount"] = score.penalty
        book.take_back(
            RecordKind.PENALTY, cp.key, rule.id, "survey:penalty", cr.asset, score.penalty,
            Explanation(summary=f"Survey {event.survey_id} scored {event.score}: penalty",
                        formula="penalty per survey with score <= bad_at_most", inputs=inputs),
            to_account=core.program_penalty(cp.program_id),
        )


def record_training(book: Book, event: TrainingCompleted, programs: list[CompiledProgram]) -> None:
    """A passed course pays once per course and rule; a certification pays instead of the
    course amount, and counts (once per certification id) towards tier criteria."""
    if not event.passed:
        return
    day = day_of(event.occurred_at)
    if event.certification is not None and event.certification not in book.state.certifications:
        book.state.certifications[event.certification] = month_key(day)
        if book.day_facts:
            day_facts(book.state, day).certifications += 1
    for cp in programs:
        for cr in cp.rules:
            if isinstance(cr.rule, TrainingRule):
                _training(book, cp, cr, cr.rule, event, day)


def _training(book: Book, cp: CompiledProgram, cr: CompiledRule, rule: TrainingRule,
              event: TrainingCompleted, day: dt.date) -> None:
    assert cr.period is not None
    if rule.courses and event.course_id not in rule.courses:
        return
    key = f"{cp.program_id}|{rule.id}|{event.course_id}"
    if key in book.state.courses or not cr.eligible(subject(book, cp, cr, day)):
        return
    certified = event.certification is not None
    amount = rule.per_certification if certified else rule.per_course
    book.state.courses[key] = month_key(day)
    if amount == 0:
        return
    period = period_key(cr.period, day)
    inputs: dict[str, InputValue] = {
        "course_id": event.course_id,
        "certification": event.certification,
        "per_course": rule.per_course,
        "per_certification": rule.per_certification,
        "period": period,
    }
    amount = book.limit(cp, cr, period, amount, inputs)
    if amount <= 0:
        return
    inputs["amount"] = amount
    what = "certification" if certified else "course"
    book.accrue(cp, cr, period, f"course:{event.course_id}", amount, Explanation(
        summary=f"Completed {what} {event.course_id}",
        formula=f"per_{what}, once per course", inputs=inputs))


def register(book: Book, event: PartnerRegistered) -> None:
    book.state.profile = Profile(kind=event.kind, region=event.region, joined_on=event.joined_on,
                                 status=PartnerStatus(event.status), team=event.team,
                                 parent=event.parent_partner_id)


def update_profile(book: Book, event: PartnerUpdated) -> None:
    old = book.state.profile
    if old is None:
        # An update before the registration: start from what it says.
        old = Profile(kind="", region="", joined_on=day_of(event.occurred_at),
                      status=PartnerStatus.ACTIVE)
    if event.kind is not UNSET:
        old.kind = event.kind
    if event.region is not UNSET:
        old.region = event.region
    if event.joined_on is not UNSET:
        old.joined_on = event.joined_on
    if event.status is not UNSET:
        old.status = PartnerStatus(event.status)
    if event.team is not UNSET:
        old.team = event.team
    if event.parent_partner_id is not UNSET:
        old.parent = event.parent_partner_id
    book.state.profile = old
