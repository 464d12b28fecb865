"""Finance commands: payouts, points redemptions, manual adjustments, fund claims.

Each debits the partner's available balance and is refused (a ``Refusal``, no drafts, the
state unchanged) when the balance does not cover it. Fund claims reserve what they ask:
a claim above the mdf rule's ``auto_approve_max`` waits for ApproveClaim/RejectClaim, and
while it waits its amount cannot be claimed or spent again by another claim. Its approver
must be someone other than its submitter (``self_approval``), so that no one person both
asks for fund money and releases it.
"""

import datetime as dt

from ledger import core
from ledger.core import Explanation, Posting, RecordKind
from processors.engine.book import Book
from processors.engine.compiled import CompiledProgram
from processors.engine.results import Refusal, RefusalCode
from processors.engine.state import Claim
from schemas.commands import (
    AdjustBalance,
    ApproveClaim,
    ClaimFunds,
    RecordPayout,
    RedeemPoints,
    RejectClaim,
)
from schemas.money import MAX_BALANCE_MINOR_UNITS


def _short(asset: str, have: int, want: int, path: str) -> Refusal:
    return Refusal(code=RefusalCode.INSUFFICIENT_BALANCE, path=path,
                   message=f"available {asset} balance is {have}: expected an amount of at "
                   f"most {max(have, 0)}, got {want}")


def record_payout(book: Book, command: RecordPayout) -> Refusal | None:
    asset = core.currency(command.currency)
    have = book.state.available.get(asset, 0)
    if command.amount > have:
        return _short(asset, have, command.amount, "$.amount")
    book.spend_available(
        RecordKind.PAYOUT, None, None, "payout", asset, command.amount, core.PAYOUT_CLEARING,
        Explanation(summary=f"Payout {command.reference}", formula="available -> paid",
                    inputs={"reference": command.reference, "amount": command.amount}),
    )
    return None


def redeem_points(book: Book, command: RedeemPoints,
                  programs: list[CompiledProgram]) -> Refusal | None:
    for cp in programs:
        rule = cp.points_rule
        item = None if rule is None else next(
            (i for i in rule.catalogue if i.id == command.reward_id), None)
        if rule is None or item is None:
            continue
        if command.points % item.cost:
            return Refusal(code=RefusalCode.WRONG_POINTS, path="$.points",
                           message=f"{command.reward_id} costs {item.cost} points: expected "
                           f"a multiple of {item.cost}, got {command.points}")
        have = book.state.available.get(cp.points_asset, 0)
        if command.points > have:
            return _short(cp.points_asset, have, command.points, "$.points")
        book.spend_available(
            RecordKind.REDEMPTION, cp.key, rule.id, f"redeem:{command.reward_id}",
            cp.points_asset, command.points, core.POINTS_REDEEMED,
            Explanation(summary=f"Redeemed {command.points // item.cost} x {item.name}",
                        formula="quantity = points / cost",
                        inputs={"reward_id": item.id, "cost": item.cost,
                                "quantity": command.points // item.cost,
                                "points": command.points}),
        )
        return None
    return Refusal(code=RefusalCode.UNKNOWN_REWARD, path="$.reward_id",
                   message=f"expected an item of the catalogue of a program in effect, got "
                   f"{command.reward_id!r}")


def resolve_asset(name: str, programs: list[CompiledProgram]) -> str | Refusal:
    """A command's asset name as a ledger asset: ``EUR``, ``points`` (the points of the one
    program in effect that has them), ``PTS:<program>``, ``MDF:EUR``, ``AWARD:x``/``award:x``."""
    if name == "points":
        found = sorted({cp.points_asset for cp in programs if cp.points_rule is not None})
        if len(found) == 1:
            return found[0]
        code = RefusalCode.AMBIGUOUS_ASSET if found else RefusalCode.UNKNOWN_ASSET
        return Refusal(code=code, path="$.asset",
                       message=f"expected exactly one program with points in effect, found "
                       f"{len(found)}: name the asset as PTS:<program_id>")
    if name.startswith("award:"):
        name = "AWARD:" + name.removeprefix("award:")
    if core.asset_kind(name) is None:
        return Refusal(code=RefusalCode.UNKNOWN_ASSET, path="$.asset",
                       message=f"expected EUR, points, PTS:<program>, MDF:<currency> or "
                       f"AWARD:<kind>, got {name!r}")
    return name


def adjust_balance(book: Book, command: AdjustBalance,
                   programs: list[CompiledProgram]) -> Refusal | None:
    asset = resolve_asset(command.asset, programs)
    if isinstance(asset, Refusal):
        return asset
    explanation = Explanation(
        summary=f"Adjustment of {asset} by {command.amount}", formula="manual correction",
        inputs={"asset": asset, "amount": command.amount},
        author=command.author, reason=command.reason,
    )
    if command.amount < 0:
        have = book.state.available.get(asset, 0)
        if -command.amount > have:
            return _short(asset, have, -command.amount, "$.amount")
        book.spend_available(RecordKind.ADJUSTMENT, None, None, "adjustment", asset,
                             -command.amount, core.LEDGER_ADJUSTMENTS, explanation)
        return None
    have = book.state.available.get(asset, 0)
    if have + command.amount > MAX_BALANCE_MINOR_UNITS:
        return Refusal(code=RefusalCode.BALANCE_LIMIT, path="$.amount",
                       message=f"available {asset} balance is {have}: an account holds at "
                       f"most {MAX_BALANCE_MINOR_UNITS}, so expected an amount of at most "
                       f"{MAX_BALANCE_MINOR_UNITS - have}, got {command.amount}")
    book.record(RecordKind.ADJUSTMENT, None, None, "adjustment", [
        Posting(core.LEDGER_ADJUSTMENTS, asset, -command.amount),
        Posting(core.partner_available(book.partner_id), asset, command.amount),
    ], explanation)
    return None


def _fund_program(command: ClaimFunds, programs: list[CompiledProgram]) -> CompiledProgram | None:
    for cp in programs:
        if cp.mdf_rule is not None and cp.currency == command.currency:
            return cp
    return None


def claim_funds(book: Book, command: ClaimFunds,
                programs: list[CompiledProgram]) -> Refusal | None:
    state = book.state
    cp = _fund_program(command, programs)
    if cp is None or cp.mdf_rule is None:
        return Refusal(code=RefusalCode.NO_PROGRAM, path="$.currency",
                       message=f"expected a program in effect with a market fund in "
                       f"{command.currency}, found none")
    if command.claim_id in state.claims:
        return Refusal(code=RefusalCode.DUPLICATE_CLAIM, path="$.claim_id",
                       message=f"claim {command.claim_id!r} already awaits approval")
    if command.claim_id in state.settled_claims:
        return Refusal(code=RefusalCode.DUPLICATE_CLAIM, path="$.claim_id",
                       message=f"claim {command.claim_id!r} was already settled in "
                       f"{state.settled_claims[command.claim_id]}: expected a new claim id")
    asset = cp.mdf_asset
    reserved = sum(c.amount for c in state.claims.values() if c.asset == asset)
    have = state.available.get(asset, 0) - reserved
    if command.amount > have:
        return _short(asset, have, command.amount, "$.amount")
    if command.amount <= cp.mdf_rule.auto_approve_max:
        state.settled_claims[command.claim_id] = _month(command)
        book.spend_available(
            RecordKind.PAYOUT, cp.key, cp.mdf_rule.id, f"claim:{command.claim_id}", asset,
            command.amount, core.PAYOUT_CLEARING,
            Explanation(summary=f"Fund claim {command.claim_id} approved automatically",
                        formula="amount <= auto_approve_max",
                        inputs={"claim_id": command.claim_id, "amount": command.amount,
                                "auto_approve_max": cp.mdf_rule.auto_approve_max,
                                "submitted_by": command.submitted_by}),
        )
        return None
    state.claims[command.claim_id] = Claim(
        claim_id=command.claim_id, event_id=command.event_id, asset=asset,
        amount=command.amount, program_id=cp.program_id, version=cp.version,
        submitted_by=command.submitted_by,
    )
    return None


def _unknown_claim(claim_id: str) -> Refusal:
    return Refusal(code=RefusalCode.UNKNOWN_CLAIM, path="$.claim_id",
                   message=f"expected a claim awaiting approval, got {claim_id!r}")


def approve_claim(book: Book, command: ApproveClaim,
                  programs: list[CompiledProgram]) -> Refusal | None:
    state = book.state
    claim = state.claims.get(command.claim_id)
    if claim is None:
        return _unknown_claim(command.claim_id)
    if command.approver == claim.submitted_by:
        return Refusal(code=RefusalCode.SELF_APPROVAL, path="$.approver",
                       message=f"claim {claim.claim_id!r} was submitted by "
                       f"{claim.submitted_by!r}: expected another approver, got "
                       f"{command.approver!r}")
    have = state.available.get(claim.asset, 0)
    if claim.amount > have:
        return _short(claim.asset, have, claim.amount, "$.claim_id")
    del state.claims[command.claim_id]
    state.settled_claims[command.claim_id] = _month(command)
    rule_id = next((cp.mdf_rule.id for cp in programs
                    if cp.key == (claim.program_id, claim.version) and cp.mdf_rule), None)
    book.spend_available(
        RecordKind.PAYOUT, (claim.program_id, claim.version), rule_id,
        f"claim:{claim.claim_id}", claim.asset, claim.amount, core.PAYOUT_CLEARING,
        Explanation(summary=f"Fund claim {claim.claim_id} approved by {command.approver}",
                    formula="approved claim paid from the fund",
                    inputs={"claim_id": claim.claim_id, "amount": claim.amount,
                            "approver": command.approver,
                            "submitted_by": claim.submitted_by}),
    )
    return None


def reject_claim(book: Book, command: RejectClaim) -> Refusal | None:
    if command.claim_id not in book.state.claims:
        return _unknown_claim(command.claim_id)
    del book.state.claims[command.claim_id]
    book.state.settled_claims[command.claim_id] = _month(command)
    return None


def _month(command: ClaimFunds | ApproveClaim | RejectClaim) -> str:
    return command.occurred_at.astimezone(dt.UTC).strftime("%Y-%m")
