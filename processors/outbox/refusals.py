"""Refusals: the outbox in PostgreSQL and its copy on the ``refusals`` topic.

The ledger stage writes a ``command_refusals`` row for every valid command the rules
refused, in the batch's transaction, so PostgreSQL holds exactly one reason per refused
command. After the commit ``publish_pending`` sends them to the ``refusals`` stream as
``CommandRefused`` and marks them published (migration 0007 lets only that mark be set,
once). A worker that dies in between leaves them unpublished; the next worker assigned
the partition sends them. So the topic gets every refusal at least once, and a consumer
drops copies by ``event_id``. The same outbox as the dead letters' (``processors.outbox.relay``).

Which refusals a worker publishes is decided by the partition the command was consumed
from (``inbox.topic``/``inbox.partition``), so the workers of a group do not race for the
same rows: each publishes those of the partitions it is assigned. On the topic the key is
the ``partner_id``, so one partner's refusals stay in order on one partition; they are
sent in the order their commands were accepted (``inbox.arrival_seq``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from datetime import datetime

import asyncpg

from processors.outbox.relay import Outbox
from schemas.outcomes import REFUSAL_ENCODER, CommandRefused

_INSERT = """
INSERT INTO command_refusals (event_id, partner_id, event_type, code, path, message, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
_PENDING = """
FROM command_refusals r
JOIN inbox i ON i.event_id = r.event_id
JOIN unnest($1::text[], $2::int[]) AS w(topic, partition)
  ON i.topic = w.topic AND i.partition = w.partition
WHERE r.published_at IS NULL
"""


def refusal_of(row: asyncpg.Record) -> CommandRefused:
    """The ``CommandRefused`` message of one ``command_refusals`` row."""
    return CommandRefused(
        event_id=row["event_id"],
        partner_id=row["partner_id"],
        command_type=row["event_type"],
        code=row["code"],
        path=row["path"],
        message=row["message"],
        occurred_at=row["occurred_at"],
        refused_at=row["recorded_at"],
    )


OUTBOX = Outbox(
    what="refusals",
    pending=_PENDING,
    columns="r.event_id, r.partner_id, r.event_type, r.code, r.path, r.message,"
    " r.occurred_at, r.recorded_at",
    order="i.arrival_seq",
    mark="""UPDATE command_refusals SET published_at = now()
            WHERE event_id = ANY($1::uuid[]) AND published_at IS NULL""",
    ids=lambda rows: ([r["event_id"] for r in rows],),
    message=lambda row: (row["partner_id"].encode(), REFUSAL_ENCODER.encode(refusal_of(row))),
)
# Send the unpublished refusals of some source partitions (see processors.outbox.relay).
publish_pending = OUTBOX.publish_pending


async def stored_refusals(conn: asyncpg.Connection) -> list[dict[str, object]]:
    """Every stored refusal (what the read side's refusals projection is rebuilt from)."""
    rows = await conn.fetch(
        """SELECT event_id, partner_id, event_type, code, path, message, occurred_at
           FROM command_refusals ORDER BY partner_id, event_id""")
    return [dict(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A valid command the rules refused, as the ledger stage records it."""

    event_id: uuid.UUID
    partner_id: str
    event_type: str
    code: str
    path: str
    message: str
    occurred_at: datetime


async def record(conn: asyncpg.Connection, refused: Sequence[Refusal]) -> None:
    """Write the batch's refusals into the outbox, in the caller's transaction."""
    if refused:
        await conn.executemany(_INSERT, [astuple(r) for r in refused])
