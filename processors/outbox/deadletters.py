"""Dead letters: the outbox in PostgreSQL and its copy on the dead-letter topic.

A batch writes its dead letters into ``dead_letters`` in its own transaction, so PostgreSQL
holds exactly one per rejected message and reconciliation counts from there. After the
commit ``publish_pending`` sends them to the ``deadletters`` stream and marks them
published. A worker that dies in between leaves them unpublished; the next worker that is
assigned the partition sends them (at least once on Kafka, exactly once in PostgreSQL).

On the topic, the key is the source coordinates ``topic:partition:offset`` (":" cannot
occur in a topic name) and the value a JSON ``Envelope``.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec

from processors.intake.types import DeadLetter
from processors.outbox.relay import Outbox

DEADLETTERS = "deadletters"
# A rejected message may be as large as Kafka allows (about 1 MB); in base64 inside an
# envelope it would not fit on the dead-letter topic, so larger ones are cut.
RAW_IN_ENVELOPE_MAX_BYTES = 512_000


_RECORD_COLUMNS = [
    "topic", "partition", "kafka_offset", "stream", "event_id", "partner_id", "raw", "code",
    "path", "message",
]  # fmt: skip


async def record(conn: asyncpg.Connection, letters: Sequence[DeadLetter]) -> None:
    """Write the batch's dead letters into the outbox, in the caller's transaction."""
    if letters:
        await conn.copy_records_to_table("dead_letters", columns=_RECORD_COLUMNS, records=[
            (d.topic, d.partition, d.offset, d.stream, d.event_id, d.partner_id, d.raw,
             str(d.rejection.code), d.rejection.path, d.rejection.message)
            for d in letters
        ])  # fmt: skip


class Source(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    partition: int
    offset: int


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """The value of a message on the dead-letter topic.

    ``raw_base64`` is the original value exactly as consumed (null for a message without
    a value), cut to its first RAW_IN_ENVELOPE_MAX_BYTES (``raw_truncated``; PostgreSQL
    keeps all of it) so that the envelope fits Kafka's message size limit. ``code``,
    ``path`` and ``message`` say why it was rejected (the reason codes of
    docs/integration.md). ``event_id`` and ``partner_id`` are given when they could be read
    from the message.
    """

    source: Source
    stream: str
    code: str
    path: str
    message: str
    raw_base64: str | None
    raw_bytes: int
    raw_truncated: bool
    received_at: datetime
    event_id: uuid.UUID | None = None
    partner_id: str | None = None


_ENCODER = msgspec.json.Encoder()

_COLUMNS = (
    "topic", "partition", "kafka_offset", "stream", "event_id", "partner_id", "raw", "code",
    "path", "message", "received_at", "published_at",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM dead_letters "


def key_of(topic: str, partition: int, offset: int) -> bytes:
    return f"{topic}:{partition}:{offset}".encode()


def envelope_of(row: asyncpg.Record) -> Envelope:
    raw = None if row["raw"] is None else bytes(row["raw"])
    shown = None if raw is None else raw[:RAW_IN_ENVELOPE_MAX_BYTES]
    return Envelope(
        source=Source(topic=row["topic"], partition=row["partition"], offset=row["kafka_offset"]),
        stream=row["stream"],
        code=row["code"],
        path=row["path"],
        message=row["message"],
        raw_base64=None if shown is None else base64.b64encode(shown).decode("ascii"),
        raw_bytes=0 if raw is None else len(raw),
        raw_truncated=raw is not None and shown is not None and len(shown) < len(raw),
        received_at=row["received_at"],
        event_id=row["event_id"],
        partner_id=row["partner_id"],
    )


def _message(row: asyncpg.Record) -> tuple[bytes, bytes]:
    return (
        key_of(row["topic"], row["partition"], row["kafka_offset"]),
        _ENCODER.encode(envelope_of(row)),
    )


OUTBOX = Outbox(
    what="dead letters",
    pending="""FROM dead_letters d
               JOIN unnest($1::text[], $2::int[]) AS w(topic, partition)
                 ON d.topic = w.topic AND d.partition = w.partition
               WHERE d.published_at IS NULL""",
    columns=", ".join(f"d.{c}" for c in _COLUMNS),
    order="d.topic, d.partition, d.kafka_offset",
    mark="""UPDATE dead_letters d SET published_at = now()
            FROM unnest($1::text[], $2::int[], $3::bigint[]) AS s(topic, partition, o)
            WHERE (d.topic, d.partition, d.kafka_offset) = (s.topic, s.partition, s.o)
              AND d.published_at IS NULL""",
    ids=lambda rows: (
        [r["topic"] for r in rows], [r["partition"] for r in rows],
        [r["kafka_offset"] for r in rows],
    ),  # fmt: skip
    message=_message,
)
# Send the unpublished dead letters of some source partitions (see processors.outbox.relay).
publish_pending = OUTBOX.publish_pending


# ---------------------------------------------------------------------------------------
# Reading, for `incentives deadletters`.


async def summary(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Per code: how many dead letters, how many not yet on the topic, first and last."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT code, count(*) AS count, count(*) FILTER (WHERE published_at IS NULL)
                  AS unpublished, min(received_at) AS first, max(received_at) AS last
           FROM dead_letters GROUP BY code ORDER BY count(*) DESC, code"""
    )
    return rows


async def latest(conn: asyncpg.Connection, code: str | None, limit: int) -> list[asyncpg.Record]:
    """The newest ``limit`` dead letters, of one code or all."""
    rows: list[asyncpg.Record] = await conn.fetch(
        _SELECT
        + """WHERE $1::text IS NULL OR code = $1
             ORDER BY received_at DESC, topic, partition, kafka_offset DESC LIMIT $2""",
        code,
        limit,
    )
    return rows
