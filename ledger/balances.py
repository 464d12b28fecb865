"""Balances folded from the ledger, at any point in time, and the rows postings are stored as.

A balance is the sum of the postings to one (account, asset). "As of" a moment counts the
records whose event time (`occurred_at`) is at or before it: the balance the partner had at
that moment as we know it now, late events included. `known_at` additionally drops records
recorded after it: what the ledger said at that moment, for reproducing an old statement.

Accounts that sum to zero are left out of the result, so two folds of the same ledger compare
equal whatever order or batches they were built in.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from ledger.core import Record

BalanceKey = tuple[str, str]  # (account, asset)
Balances = dict[BalanceKey, int]


class PostingRow(NamedTuple):
    """One row of ``ledger_postings``, in its column order (ready for asyncpg COPY)."""

    record_id: uuid.UUID
    leg: int
    account: str
    asset: str
    amount: int


class DatedPosting(NamedTuple):
    """A posting with its record's times: what a balance query over the store returns."""

    occurred_at: datetime
    recorded_at: datetime
    account: str
    asset: str
    amount: int


def posting_rows(records: Iterable[Record]) -> list[PostingRow]:
    return [
        PostingRow(record.record_id, leg, posting.account, posting.asset, posting.amount)
        for record in records
        for leg, posting in enumerate(record.postings)
    ]


def dated_postings(records: Iterable[Record]) -> Iterable[DatedPosting]:
    for record in records:
        for posting in record.postings:
            yield DatedPosting(record.occurred_at, record.recorded_at, posting.account,
                               posting.asset, posting.amount)


def fold(
    records: Iterable[Record],
    *,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
) -> Balances:
    """Balances per (account, asset) from records, optionally as of an event time."""
    return fold_postings(dated_postings(records), as_of=as_of, known_at=known_at)


def fold_postings(
    postings: Iterable[DatedPosting],
    *,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
    into: Balances | None = None,
) -> Balances:
    """Add postings to `into` (a new dict by default); return it without zero balances."""
    balances: Balances = {} if into is None else into
    for posting in postings:
        if as_of is not None and posting.occurred_at > as_of:
            continue
        if known_at is not None and posting.recorded_at > known_at:
            continue
        key = (posting.account, posting.asset)
        balances[key] = balances.get(key, 0) + posting.amount
    for key in [key for key, amount in balances.items() if amount == 0]:
        del balances[key]
    return balances


def balance(balances: Balances, account: str, asset: str) -> int:
    return balances.get((account, asset), 0)


def account_balances(balances: Balances, prefix: str) -> Balances:
    """The balances of accounts whose name starts with `prefix`, e.g. ``partner:P-1:``."""
    return {key: amount for key, amount in balances.items() if key[0].startswith(prefix)}
