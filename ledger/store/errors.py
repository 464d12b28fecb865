"""Typed failures of the store; each message says what was expected and what was found."""

from __future__ import annotations


class StoreError(Exception):
    """An expected failure of a store operation."""


class ChainConflict(StoreError):
    """A batch does not continue the chains as they are in the database.

    Raised when another writer appended first (the batch's starting head is stale) or when a
    record id or (partner, seq) already exists. The caller's transaction is then unusable:
    roll it back, drop the batch, reload the heads and process the events again. This is how
    a zombie worker after a rebalance is stopped (DESIGN.md section 7).
    """

    def __init__(self, message: str, *, partner_ids: tuple[str, ...] = (),
                 constraint: str | None = None) -> None:
        self.partner_ids = partner_ids
        self.constraint = constraint
        super().__init__(message)
