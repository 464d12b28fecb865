"""Unit and property tests of the balances folded from the pure ledger's records: as of an
event time and as known at a moment, the rows the store writes, and double entry over the
whole ledger."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given
from ledger_core_support import (
    PROGRAM,
    T0,
    draft_lists,
    make_draft,
)

from ledger.balances import (
    PostingRow,
    account_balances,
    balance,
    dated_postings,
    fold,
    fold_postings,
    posting_rows,
)
from ledger.core import (
    PAYOUT_CLEARING,
    Draft,
    Posting,
    Record,
    RecordKind,
    append,
    empty_head,
    partner_available,
    partner_pending,
    points,
    program_expense,
)

# --- balances -------------------------------------------------------------------------------


def _move(n: int, kind: RecordKind, source: str, target: str, asset: str, amount: int,
          day: int, recorded_day: int | None = None) -> Draft:
    return make_draft(n, kind=kind, occurred_at=T0 + timedelta(days=day),
                      recorded_at=T0 + timedelta(days=recorded_day or day),
                      postings=(Posting(source, asset, -amount), Posting(target, asset, amount)))


def _lifecycle() -> list[Record]:
    """Earned on day 1, released on day 10, paid on day 20; points for day 2 recorded late."""
    pending, available = partner_pending("P-1"), partner_available("P-1")
    records, _ = append(empty_head("P-1"), [
        _move(1, RecordKind.ACCRUAL, program_expense(PROGRAM), pending, "EUR", 500, 1),
        _move(2, RecordKind.HOLD_RELEASE, pending, available, "EUR", 500, 10),
        _move(3, RecordKind.PAYOUT, available, PAYOUT_CLEARING, "EUR", 500, 20),
        _move(4, RecordKind.ACCRUAL, program_expense(PROGRAM), available, points(PROGRAM), 70,
              2, recorded_day=30),
    ])
    return records


def test_balances_as_of_an_event_time() -> None:
    """The balance of any account at any moment is folded from the ledger."""
    records = _lifecycle()
    pending, available = partner_pending("P-1"), partner_available("P-1")

    def day(n: int) -> datetime:
        return T0 + timedelta(days=n)

    assert fold(records, as_of=day(0)) == {}
    on_5 = fold(records, as_of=day(5))
    assert balance(on_5, pending, "EUR") == 500 and balance(on_5, available, "EUR") == 0
    assert balance(on_5, available, points(PROGRAM)) == 70
    assert balance(on_5, program_expense(PROGRAM), "EUR") == -500
    on_15 = fold(records, as_of=day(15))
    assert (balance(on_15, pending, "EUR"), balance(on_15, available, "EUR")) == (0, 500)
    on_25 = fold(records, as_of=day(25))
    assert account_balances(on_25, "partner:P-1:") == {(available, points(PROGRAM)): 70}
    assert balance(on_25, PAYOUT_CLEARING, "EUR") == 500
    # What the ledger said on day 25: the late points were not recorded yet.
    assert account_balances(fold(records, as_of=day(25), known_at=day(25)), "partner:") == {}


def test_as_of_includes_the_exact_moment() -> None:
    """A record that occurred exactly at the as-of moment counts."""
    records = _lifecycle()
    assert balance(fold(records, as_of=records[0].occurred_at), partner_pending("P-1"),
                   "EUR") == 500


def test_posting_rows_follow_the_table_columns() -> None:
    """The store copies these tuples straight into ledger_postings."""
    records = _lifecycle()[:1]
    assert posting_rows(records) == [
        PostingRow(records[0].record_id, 0, program_expense(PROGRAM), "EUR", -500),
        PostingRow(records[0].record_id, 1, partner_pending("P-1"), "EUR", 500),
    ]


@given(draft_lists)
def test_the_whole_ledger_sums_to_zero_per_asset(batch: list[Draft]) -> None:
    """Double entry: over all accounts each asset nets to zero, in any fold order."""
    records, _ = append(empty_head("P-1"), batch)
    balances = fold(records)
    totals: dict[str, int] = {}
    for (_, asset), amount in balances.items():
        totals[asset] = totals.get(asset, 0) + amount
    assert set(totals.values()) <= {0}
    incremental: dict[tuple[str, str], int] = {}
    for record in reversed(records):
        fold_postings(dated_postings([record]), into=incremental)
    assert incremental == balances
