"""The projections' pure parts: per-batch balance deltas, tier rows, and the comparisons that
`incentives projections check` reports. No database: the SQL side is in
tests/integration/test_projections.py."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.balances import Balances, fold
from ledger.core import (
    PAYOUT_CLEARING,
    Draft,
    Explanation,
    Posting,
    Record,
    RecordKind,
    append,
    empty_head,
    partner_available,
    partner_pending,
    program_expense,
)
from processors.engine.state import PartnerState, TierState
from projections.balances import BalanceDelta, BalanceDifference, balance_deltas
from projections.balances import compare as compare_balances
from projections.tiers import Tier, TierDifference, TierRow, tier_rows
from projections.tiers import compare as compare_tiers

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROGRAM = "prog-1"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _draft(partner_id: str, n: int, postings: tuple[Posting, ...]) -> Draft:
    return Draft(
        partner_id=partner_id,
        kind=RecordKind.ADJUSTMENT if postings else RecordKind.TIER_CHANGE,
        occurred_at=T0 + timedelta(hours=n),
        recorded_at=T0 + timedelta(hours=n),
        source_event_ids=(uuid.UUID(int=n + 1),),
        leg=str(n),
        explanation=Explanation(summary="test", author="tester", reason="unit test"),
        postings=postings,
    )


def _chain(partner_id: str, postings: list[tuple[Posting, ...]]) -> list[Record]:
    records, _ = append(
        empty_head(partner_id), [_draft(partner_id, n, p) for n, p in enumerate(postings)]
    )
    assert len(records) == len(postings)
    return records


def _move(source: str, target: str, asset: str, amount: int) -> tuple[Posting, ...]:
    return (Posting(source, asset, -amount), Posting(target, asset, amount))


# --- balance deltas -------------------------------------------------------------------------


def test_deltas_sum_each_account_and_asset_and_name_the_last_record() -> None:
    expense, pending = program_expense(PROGRAM), partner_pending("P-1")
    records = _chain("P-1", [
        _move(expense, pending, "EUR", 300),
        _move(expense, pending, "EUR", 45) + _move(expense, pending, f"PTS:{PROGRAM}", 7),
        _move(expense, pending, "USD", 1),
    ])
    assert balance_deltas(records) == [
        BalanceDelta(pending, "EUR", 345, records[1].record_id),
        BalanceDelta(pending, f"PTS:{PROGRAM}", 7, records[1].record_id),
        BalanceDelta(pending, "USD", 1, records[2].record_id),
        BalanceDelta(expense, "EUR", -345, records[1].record_id),
        BalanceDelta(expense, f"PTS:{PROGRAM}", -7, records[1].record_id),
        BalanceDelta(expense, "USD", -1, records[2].record_id),
    ]


def test_deltas_come_in_code_point_order_which_is_the_lock_order() -> None:
    """Upper case sorts before lower case in code points ("C" collation), unlike in most
    locales; the upsert relies on Python's order being the index order."""
    records = _chain("P-1", [
        _move("program:b:expense", "program:B:expense", "EUR", 1),
        _move("program:a:expense", "program:A:expense", "MDF:EUR", 1),
        _move("program:a:expense", "program:A:expense", "EUR", 1),
    ])
    keys = [(d.account, d.asset) for d in balance_deltas(records)]
    assert keys == sorted(keys)
    assert keys[0] == ("program:A:expense", "EUR") and keys[-1] == ("program:b:expense", "EUR")


def test_a_pair_whose_postings_cancel_out_keeps_a_zero_delta() -> None:
    """It was posted to, so it gets a row, as a rebuild gives it one."""
    available = partner_available("P-1")
    records = _chain("P-1", [_move(available, PAYOUT_CLEARING, "EUR", 10),
                             _move(PAYOUT_CLEARING, available, "EUR", 10)])
    assert balance_deltas(records) == [
        BalanceDelta(available, "EUR", 0, records[1].record_id),
        BalanceDelta(PAYOUT_CLEARING, "EUR", 0, records[1].record_id),
    ]


def test_records_without_postings_move_nothing() -> None:
    assert balance_deltas(_chain("P-1", [()])) == []
    assert balance_deltas([]) == []


# "own:..." stands for the account of the record's partner (the ledger allows no other).
ACCOUNTS = [program_expense(PROGRAM), "own:pending", "own:available", PAYOUT_CLEARING]
ASSETS = ["EUR", "USD", f"PTS:{PROGRAM}"]
movements = st.tuples(
    st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS), st.sampled_from(ASSETS),
    st.integers(1, 10**15),
).filter(lambda m: m[0] != m[1])
records_of = st.tuples(st.sampled_from(["P-1", "P-2"]), st.lists(movements, max_size=3))


def _interleaved(specs: list[tuple[str, list[tuple[str, str, str, int]]]]) -> list[Record]:
    """Records of two partners' chains, interleaved in the order given, as a batch has them."""
    def own(account: str, partner_id: str) -> str:
        return f"partner:{partner_id}:{account[4:]}" if account.startswith("own:") else account

    chains = {
        partner_id: iter(_chain(partner_id, [
            sum((_move(own(a, pid), own(b, pid), asset, n) for a, b, asset, n in moves), ())
            for pid, moves in specs if pid == partner_id]))
        for partner_id in {pid for pid, _ in specs}
    }
    return [next(chains[pid]) for pid, _ in specs]


@settings(max_examples=150, deadline=None)
@given(st.lists(records_of, max_size=12), st.lists(st.integers(0, 12), max_size=5))
def test_deltas_added_batch_by_batch_equal_the_fold_of_the_ledger(
    specs: list[tuple[str, list[tuple[str, str, str, int]]]], cuts: list[int]
) -> None:
    """What the live projection does (add each batch's deltas to the stored rows) ends
    where ledger.balances.fold of the whole ledger ends, however the records were batched,
    exactly, in integers."""
    records = _interleaved(specs)
    bounds = sorted({0, len(records), *(c for c in cuts if c <= len(records))})
    projected: dict[tuple[str, str], int] = {}
    for start, end in zip(bounds, bounds[1:], strict=False):
        for delta in balance_deltas(records[start:end]):
            key = (delta.account, delta.asset)
            projected[key] = projected.get(key, 0) + delta.amount
    assert {k: v for k, v in projected.items() if v != 0} == fold(records)
    assert set(projected) == {(p.account, p.asset) for r in records for p in r.postings}


# --- balance comparison ---------------------------------------------------------------------


def test_compare_reports_changed_missing_and_extra_balances_in_key_order() -> None:
    stored: Balances = {("a", "EUR"): 5, ("b", "EUR"): 7, ("z", "EUR"): 3, ("zero", "EUR"): 0}
    expected: Balances = {("a", "EUR"): 5, ("b", "EUR"): 8, ("c", "USD"): 2}
    assert compare_balances(stored, expected) == [
        BalanceDifference("b", "EUR", stored=7, expected=8),
        BalanceDifference("c", "USD", stored=0, expected=2),
        BalanceDifference("z", "EUR", stored=3, expected=0),
    ]


def test_compare_finds_nothing_when_only_zero_rows_differ() -> None:
    assert compare_balances({("a", "EUR"): 0, ("b", "EUR"): 4}, {("b", "EUR"): 4}) == []


# --- tiers ----------------------------------------------------------------------------------


def _state(partner_id: str, **tiers: tuple[str, datetime]) -> PartnerState:
    return PartnerState(partner_id=partner_id, tiers={
        program: TierState(tier=tier, since=since, below_periods=1)
        for program, (tier, since) in tiers.items()})


def test_tier_rows_are_the_states_tiers_in_partner_and_program_order() -> None:
    """PartnerState (processors) satisfies projections.tiers.TieredState structurally."""
    later = T0 + timedelta(days=40)
    states = {"P-2": _state("P-2", zeta=("gold", later), alpha=("silver", T0)),
              "P-1": _state("P-1", beta=("bronze", T0)),
              "P-3": _state("P-3")}
    assert tier_rows(states) == [
        TierRow("P-1", "beta", "bronze", T0),
        TierRow("P-2", "alpha", "silver", T0),
        TierRow("P-2", "zeta", "gold", later),
    ]


def test_a_tier_without_time_zone_is_a_programming_error() -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(AssertionError, match="has no time zone"):
        tier_rows({"P-1": _state("P-1", prog=("gold", naive))})


def test_compare_tiers_reports_changed_missing_and_extra_tiers() -> None:
    gold, silver = Tier("gold", T0), Tier("silver", T0)
    stored = {("P-1", "a"): gold, ("P-1", "b"): gold, ("P-2", "a"): silver}
    expected = {("P-1", "a"): gold, ("P-1", "b"): Tier("gold", T0 + timedelta(seconds=1)),
                ("P-3", "a"): gold}
    assert compare_tiers(stored, expected) == [
        TierDifference("P-1", "b", gold, Tier("gold", T0 + timedelta(seconds=1))),
        TierDifference("P-2", "a", silver, None),
        TierDifference("P-3", "a", None, gold),
    ]


def test_projections_import_neither_processors_nor_a_database_driver() -> None:
    """The dependency rule (DESIGN.md section 3): projections never import processors, and
    their folds load without asyncpg."""
    code = ("import sys, projections, projections.balances, projections.tiers; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('processors', 'asyncpg', 'faust', 'aiokafka')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
