"""The program engine: pure functions from (partner state, event, programs) to ledger drafts.

No I/O, no clock, no Kafka or PostgreSQL: time comes from events (``occurred_at``) or from
the caller (``due(as_of)``). Program documents are compiled once per version
(``compile_program``) into closures; nothing from a document is evaluated.

Public API
----------
- ``compile_program(program) -> CompiledProgram``: once per program version.
- ``apply(state, event, programs, *, budgets={}, recorded_at=None) -> Result``: one event
  (SaleRecorded, SaleReversed, SurveyCompleted, TrainingCompleted, PartnerRegistered,
  PartnerUpdated) or command (RecordPayout, RedeemPoints, AdjustBalance, ClaimFunds,
  ApproveClaim, RejectClaim, TargetsSet) of the state's partner. ``Result(drafts, state,
  refusal)``; a refused input (``Refusal`` with a ``RefusalCode``: insufficient balance,
  unknown order, reversal exceeding the sale, ...) has no drafts and the state it was given.
- ``close_period("YYYY-MM", program, states, *, budgets={}) -> CloseResult(drafts, states)``:
  period awards of every rule whose period ends with that month, and tier demotions.
- ``due(state, as_of) -> Result``: holds that ended and points/funds that expired;
  ``next_due(state)``: when that will next post something.
- ``spend_of(drafts, program)``: what drafts cost a program's budget, to keep ``Budgets``.
- ``PartnerState``, ``new_state``, ``encode_state``/``decode_state`` (JSON for storage);
  ``OrderState`` and ``encode_order``/``decode_order``: the worker stores orders apart.

Decisions (the rules of docs/programs.md, and what they leave open)
-------------------------------------------------------------------
- Money is ``int`` minor units; rates basis points; ``amount = round_half_even(base *
  rate_bp / 10000)`` in integers, once per posting; each explanation records inputs, the
  formula and ``Rounding(exact, result)`` (exact as a finite decimal or a reduced fraction).
- One record per sale line and rule (leg ``line:<line_id>``), so a reversal can take back
  exactly what that line earned (``reversals``); ids are ``ledger.core.derive_record_id``
  of the triggering event, program, rule and leg. Period closes use a derived close id.
- Programs in effect: per program id, the newest version effective on the event's UTC
  day; sales in another currency than a program's earn nothing from it.
- Tiers: a sale earns at the tier held when it was made; the upgrade it triggers follows
  it. Demotion only at the end of the program's period, after ``grace_periods``.
- Eligibility needs a registered, ``active`` partner; region and kind are the partner's.
  Tenure is whole months since ``joined_on`` at the event's day (at a close: its last day).
- Caps: per partner, rule and period, on what was paid net of clawbacks; the line (or
  award) that reaches the cap is cut, later ones get nothing, each cut explained.
- Budget (program currency; points and funds do not count; non-cash awards count their
  ``unit_cost``): spend so far is an input, ``Budgets`` = {(program id, version): spent},
  kept by the processor from the spend projection plus ``spend_of`` of each result.
  Per-event awards are cut at the budget under both policies (they cannot be prorated
  later); at a close ``stop`` pays in rule and rank/partner order until the budget is
  reached, ``prorate`` scales cash awards to what is left by largest remainder.
- Threshold bonus clawback: when a reversal brings the bonus period's value below the
  level (the period's metric less what later periods reversed of its own sales).
- New-customer clawback: when the order's remaining net amount drops below
  ``first_order_min``; the customer stays counted.
- Points and funds: a lot starts on the day units become available (after any hold) and
  expires at 00:00 UTC on that day plus ``expiry_months`` (same day or month end):
  spendable through the day before. Spending uses the soonest-expiring lot first.
- Fund claims above ``auto_approve_max`` reserve their amount until approved or rejected.
- Holds end at ``release_at`` inclusive (``due``); a clawback of a held amount shrinks the
  hold (pending), the rest comes from available, which may go negative; payouts and
  redemptions are refused beyond available.
- Drafts are stamped ``recorded_at`` = the event time unless the caller passes one; ids
  never depend on it.
- State is bounded in time (``state.prune``, run by ``due``); see ``state``.
- Goals (``close.goals``, ``close.gates``, ``close.overrides``): target attainment, growth,
  gates and two-tier overrides settle at the period close, the one place where every
  partner's state is at hand: an override pays one partner (the distributor) from the
  facts of others (the partners below it), whose events other workers may apply. Each
  reads the running monthly facts (O(1) to keep per event); nothing is kept per sale for
  them. Decisions that move no value (a target set, an award not earned or withheld) are
  ``note`` records.

Modules: ``money`` (rounding, largest remainder), ``periods``, ``state``, ``compiled``,
``book`` (postings, holds, lots, caps, budget), ``metrics``, ``tiers``, ``sales``,
``reversals``, ``activity`` (surveys, trainings, profiles), ``commands``, ``targets``,
``hierarchy``, ``due``, ``apply``, and ``close`` (``awards``, ``rebates``,
``competitions``, ``multiplier``, ``goals``, ``gates``, ``overrides``).
"""

from processors.engine.apply import Input, apply, in_effect
from processors.engine.book import NO_SPEND, Budgets, spend_of
from processors.engine.close import CloseResult, close_id, close_period
from processors.engine.compiled import CompiledProgram, compile_program
from processors.engine.due import due, next_due
from processors.engine.results import Refusal, RefusalCode, Result
from processors.engine.state import (
    OrderState,
    PartnerState,
    decode_order,
    decode_state,
    encode_order,
    encode_state,
    new_state,
)

__all__ = [
    "NO_SPEND",
    "Budgets",
    "CloseResult",
    "CompiledProgram",
    "Input",
    "OrderState",
    "PartnerState",
    "Refusal",
    "RefusalCode",
    "Result",
    "apply",
    "close_id",
    "close_period",
    "compile_program",
    "decode_order",
    "decode_state",
    "due",
    "next_due",
    "encode_order",
    "encode_state",
    "in_effect",
    "new_state",
    "spend_of",
]
