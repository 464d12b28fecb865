"""The types that cross the intake stage's boundaries: what comes in from Kafka
(``SourceMessage``), what the batch hands the ledger stage (``Accepted``), what it
dead-letters (``DeadLetter``), what it reports (``BatchReport``), the outcome of every
message (``Outcome``, as stored in ``ingest_log.outcome``) and the rows of earlier batches
the judgement needs (``Known``, ``ParkedRow``) or produces (``Resolution``).

Pure: no asyncpg, no faust. ``processors.intake.store`` reads and writes these.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

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


@dataclass(frozen=True, slots=True)
class Accepted:
    """An event accepted into the inbox, handed to ``apply_accepted`` in acceptance order.

    ``message`` is the decoded event or command; ``body`` its canonical bytes
    (``schemas.codec.encode``, as stored in ``inbox.body``) and ``fingerprint`` their
    SHA-256. ``arrival_seq`` is its ``inbox.arrival_seq``: per partner, the order in which
    the engine must apply events, live and in a replay. ``topic``/``partition``/``offset``
    locate the Kafka message it came in. ``released`` is true for an event that waited in
    ``parked_events`` until its partner registered (it then follows the registration).
    """

    message: Message
    stream: str
    arrival_seq: int
    fingerprint: bytes
    body: bytes
    topic: str
    partition: int
    offset: int
    released: bool = False


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


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """A parked event as stored, in park order."""

    event_id: uuid.UUID
    partner_id: str
    stream: str
    topic: str
    partition: int
    offset: int
    fingerprint: bytes
    raw: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class Resolution:
    """What became of a parked event when its partner registered."""

    topic: str
    partition: int
    offset: int
    event_id: uuid.UUID
    outcome: Outcome  # APPLIED or DEAD_LETTERED
    code: str | None  # the reject code of a dead letter
