"""Building drafts: postings for each kind of movement, kept in step with the state.

``Book`` collects the drafts of one engine call. Every movement goes through one of its
methods, which builds the ``Draft`` (ids come from ``ledger.core``), folds its partner
postings into ``PartnerState.available``/``pending``, and keeps holds, lots, rule counters
and this call's budget spend in step. Caps and the budget cut an award here, in one place,
and say so in the explanation.
"""

import bisect
import datetime as dt
import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Final

from ledger import core
from ledger.core import Draft, Explanation, InputValue, Posting, RecordKind
from processors.engine.compiled import CompiledProgram, CompiledRule, Subject
from processors.engine.periods import add_months, day_of
from processors.engine.state import (
    Hold,
    Lot,
    PartnerState,
    counter_key,
    hold_order,
    lot_order,
)

# Program spend so far per (program id, version), in minor units of the program currency:
# currency awards net of clawbacks, plus the unit cost of non-cash awards. The processor
# keeps it (from the spend projection) and adds ``spend_of`` of each result.
Budgets = Mapping[tuple[str, int], int]
ProgramKey = tuple[str, int]  # (program id, version)
NO_SPEND: Final[Budgets] = {}


class Book:
    def __init__(
        self,
        state: PartnerState,
        source_event_id: uuid.UUID,
        occurred_at: dt.datetime,
        recorded_at: dt.datetime,
        budgets: Budgets = NO_SPEND,
        spent: dict[tuple[str, int], int] | None = None,
    ) -> None:
        self.state = state
        self.partner_id = state.partner_id
        self.source_event_id = source_event_id
        self.occurred_at = occurred_at
        self.recorded_at = recorded_at
        self.budgets = budgets
        # Shared between the books of one period close, so the budget spans all partners.
        self.spent: dict[tuple[str, int], int] = {} if spent is None else spent
        self.drafts: list[Draft] = []
        # The program versions whose budget left cut an award of this call: how much it cut.
        self.short_of: dict[tuple[str, int], int] = {}
        # Whether daily facts are kept (a program measures a tier window in days).
        self.day_facts = False
        # The partner's two accounts, named once per book (``core`` checks the id).
        self.pending_account = core.partner_pending(self.partner_id)
        self.available_account = core.partner_available(self.partner_id)
        # Whether each draft is validated in full (``core.validate_draft``): for the drafts
        # of a period close, whose explanations grow with the number of partners; the
        # drafts of one event are bounded by the validated event they come from.
        self.checked = False
        # What eligibility looks at, per program and period kind, while the facts it is
        # computed from cannot change (the rules of one sale, after the sale is counted).
        self.subjects: dict[tuple[str, int, object, bool], Subject] | None = None

    # ------------------------------------------------------------------ the primitive

    def record(
        self,
        kind: RecordKind,
        program: ProgramKey | None,
        rule_id: str | None,
        leg: str,
        postings: list[Posting],
        explanation: Explanation,
        occurred_at: dt.datetime | None = None,
        source_event_ids: tuple[uuid.UUID, ...] = (),
    ) -> Draft:
        draft = core.built_draft(
            partner_id=self.partner_id,
            kind=kind,
            occurred_at=occurred_at or self.occurred_at,
            recorded_at=self.recorded_at,
            source_event_ids=source_event_ids or (self.source_event_id,),
            leg=leg,
            explanation=explanation,
            postings=tuple(p for p in postings if p.amount != 0),
            program_id=None if program is None else program[0],
            program_version=None if program is None else program[1],
            rule_id=rule_id,
        )
        if self.checked:
            core.validate_draft(draft)
        self._fold(draft)
        self.drafts.append(draft)
        return draft

    def _fold(self, draft: Draft) -> None:
        pending, available = self.pending_account, self.available_account
        for p in draft.postings:
            if p.account == pending:
                self.state.pending[p.asset] = self.state.pending.get(p.asset, 0) + p.amount
            elif p.account == available:
                self.state.available[p.asset] = self.state.available.get(p.asset, 0) + p.amount
            elif (
                draft.program_id is not None
                and draft.program_version is not None
                and p.account == _expense_account(draft.program_id)
                and core.asset_kind(p.asset) is core.AssetKind.CURRENCY
            ):
                key = (draft.program_id, draft.program_version)
                self.spent[key] = self.spent.get(key, 0) - p.amount

    # ------------------------------------------------------------------ budget and caps

    def budget_left(self, cp: CompiledProgram) -> int | None:
        budget = cp.program.budget
        if budget is None:
            return None
        return budget - self.budgets.get(cp.key, 0) - self.spent.get(cp.key, 0)

    def limit(
        self,
        cp: CompiledProgram,
        cr: CompiledRule,
        period: str,
        amount: int,
        inputs: dict[str, InputValue],
        budget_cost: int | None = None,
    ) -> int:
        """``amount`` cut to the rule's cap and the program budget; notes any cut in inputs.

        ``budget_cost`` is what the award costs the budget when it is not the amount itself
        (a non-cash award's unit cost); such an award is granted whole or not at all.
        A period whose gate failed at its close earns nothing more (a late event).
        """
        key = counter_key(cp.program_id, cr.rule.id, period)
        if key in self.state.gated:
            inputs.update(gated_in=self.state.gated[key], cut_by_gate=amount)
            return 0
        if cr.cap is not None:
            used = self.state.counters.get(counter_key(cp.program_id, cr.rule.id, period), 0)
            room = max(cr.cap - used, 0)
            if amount > room:
                inputs.update(cap=cr.cap, cap_used_before=used, cut_by_cap=amount - room)
                amount = room
        left = self.budget_left(cp)
        if left is not None and amount > 0:
            if budget_cost is not None:
                if budget_cost > left:
                    inputs.update(budget_left=max(left, 0), cut_by_budget=amount)
                    self._cut(cp.key, budget_cost - max(left, 0))
                    return 0
            elif cr.asset == cp.currency and amount > left:
                inputs.update(budget_left=max(left, 0), cut_by_budget=amount - max(left, 0))
                self._cut(cp.key, amount - max(left, 0))
                amount = max(left, 0)
        return amount

    def _cut(self, key: tuple[str, int], amount: int) -> None:
        self.short_of[key] = self.short_of.get(key, 0) + amount

    # ------------------------------------------------------------------ movements

    def accrue(
        self,
        cp: CompiledProgram,
        cr: CompiledRule,
        period: str,
        leg: str,
        amount: int,
        explanation: Explanation,
        budget_cost: int = 0,
    ) -> Draft:
        """Program expense -> partner, pending when the rule holds, counted for caps."""
        assert amount > 0 and cr.asset is not None, (amount, cr.rule.id)
        asset = cr.asset
        target = self.pending_account if cr.hold_days else self.available_account
        draft = self.record(
            RecordKind.ACCRUAL,
            cp.key,
            cr.rule.id,
            leg,
            [
                Posting(cp.expense_account, asset, -amount),
                Posting(target, asset, amount),
            ],
            explanation,
        )
        if budget_cost:
            self.spent[cp.key] = self.spent.get(cp.key, 0) + budget_cost
        key = counter_key(cp.program_id, cr.rule.id, period)
        self.state.counters[key] = self.state.counters.get(key, 0) + amount
        expiry = lot_expiry_months(cp, asset)
        if cr.hold_days:
            bisect.insort(
                self.state.holds,
                Hold(
                    record_id=draft.record_id,
                    source_event_id=draft.source_event_ids[0],
                    leg=leg,
                    program_id=cp.program_id,
                    version=cp.version,
                    rule_id=cr.rule.id,
                    asset=asset,
                    left=amount,
                    release_at=draft.occurred_at + dt.timedelta(days=cr.hold_days),
                    lot_expiry_months=expiry,
                    period=period,
                ),
                key=hold_order,
            )
        elif expiry is not None:
            self.add_lot(draft, asset, amount, expiry)
        return draft

    def add_lot(self, draft: Draft, asset: str, amount: int, expiry_months: int) -> None:
        assert draft.program_id is not None and draft.program_version is not None
        day = day_of(draft.occurred_at)
        bisect.insort(
            self.state.lots,
            Lot(
                record_id=draft.record_id,
                source_event_id=draft.source_event_ids[0],
                leg=draft.leg,
                program_id=draft.program_id,
                version=draft.program_version,
                rule_id=draft.rule_id,
                asset=asset,
                left=amount,
                available_on=day,
                expires_on=add_months(day, expiry_months),
            ),
            key=lot_order,
        )

    def take_back(
        self,
        kind: RecordKind,
        program: ProgramKey,
        rule_id: str,
        leg: str,
        asset: str,
        amount: int,
        explanation: Explanation,
        hold_record: uuid.UUID | None = None,
        to_account: str | None = None,
        source_event_ids: tuple[uuid.UUID, ...] = (),
        holds: Callable[[Hold], bool] | None = None,
    ) -> Draft:
        """Partner -> program (a clawback or a penalty): from the named hold while it still
        holds something (or from the holds ``holds`` picks, soonest released first), the
        rest from available (which may go negative)."""
        assert amount > 0, amount
        from_pending = 0
        if hold_record is not None:
            hold = next((h for h in self.state.holds if h.record_id == hold_record), None)
            if hold is not None:
                from_pending = min(amount, hold.left)
                hold.left -= from_pending
                if hold.left == 0:
                    self.state.holds.remove(hold)
        elif holds is not None:
            from_pending = self._from_holds(asset, amount, holds)
        from_available = amount - from_pending
        if from_available:
            consume_lots(self.state, asset, from_available)
        account = to_account or _expense_account(program[0])
        return self.record(
            kind,
            program,
            rule_id,
            leg,
            [
                Posting(self.pending_account, asset, -from_pending),
                Posting(self.available_account, asset, -from_available),
                Posting(account, asset, amount),
            ],
            explanation,
            source_event_ids=source_event_ids,
        )

    def _from_holds(self, asset: str, amount: int, picks: Callable[[Hold], bool]) -> int:
        taken = 0
        chosen = sorted((h for h in self.state.holds if h.asset == asset and picks(h)),
                        key=lambda h: (h.release_at, str(h.record_id)))
        for hold in chosen:
            if taken == amount:
                break
            part = min(hold.left, amount - taken)
            hold.left -= part
            taken += part
        self.state.holds = [h for h in self.state.holds if h.left > 0]
        return taken

    def spend_available(
        self,
        kind: RecordKind,
        program: ProgramKey | None,
        rule_id: str | None,
        leg: str,
        asset: str,
        amount: int,
        to_account: str,
        explanation: Explanation,
    ) -> Draft:
        """Partner available -> a system account (payout, redemption, adjustment down)."""
        consume_lots(self.state, asset, amount)
        return self.record(
            kind,
            program,
            rule_id,
            leg,
            [
                Posting(self.available_account, asset, -amount),
                Posting(to_account, asset, amount),
            ],
            explanation,
        )


@functools.lru_cache(maxsize=256)
def _expense_account(program_id: str) -> str:
    return core.program_expense(program_id)


def lot_expiry_months(cp: CompiledProgram, asset: str) -> int | None:
    """Months until units of ``asset`` expire once available; None: they do not."""
    if asset == cp.points_asset and cp.points_rule is not None:
        return cp.points_rule.expiry_months
    if asset == cp.mdf_asset and cp.mdf_rule is not None:
        return cp.mdf_rule.expiry_months
    return None


def consume_lots(state: PartnerState, asset: str, amount: int) -> None:
    """Spend expiring units first, those expiring soonest first (best for the partner)."""
    for lot in state.lots:
        if amount == 0:
            break
        if lot.asset != asset or lot.left == 0:
            continue
        used = min(lot.left, amount)
        lot.left -= used
        amount -= used
    state.lots = [lot for lot in state.lots if lot.left > 0]


def spend_of(drafts: list[Draft], cp: CompiledProgram) -> int:
    """What ``drafts`` cost the budget of ``cp`` in program currency (clawbacks count
    negative); non-cash awards count their ``unit_cost``. Add it to ``Budgets``."""
    expense = cp.expense_account
    total = 0
    for draft in drafts:
        if (draft.program_id, draft.program_version) != cp.key:
            continue
        for p in draft.postings:
            if p.account == expense and p.asset == cp.currency:
                total -= p.amount
        cost = draft.explanation.inputs.get("budget_cost")
        if isinstance(cost, int) and not isinstance(cost, bool):
            total += cost
    return total
