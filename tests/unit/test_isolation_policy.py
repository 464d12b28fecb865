"""How the worker tells a failed batch's causes apart, and how long it waits between
attempts (processors.writer.isolation): pure decisions, no server."""

from __future__ import annotations

import random

import asyncpg
import pytest

from ledger.store.errors import ChainConflict
from processors.intake.batch import BatchReport
from processors.writer.isolation import Failure, RetryPolicy, classify, merge, processing_failed
from schemas.codec import RejectCode

E = asyncpg.exceptions


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (E.ConnectionDoesNotExistError("connection was closed"), Failure.TRANSIENT),
        (E.AdminShutdownError("terminating connection"), Failure.TRANSIENT),
        (E.CannotConnectNowError("the database system is starting up"), Failure.TRANSIENT),
        (E.TooManyConnectionsError("too many clients"), Failure.TRANSIENT),
        (E.DiskFullError("no space left"), Failure.TRANSIENT),
        (E.PostgresIOError("could not read block"), Failure.TRANSIENT),
        (E.ReadOnlySQLTransactionError("read-only transaction"), Failure.TRANSIENT),
        (ConnectionRefusedError(111, "refused"), Failure.TRANSIENT),
        (TimeoutError(), Failure.TRANSIENT),
        (asyncpg.InterfaceError("connection is closed"), Failure.TRANSIENT),
        (E.DeadlockDetectedError("deadlock detected"), Failure.CONFLICT),
        (E.SerializationError("could not serialize access"), Failure.CONFLICT),
        (ChainConflict("another writer moved the chain first"), Failure.CONFLICT),
        (E.UndefinedTableError('relation "orders" does not exist'), Failure.SYSTEMIC),
        (E.InsufficientPrivilegeError("permission denied"), Failure.SYSTEMIC),
        (E.InvalidPasswordError("password authentication failed"), Failure.SYSTEMIC),
        (E.InFailedSQLTransactionError("current transaction is aborted"), Failure.SYSTEMIC),
        (E.UntranslatableCharacterError("\\u0000 cannot be converted"), Failure.SUSPECT),
        (E.NumericValueOutOfRangeError("bigint out of range"), Failure.SUSPECT),
        (E.UniqueViolationError("duplicate key"), Failure.SUSPECT),
        (E.RaiseError("from a trigger"), Failure.SUSPECT),
        (asyncpg.exceptions._base.DataError("invalid input for query argument"), Failure.SUSPECT),
        (RecursionError("maximum recursion depth exceeded"), Failure.SUSPECT),
        (ValueError("invalid ledger draft"), Failure.SUSPECT),
        (KeyError("rate"), Failure.SUSPECT),
        (AssertionError("postings do not balance"), Failure.SUSPECT),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_failures_are_told_apart(exc: BaseException, failure: Failure) -> None:
    assert classify(exc) is failure


def test_backoff_is_jittered_doubling_and_capped() -> None:
    policy = RetryPolicy(backoff_initial_s=0.2, backoff_max_s=10.0, conflict_backoff_max_s=1.0)
    rng = random.Random(1)
    for attempt in range(1, 40):
        cap = min(10.0, 0.2 * 2 ** (attempt - 1))
        delays = [policy.delay_s(Failure.TRANSIENT, attempt, rng) for _ in range(50)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # full jitter spreads over the whole range
        assert all(0 <= policy.delay_s(Failure.CONFLICT, attempt, rng) <= 1.0 for _ in range(50))
    assert policy.attempts_max(Failure.TRANSIENT) == 10
    assert policy.attempts_max(Failure.CONFLICT) == 50


def test_a_dead_letter_names_the_exception_and_its_sqlstate() -> None:
    rejection = processing_failed(E.UntranslatableCharacterError("\\u0000 cannot be converted"))
    assert rejection.code is RejectCode.PROCESSING_FAILED and rejection.path == "$"
    assert rejection.message == (
        "applying this message failed: UntranslatableCharacterError (SQLSTATE 22P05):"
        " \\u0000 cannot be converted"
    )
    long = processing_failed(ValueError("x" * 5000))
    assert len(long.message) == 1000
    assert "\x1b" not in processing_failed(ValueError("bad \x1b[31m")).message


def test_reports_of_sub_batches_add_up() -> None:
    first = BatchReport(messages=3, applied=2, duplicates=1, positions={("t", 0): 3},
                        outcomes={("sales", "applied"): 2, ("sales", "duplicate"): 1})
    second = BatchReport(messages=2, applied=1, parked=1, positions={("t", 0): 5},
                         outcomes={("sales", "applied"): 1, ("sales", "parked"): 1})
    total = merge([first, second])
    assert (total.messages, total.applied, total.duplicates, total.parked) == (5, 3, 1, 1)
    assert total.positions == {("t", 0): 5}
    assert total.outcomes == {("sales", "applied"): 3, ("sales", "duplicate"): 1,
                              ("sales", "parked"): 1}  # fmt: skip
