"""Properties of the engine over generated histories, on the shipped example program."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_support import (
    Market,
    Partner,
    registered,
    reversal,
    sale,
    survey,
    training,
)

from ledger.balances import fold
from processors.engine import (
    CompiledProgram,
    apply,
    close_period,
    compile_program,
    decode_state,
    encode_state,
    new_state,
    spend_of,
)
from schemas.program_loader import load_program

EXAMPLE = compile_program(
    load_program(Path(__file__).resolve().parents[2] / "programs/example-channel-2026.yaml")
    .program
)
START = dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC)
CATEGORIES = ["hardware", "software", "services", "support", "other"]

lines = st.lists(
    st.tuples(st.sampled_from(CATEGORIES), st.integers(1, 5), st.integers(0, 40_000_000)),
    min_size=1, max_size=4,
)
sales = st.lists(
    st.tuples(lines, st.integers(0, 80), st.integers(1, 4), st.booleans()),
    max_size=8,
)
extras = st.lists(st.tuples(st.sampled_from(["survey", "training"]), st.integers(1, 5)),
                  max_size=6)


def history(partner: str, plan: list[tuple[list[tuple[str, int, int]], int, int, bool]],
            extra: list[tuple[str, int]]) -> list[object]:
    events: list[object] = [registered(partner)]
    for i, (kind, n) in enumerate(extra):
        at = START + dt.timedelta(days=i)
        events.append(survey(f"S{i}", n, partner=partner, at=at) if kind == "survey" else
                      training(f"C{n}", certification=f"CERT{n}" if n > 3 else None,
                               partner=partner, at=at))
    timed = sorted(enumerate(plan), key=lambda x: (x[1][1], x[0]))
    for i, (ls, day, customer, new) in timed:
        events.append(sale(f"O{i}", ls, partner=partner, customer=f"C{customer}",
                           new_customer=new, at=START + dt.timedelta(days=10 + day)))
    return events


@settings(max_examples=60, deadline=None)
@given(sales, extras, lines, st.booleans(), st.sampled_from([0, 1, 179]))
def test_sale_then_full_reversal_leaves_every_balance_where_it_was(
    plan: list[tuple[list[tuple[str, int, int]], int, int, bool]],
    extra: list[tuple[str, int]],
    last: list[tuple[str, int, int]],
    new: bool,
    days_later: int,
) -> None:
    p = Partner([EXAMPLE])
    p.feed(*history("P1", plan, extra))
    before = p.balances()
    at = START + dt.timedelta(days=100)
    p.feed(sale("LAST", last, customer="C-new", new_customer=new, at=at))
    p.feed(reversal("LAST", at=at + dt.timedelta(days=days_later)))
    assert p.balances() == before
    assert fold(p.records) == before


@settings(max_examples=40, deadline=None)
@given(st.lists(sales, min_size=1, max_size=4), st.sampled_from(["stop", "prorate"]),
       st.integers(1, 3_000_000))
def test_total_awarded_never_exceeds_the_budget(
    plans: list[list[tuple[list[tuple[str, int, int]], int, int, bool]]],
    policy: str,
    budget: int,
) -> None:
    cp = _with_budget(budget, policy)
    m = Market([cp], [f"P{i}" for i in range(len(plans))])
    spent: dict[tuple[str, int], int] = {}
    for (pid, p), plan in zip(m.partners.items(), plans, strict=True):
        for event in history(pid, plan, []):
            result = apply(p.state, event, [cp], budgets=spent)  # type: ignore[arg-type]
            spent[cp.key] = spent.get(cp.key, 0) + spend_of(result.drafts, cp)
            p.take(result)
    for month in ["2026-01", "2026-02", "2026-03"]:
        drafts = m.close(month, budgets=spent)
        spent[cp.key] = spent.get(cp.key, 0) + sum(spend_of(ds, cp) for ds in drafts.values())
    paid = sum(-amount for (account, asset), amount in
               fold(r for p in m.partners.values() for r in p.records).items()
               if account == "program:northwind-emea:expense" and asset == "EUR")
    assert paid <= spent[cp.key] <= budget


def _with_budget(budget: int, policy: str) -> CompiledProgram:
    import msgspec

    from schemas.programs import BudgetPolicy

    return compile_program(msgspec.structs.replace(
        EXAMPLE.program, budget=budget, on_budget_exhausted=BudgetPolicy(policy)))


@settings(max_examples=30, deadline=None)
@given(sales, extras)
def test_engine_is_deterministic_and_state_survives_storage(
    plan: list[tuple[list[tuple[str, int, int]], int, int, bool]],
    extra: list[tuple[str, int]],
) -> None:
    """The same events in the same order give the same drafts (ids, explanations, all), and
    storing the state as JSON between events changes nothing."""
    events = history("P1", plan, extra)
    runs = []
    for stored in (False, True):
        state = new_state("P1")
        drafts = []
        for event in events:
            result = apply(state, event, [EXAMPLE])  # type: ignore[arg-type]
            drafts += result.drafts
            state = decode_state(encode_state(result.state)) if stored else result.state
        closed = close_period("2026-03", EXAMPLE, {"P1": state})
        runs.append((drafts, closed.drafts, encode_state(closed.states["P1"])))
    assert runs[0] == runs[1]
