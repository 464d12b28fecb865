"""Checkpoints in ``chain_checkpoints``: taking one over every chain head, reading them back.

The heads a checkpoint pins are read from ``ledger_records`` itself, not from
``partner_state``: partner_state is a writer's cache that the application role may update,
while a checkpoint is the auditor's anchor and must pin what the ledger actually holds.
A loose index scan (one index probe per partner, not one row per record) keeps that cheap.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from ledger import checkpoint as core
from ledger.core import ChainHead
from ledger.store.errors import StoreError

# An arbitrary, fixed key for pg_advisory_xact_lock: "incentives checkpoints". Two
# checkpoints taken at once would both read the same previous one; the lock orders them.
_LOCK_KEY = 7_340_212

# Every partner's last record, skipping from partner to partner along the unique index on
# (partner_id, seq) instead of reading every record.
_LEDGER_HEADS = """
WITH RECURSIVE partners(partner_id) AS (
    (SELECT partner_id FROM ledger_records ORDER BY partner_id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.partner_id FROM ledger_records r WHERE r.partner_id > p.partner_id
            ORDER BY r.partner_id LIMIT 1)
    FROM partners p WHERE p.partner_id IS NOT NULL
)
SELECT p.partner_id, h.seq, h.hash
FROM partners p
CROSS JOIN LATERAL (
    SELECT r.seq, r.hash FROM ledger_records r WHERE r.partner_id = p.partner_id
    ORDER BY r.seq DESC LIMIT 1
) h
ORDER BY p.partner_id
"""

_COLUMNS = """checkpoint_seq, taken_at, prev_root, partner_count, head_partner_ids, head_seqs,
    head_hashes, root"""


class CheckpointError(StoreError):
    """A checkpoint that cannot be taken; the message says why."""


async def take_checkpoint(conn: asyncpg.Connection, taken_at: datetime) -> core.Checkpoint:
    """Pin the current head of every chain in a new checkpoint, chained to the previous one.

    Runs in its own transaction (a savepoint if the caller has one) under an advisory lock.
    Call it outside a REPEATABLE READ transaction: it must see the newest checkpoint.
    """
    if taken_at.utcoffset() is None:
        raise CheckpointError(f"taken_at must be time-zone aware, got {taken_at.isoformat()}")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM chain_checkpoints ORDER BY checkpoint_seq DESC LIMIT 1"
        )
        previous = None if row is None else _checkpoint(row)
        if previous is not None and taken_at < previous.taken_at:
            raise CheckpointError(
                f"cannot take a checkpoint at {taken_at.isoformat()}: checkpoint "
                f"{previous.checkpoint_seq} was taken later, at {previous.taken_at.isoformat()}"
            )
        heads = [ChainHead(r["partner_id"], r["seq"], r["hash"])
                 for r in await conn.fetch(_LEDGER_HEADS)]
        checkpoint = core.take_checkpoint(heads, previous=previous, taken_at=taken_at)
        await conn.execute(
            f"INSERT INTO chain_checkpoints ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            checkpoint.checkpoint_seq,
            checkpoint.taken_at,
            checkpoint.prev_root,
            checkpoint.partner_count,
            [h.partner_id for h in checkpoint.heads],
            [h.seq for h in checkpoint.heads],
            [h.hash for h in checkpoint.heads],
            checkpoint.root,
        )
    return checkpoint


async def load_checkpoints(conn: asyncpg.Connection) -> list[core.Checkpoint]:
    """Every checkpoint in checkpoint_seq order, as the verifier wants them."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM chain_checkpoints ORDER BY checkpoint_seq")
    return [_checkpoint(row) for row in rows]


def _checkpoint(row: asyncpg.Record) -> core.Checkpoint:
    # The table's CHECK makes the three arrays equally long; strict zip asserts it anyway.
    heads = tuple(
        ChainHead(partner_id, seq, head_hash)
        for partner_id, seq, head_hash in zip(
            row["head_partner_ids"], row["head_seqs"], row["head_hashes"], strict=True
        )
    )
    return core.Checkpoint(
        checkpoint_seq=row["checkpoint_seq"],
        taken_at=row["taken_at"],
        prev_root=row["prev_root"],
        partner_count=row["partner_count"],
        heads=heads,
        root=row["root"],
    )
