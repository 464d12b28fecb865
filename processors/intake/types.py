"""The types that cross the intake stage's boundaries: what comes in from Kafka
(``SourceMessage``), what the batch hands the ledger stage (``Accepted``), what it
dead-letters (``DeadLetter``), what it reports (``BatchReport``), the outcome of every
message (``Outcome``, as stored in ``ingest_log.outcome``), what the judgement needs of
earlier batches (``Known``) and the parked events it releases or parks (``ParkedEvent``),
and what becomes of a parked event (``Resolution``).

A message is decoded once, into the type the engine consumes (``schemas.streams.Message``),
and travels on with its position: as ``Accepted`` (applied) or ``ParkedEvent`` (waiting).

Pure: no asyncpg, no faust. ``processors.intake.store`` reads and writes these.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from schemas.codec import Rejection
from schemas.streams import Message

TopicPartition = tuple[str, int]
Coordinates = tuple[str, int, int]  # topic, partition, offset


class Outcome(StrEnum):
    """What became of a message, as recorded in ``ingest_log.outcome``."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"
    PARKED = "parked"


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One consumed Kafka message, as the batch needs it (no faust or aiokafka types)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class Accepted:
    """An event accepted into the inbox, handed to ``apply_accepted`` in acceptance order.

    ``message`` is the decoded event or command; ``body`` its canonical bytes
    (``schemas.codec.encode``, as stored in ``inbox.body``) and ``fingerprint`` their
    SHA-256. ``topic``/``partition``/``offset`` locate the Kafka message it came in.
    ``released`` is true for an event that waited in ``parked_events`` until its partner
    registered (it then follows the registration). ``arrival_seq`` is its
    ``inbox.arrival_seq``, drawn once the batch knows how many it accepted
    (``Walk.numbered``): per partner, the order in which the engine must apply events,
    live and in a replay.
    """

    message: Message
    stream: str
    fingerprint: bytes
    body: bytes
    topic: str
    partition: int
    offset: int
    released: bool = False
    arrival_seq: int = -1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that will not be applied: where it came from, its bytes, and why."""

    topic: str
    partition: int
    offset: int
    stream: str
    event_id: uuid.UUID | None
    partner_id: str | None
    raw: bytes | None
    rejection: Rejection


@dataclass(slots=True)
class BatchReport:
    """What one batch did. ``applied`` includes ``released``; ``parked`` counts the
    messages parked by this batch that are still waiting at its end."""

    messages: int = 0
    below_position: int = 0
    applied: int = 0
    released: int = 0
    duplicates: int = 0
    parked: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    # Accepted commands the rules refused (``apply_accepted``'s answer).
    refused: list[Accepted] = field(default_factory=list)
    # (stream, outcome) -> messages of this batch, by their outcome at its commit (as the
    # ingest_log rows it inserts say); the worker's metrics count these.
    outcomes: dict[tuple[str, Outcome], int] = field(default_factory=dict)



@dataclass(frozen=True, slots=True)
class Known:
    """An event id already held: applied (in the inbox) or waiting in ``parked_events``."""

    fingerprint: bytes
    parked: bool


@dataclass(slots=True)
class ParkedEvent:
    """An event waiting in ``parked_events`` for its partner's registration: parked by an
    earlier batch (``stored``; ``processors.intake.store.parked_of`` decodes its body again,
    valid when it was parked) or by this one, whose ``ingest_log`` row (``log_row``) and
    ``parked_events`` row (``row()``) the batch writes at its end, with the outcome and time
    of its release if the same batch released it."""

    message: Message
    stream: str
    topic: str
    partition: int
    offset: int
    fingerprint: bytes
    raw: bytes
    body: bytes
    stored: bool
    log_row: list[Any] | None = None
    outcome: Outcome | None = None
    released_at: datetime | None = None

    def row(self) -> tuple[Any, ...]:
        """The ``parked_events`` row (``processors.intake.store.PARKED_COLUMNS``)."""
        return (
            self.message.event_id, self.message.partner_id, self.stream, self.topic,
            self.partition, self.offset, self.fingerprint, self.raw, self.body,
            self.released_at, self.outcome,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Resolution:
    """What became of a parked event when its partner registered."""

    topic: str
    partition: int
    offset: int
    event_id: uuid.UUID
    outcome: Outcome  # APPLIED or DEAD_LETTERED
    code: str | None  # the reject code of a dead letter
