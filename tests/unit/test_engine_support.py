"""Builders shared by the engine tests (no tests here): programs from YAML text, events,
and a runner that feeds a partner's events through the engine and keeps its ledger."""

from __future__ import annotations

import datetime as dt
import textwrap
import uuid
from collections.abc import Iterable, Sequence

from ledger.balances import fold
from ledger.core import Chain, Draft, Record
from processors.engine import (
    Budgets,
    CompiledProgram,
    PartnerState,
    Result,
    apply,
    compile_program,
    due,
    new_state,
)
from schemas.commands import (
    AdjustBalance,
    ApproveClaim,
    ClaimFunds,
    RecordPayout,
    RedeemPoints,
    RejectClaim,
    TargetsSet,
)
from schemas.events import (
    PartnerRegistered,
    ReversalLine,
    SaleLine,
    SaleRecorded,
    SaleReversed,
    SurveyCompleted,
    TrainingCompleted,
)
from schemas.program_loader import parse_program

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
NS = uuid.UUID("6f0c2f49-8d57-4a53-9d0b-6a3f3e1d2c11")

HEADER = """\
program_id: {program_id}
version: {version}
name: Test program
currency: EUR
effective_from: 2026-01-01
effective_to: 2026-12-31
period: {period}
{budget}categories: [hardware, software, services, support]
"""


def program(rules: str, *, tiers: str = "", period: str = "quarter", budget: str = "",
            program_id: str = "prog", version: int = 1,
            categories: bool = True) -> CompiledProgram:
    """A compiled program from the YAML text of its rules (and tiers); ``categories=False``
    leaves out the program's list of categories (any category then)."""
    text = HEADER.format(program_id=program_id, version=version, period=period,
                         budget=textwrap.dedent(budget).strip() + "\n" if budget else "")
    if not categories:
        text = text.replace("categories: [hardware, software, services, support]\n", "")
    if tiers:
        text += "tiers:\n" + textwrap.indent(textwrap.dedent(tiers).strip(), "  ") + "\n"
    text += "rules:\n" + textwrap.indent(textwrap.dedent(rules).strip(), "  ") + "\n"
    return compile_program(parse_program(text.encode(), "test.yaml").program)


def eid(name: str) -> uuid.UUID:
    return uuid.uuid5(NS, name)


def registered(partner: str = "P1", *, at: dt.datetime = T0, kind: str = "distributor",
               region: str = "DE", joined_on: dt.date = dt.date(2025, 1, 1),
               team: str | None = None, status: str = "active",
               parent: str | None = None) -> PartnerRegistered:
    return PartnerRegistered(event_id=eid(f"reg:{partner}"), occurred_at=at, partner_id=partner,
                             kind=kind, region=region, joined_on=joined_on,  # type: ignore[arg-type]
                             status=status, team=team,  # type: ignore[arg-type]
                             parent_partner_id=parent)


def target(period: str, value: int, *, metric: str = "net_sales", partner: str = "P1",
           at: dt.datetime = T0, program: str = "prog", n: int = 0) -> TargetsSet:
    return TargetsSet(event_id=eid(f"target:{partner}:{period}:{metric}:{n}"), occurred_at=at,
                      partner_id=partner, program_id=program, period=period,
                      metric=metric, value=value, set_by="finance.lee")  # type: ignore[arg-type]


def sale(order: str, lines: Sequence[tuple[str, int, int]], *, partner: str = "P1",
         at: dt.datetime = T0, customer: str = "C1", new_customer: bool = False,
         currency: str = "EUR") -> SaleRecorded:
    """lines: (category, quantity, net_amount); line ids are L1, L2, ..."""
    return SaleRecorded(
        event_id=eid(f"sale:{partner}:{order}"), occurred_at=at, partner_id=partner,
        order_id=order, currency=currency, customer_id=customer, new_customer=new_customer,
        region="DE",
        lines=tuple(SaleLine(line_id=f"L{i + 1}", sku=f"S{i + 1}", category=c, quantity=q,
                             net_amount=n) for i, (c, q, n) in enumerate(lines)),
    )


def reversal(order: str, lines: Sequence[tuple[str, int, int]] = (), *, partner: str = "P1",
             at: dt.datetime = T0, rid: str = "R1") -> SaleReversed:
    """lines: (line_id, quantity, net_amount); none: a full reversal."""
    return SaleReversed(
        event_id=eid(f"rev:{partner}:{order}:{rid}"), occurred_at=at, partner_id=partner,
        order_id=order, reversal_id=rid, scope="partial" if lines else "full",
        reason="returned", currency="EUR",
        lines=tuple(ReversalLine(line_id=i, quantity=q, net_amount=n) for i, q, n in lines),
    )


def survey(sid: str, score: int, *, partner: str = "P1", at: dt.datetime = T0,
           scale: str = "csat_1_5") -> SurveyCompleted:
    return SurveyCompleted(event_id=eid(f"survey:{partner}:{sid}"), occurred_at=at,
                           partner_id=partner, survey_id=sid, customer_id="C1", score=score,
                           scale=scale)  # type: ignore[arg-type]


def training(course: str, *, certification: str | None = None, partner: str = "P1",
             at: dt.datetime = T0, passed: bool = True, n: int = 0) -> TrainingCompleted:
    return TrainingCompleted(event_id=eid(f"training:{partner}:{course}:{n}"), occurred_at=at,
                             partner_id=partner, course_id=course, passed=passed,
                             certification=certification)


def payout(amount: int, *, partner: str = "P1", at: dt.datetime = T0,
           ref: str = "PAY-1") -> RecordPayout:
    return RecordPayout(event_id=eid(f"payout:{partner}:{ref}"), occurred_at=at,
                        partner_id=partner, amount=amount, currency="EUR", reference=ref)


def redeem(points: int, reward: str, *, partner: str = "P1", at: dt.datetime = T0,
           n: int = 0) -> RedeemPoints:
    return RedeemPoints(event_id=eid(f"redeem:{partner}:{reward}:{n}"), occurred_at=at,
                        partner_id=partner, points=points, reward_id=reward)


def adjust(asset: str, amount: int, *, partner: str = "P1", at: dt.datetime = T0,
           n: int = 0) -> AdjustBalance:
    return AdjustBalance(event_id=eid(f"adjust:{partner}:{n}"), occurred_at=at,
                         partner_id=partner, asset=asset, amount=amount, author="finance-1",
                         reason="correction")


def claim(claim_id: str, amount: int, *, partner: str = "P1", at: dt.datetime = T0) -> ClaimFunds:
    return ClaimFunds(event_id=eid(f"claim:{partner}:{claim_id}"), occurred_at=at,
                      partner_id=partner, claim_id=claim_id, amount=amount, currency="EUR",
                      submitted_by="marketing", description="trade fair")


def approve(claim_id: str, *, partner: str = "P1", at: dt.datetime = T0) -> ApproveClaim:
    return ApproveClaim(event_id=eid(f"approve:{partner}:{claim_id}"), occurred_at=at,
                        partner_id=partner, claim_id=claim_id, approver="cfo")


def reject(claim_id: str, *, partner: str = "P1", at: dt.datetime = T0) -> RejectClaim:
    return RejectClaim(event_id=eid(f"reject:{partner}:{claim_id}"), occurred_at=at,
                       partner_id=partner, claim_id=claim_id, approver="cfo", reason="no receipt")


class Partner:
    """One partner's state and ledger chain, fed event by event."""

    def __init__(self, programs: Iterable[CompiledProgram], partner: str = "P1",
                 budgets: Budgets | None = None) -> None:
        self.programs = list(programs)
        self.state: PartnerState = new_state(partner)
        self.chain = Chain.empty(partner)
        self.records: list[Record] = []
        self.budgets = budgets

    def feed(self, *events: object) -> list[Draft]:
        drafts: list[Draft] = []
        for event in events:
            result = apply(self.state, event, self.programs,  # type: ignore[arg-type]
                           budgets=self.budgets or {})
            assert result.refusal is None, result.refusal
            drafts += self.take(result)
        return drafts

    def refused(self, event: object) -> Result:
        result = apply(self.state, event, self.programs)  # type: ignore[arg-type]
        assert result.refusal is not None and not result.drafts
        return result

    def due(self, as_of: dt.datetime) -> list[Draft]:
        return self.take(due(self.state, as_of))

    def take(self, result: Result) -> list[Draft]:
        self.state = result.state
        self.records += self.chain.append(result.drafts)
        return result.drafts

    def balances(self) -> dict[tuple[str, str], int]:
        return fold(self.records)

    def available(self, asset: str = "EUR") -> int:
        return self.balances().get((f"partner:{self.state.partner_id}:available", asset), 0)

    def pending(self, asset: str = "EUR") -> int:
        return self.balances().get((f"partner:{self.state.partner_id}:pending", asset), 0)


def amounts(drafts: Iterable[Draft], account_prefix: str = "partner:") -> list[int]:
    """The partner-side amount of each draft (sum of its partner postings)."""
    return [sum(p.amount for p in d.postings if p.account.startswith(account_prefix))
            for d in drafts]


class Market:
    """Several partners under the same programs, and period closes over all of them."""

    def __init__(self, programs: Iterable[CompiledProgram], partners: Iterable[str]) -> None:
        self.programs = list(programs)
        self.partners = {pid: Partner(self.programs, pid) for pid in partners}

    def __getitem__(self, pid: str) -> Partner:
        return self.partners[pid]

    def close(self, period: str, cp: CompiledProgram | None = None,
              budgets: Budgets | None = None) -> dict[str, list[Draft]]:
        from processors.engine import close_period

        result = close_period(period, cp or self.programs[0],
                              {pid: p.state for pid, p in self.partners.items()},
                              budgets=budgets or {})
        for pid, p in self.partners.items():
            p.state = result.states[pid]
            p.records += p.chain.append(result.drafts.get(pid, []))
        return result.drafts

    def paid(self, drafts: dict[str, list[Draft]], rule: str | None = None) -> dict[str, int]:
        """Partner-side amount per partner, of one rule or all."""
        out: dict[str, int] = {}
        for pid, ds in drafts.items():
            total = sum(amounts([d for d in ds if rule is None or d.rule_id == rule]))
            if total:
                out[pid] = total
        return out
