"""Drafts for the tests of the pure ledger core: Hypothesis strategies for any valid draft
(every record kind, balanced postings in every asset kind, explanations with any text) and
a plain commission draft to change one field of."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from hypothesis import strategies as st

from ledger.core import (
    AWARDS_FULFILLED,
    INT64_MAX,
    INT64_MIN,
    PAYOUT_CLEARING,
    POINTS_EXPIRED,
    POINTS_REDEEMED,
    VALUE_FREE_KINDS,
    Draft,
    Explanation,
    Posting,
    RecordKind,
    Rounding,
    partner_available,
    partner_pending,
    program_expense,
    program_penalty,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PROGRAM = "prog-a"

# --- strategies -----------------------------------------------------------------------------

texts = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=12,
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(INT64_MIN, INT64_MAX), texts)
explanations = st.builds(
    Explanation,
    summary=texts,
    formula=texts,
    inputs=st.dictionaries(texts, st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=4),
    rounding=st.none() | st.builds(Rounding, mode=st.just("half_even"), exact=texts,
                                   result=st.integers(INT64_MIN, INT64_MAX)),
    author=st.none() | texts,
    reason=st.none() | texts,
    related_record_ids=st.lists(st.uuids(), max_size=2).map(tuple),
)
moments = st.integers(0, 10**13).map(lambda us: T0 + timedelta(microseconds=us))
assets = st.sampled_from(["EUR", "USD", f"PTS:{PROGRAM}", "AWARD:trip", "MDF:EUR"])


def accounts_of(partner_id: str) -> list[str]:
    return [program_expense(PROGRAM), program_penalty(PROGRAM), partner_pending(partner_id),
            partner_available(partner_id), PAYOUT_CLEARING, POINTS_REDEEMED, POINTS_EXPIRED,
            AWARDS_FULFILLED]


@st.composite
def transfers(draw: st.DrawFn, partner_id: str) -> tuple[Posting, ...]:
    """One or two balanced movements: from one account to another, per asset."""
    postings: list[Posting] = []
    for _ in range(draw(st.integers(1, 2))):
        source, target = draw(st.permutations(accounts_of(partner_id)))[:2]
        asset = draw(assets)
        amount = draw(st.integers(1, 10**12))
        postings += [Posting(source, asset, -amount), Posting(target, asset, amount)]
    return tuple(postings)


@st.composite
def drafts(draw: st.DrawFn, partner_id: str = "P-1") -> Draft:
    kind = draw(st.sampled_from(RecordKind))
    with_program = draw(st.booleans())
    explanation = draw(explanations)
    if kind is RecordKind.ADJUSTMENT:
        explanation = msgspec.structs.replace(explanation, author=draw(texts.map("a".__add__)),
                                              reason=draw(texts.map("r".__add__)))
    if kind is RecordKind.REVERSAL and not explanation.related_record_ids:
        explanation = msgspec.structs.replace(explanation, related_record_ids=(draw(st.uuids()),))
    return Draft(
        partner_id=partner_id,
        kind=kind,
        occurred_at=draw(moments),
        recorded_at=draw(moments),
        source_event_ids=tuple(draw(st.lists(st.uuids(), min_size=1, max_size=3, unique=True))),
        leg=draw(st.sampled_from(["0", "1", "accrual", "release:2"])),
        explanation=explanation,
        postings=() if kind in VALUE_FREE_KINDS else draw(transfers(partner_id)),
        program_id=PROGRAM if with_program else None,
        program_version=draw(st.integers(1, 9)) if with_program else None,
        rule_id=draw(st.sampled_from([None, "per-sale", "bonus"])) if with_program else None,
    )


draft_lists = st.lists(drafts(), min_size=1, max_size=6)


def make_draft(n: int, partner_id: str = "P-1", amount: int = 100, **changes: Any) -> Draft:
    fields: dict[str, Any] = dict(
        partner_id=partner_id, kind=RecordKind.ACCRUAL, occurred_at=T0 + timedelta(days=n),
        recorded_at=T0 + timedelta(days=n, seconds=1),
        source_event_ids=(uuid.UUID(int=n + 1),), leg="0",
        explanation=Explanation(summary="commission", formula="net * 3%", inputs={"net": 3333}),
        program_id=PROGRAM, program_version=1, rule_id="per-sale",
    )
    fields.update(changes)
    if "postings" not in fields:
        fields["postings"] = (Posting(program_expense(PROGRAM), "EUR", -amount),
                              Posting(f"partner:{partner_id}:pending", "EUR", amount))
    return Draft(**fields)
