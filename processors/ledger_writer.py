"""The ledger stage of a batch: engine results into PostgreSQL, in the batch's transaction.

The ingest stage (processors/ingest.py) decides which messages are accepted and in what
order; this stage loads the books those messages touch, runs them through the runner (the
same pure code the auditor's replay uses), appends the sealed records, and stores the new
partner states, program spend and refusals. Everything commits or rolls back with the
batch's inbox rows and consumer positions.

Concurrency: the partner rows are locked (in partner id order, so two writers cannot
deadlock on them) before they are read, so a second writer of the same partners waits and
then sees the first one's heads. A zombie whose view is stale still fails on the chain
head compare-and-set in ledger.store and rolls its whole batch back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from ledger import program_store
from ledger.core import GENESIS_HASH, ChainHead
from ledger.store import append
from processors.engine import CompiledProgram, compile_program, decode_state, encode_state
from processors.ingest import Accepted
from processors.runner import Books, Outcome, run
from schemas.commands import ClosePeriod
from schemas.streams import Message

log = logging.getLogger(__name__)

_ENSURE_ROWS = """
INSERT INTO partner_state (partner_id, head_seq, head_hash)
SELECT p, 0, $2::bytea FROM unnest($1::text[]) AS p
ON CONFLICT (partner_id) DO NOTHING
"""
_LOCK_SOME = """
SELECT partner_id, head_seq, head_hash, state FROM partner_state
WHERE partner_id = ANY($1::text[]) ORDER BY partner_id FOR UPDATE
"""
_LOCK_ALL = """
SELECT partner_id, head_seq, head_hash, state FROM partner_state
ORDER BY partner_id FOR UPDATE
"""
_SAVE_STATES = """
UPDATE partner_state s SET state = u.state::jsonb, updated_at = now()
FROM unnest($1::text[], $2::text[]) AS u(partner_id, state)
WHERE s.partner_id = u.partner_id
"""


class Programs:
    """The compiled program versions, reloaded when a new version is published."""

    def __init__(self) -> None:
        self.compiled: list[CompiledProgram] = []
        self._seen: tuple[int, object] = (0, None)

    async def refresh(self, conn: asyncpg.Connection) -> list[CompiledProgram]:
        marker = await conn.fetchrow(
            "SELECT count(*) AS n, max(published_at) AS at FROM program_versions"
        )
        seen = (int(marker["n"]), marker["at"])
        if seen != self._seen:
            stored = await program_store.fetch_all(conn)
            self.compiled = [compile_program(s.load().program) for s in stored]
            self._seen = seen
            log.info("programs loaded: %s", [(c.program_id, c.version) for c in self.compiled])
        return self.compiled


def hook() -> Callable[[asyncpg.Connection, list[Accepted]], Awaitable[None]]:
    """The ingest stage's apply hook: accepted events, in acceptance order, to the ledger."""
    programs = Programs()

    async def apply_accepted(conn: asyncpg.Connection, accepted: list[Accepted]) -> None:
        await write(conn, [a.message for a in accepted], await programs.refresh(conn))

    return apply_accepted


async def write(
    conn: asyncpg.Connection, messages: Sequence[Message], programs: Sequence[CompiledProgram]
) -> Outcome:
    """Apply accepted messages, in order, inside the caller's transaction."""
    assert conn.is_in_transaction(), "the ledger stage runs in the batch's transaction"
    if not messages:
        return Outcome()
    books = await _load(conn, messages)
    budgets_before = dict(books.budgets)
    outcome = run(messages, books, programs)
    await append(conn, outcome.records)
    await _save(conn, books, outcome, budgets_before)
    return outcome


async def _load(conn: asyncpg.Connection, messages: Sequence[Message]) -> Books:
    partners = sorted({m.partner_id for m in messages if not isinstance(m, ClosePeriod)})
    await conn.execute(_ENSURE_ROWS, partners, GENESIS_HASH)
    closing = any(isinstance(m, ClosePeriod) for m in messages)
    rows = await (conn.fetch(_LOCK_ALL) if closing else conn.fetch(_LOCK_SOME, partners))
    books = Books()
    for row in rows:
        pid = row["partner_id"]
        books.heads[pid] = ChainHead(pid, row["head_seq"], row["head_hash"])
        if row["state"] not in (None, "{}"):
            books.states[pid] = decode_state(row["state"])
    for row in await conn.fetch(
        "SELECT program_id, version, spent FROM program_spend ORDER BY 1, 2 FOR UPDATE"
    ):
        books.budgets[(row["program_id"], row["version"])] = row["spent"]
    return books


async def _save(
    conn: asyncpg.Connection,
    books: Books,
    outcome: Outcome,
    budgets_before: dict[tuple[str, int], int],
) -> None:
    touched = sorted(outcome.touched)
    await conn.execute(
        _SAVE_STATES, touched, [encode_state(books.states[p]).decode() for p in touched]
    )
    changed = [(k, v) for k, v in books.budgets.items() if budgets_before.get(k) != v]
    if changed:
        await conn.executemany(
            """INSERT INTO program_spend (program_id, version, spent) VALUES ($1, $2, $3)
               ON CONFLICT (program_id, version) DO UPDATE SET spent = EXCLUDED.spent""",
            [(pid, version, spent) for (pid, version), spent in changed],
        )
    if outcome.refused:
        await conn.executemany(
            """INSERT INTO command_refusals
                   (event_id, partner_id, event_type, code, path, message, occurred_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            [
                (
                    r.message.event_id,
                    r.message.partner_id,
                    type(r.message).__name__,
                    r.refusal.code.value,
                    r.refusal.path,
                    r.refusal.message,
                    r.message.occurred_at,
                )
                for r in outcome.refused
            ],
        )
