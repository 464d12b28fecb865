"""Ingestion: one batch of Kafka messages in, one PostgreSQL transaction out.

``BatchProcessor.process(conn, messages)`` runs the first stage of the ledger worker. In one
transaction it:

1. locks the consumer positions of the batch's partitions and drops what lies below them
   (already done by an earlier worker);
2. decodes every message with ``schemas.codec.decode`` (its stream from its topic) and
   checks that the Kafka key is the ``partner_id``;
3. looks up the batch's event ids in the inbox and among parked events (one query): the
   same id with the same fingerprint is a ``duplicate`` (counted, not applied), with another
   fingerprint a dead letter ``conflict``; copies within the batch are judged the same way;
4. parks the events of partners that are not registered (``parked_events``); when a
   ``PartnerRegistered`` is accepted, that partner's parked events are released right after
   it, in the order they were parked, so the result does not depend on how the partners
   topic and the other topics interleave;
5. checks reversals against the orders sold (``unknown_order``, ``currency_mismatch``,
   ``reversal_exceeds_sale``); a sale of an order already recorded is ``invalid_value``;
6. writes the inbox rows in acceptance order (``inbox.arrival_seq``), the outcome of every
   message (``ingest_log``), the dead letters (an outbox, see ``processors.outbox.deadletters``),
   parked events, registrations and order lines;
7. calls ``apply_accepted(conn, accepted)`` with the accepted events in acceptance order,
   through which the program engine appends its ledger records in the same transaction;
8. advances the positions, and commits.

If anything raises, the transaction rolls back and nothing of the batch is recorded: the
caller must not consume past the failed batch, or the positions would skip it. The worker
retries it, or narrows the failure down to one message (``processors.writer.isolation``), which it
then processes alone with ``poisoned``: that message is dead-lettered with the rejection
given instead of being applied, and everything else about it is recorded as usual.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any

import asyncpg
import msgspec

from ledger import program_store
from processors.intake import consumer_positions as positions
from processors.intake import store
from processors.intake.orders import OrderBook, OrderKey, check_key, conflict, identify
from schemas.codec import (
    Limits,
    RejectCode,
    Rejection,
    decode,
    encode,
    fingerprint,
    ten_years_before,
)
from schemas.commands import ALL_PARTNER_COMMANDS
from schemas.events import PartnerRegistered, SaleRecorded, SaleReversed
from schemas.principals import publisher_of
from schemas.streams import Message, get_stream

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
Coordinates = tuple[str, int, int]  # topic, partition, offset

# Outcomes of a message, as recorded in ingest_log.outcome.
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


# The hook through which the program engine runs inside the batch's transaction. It gets
# the batch's connection (in the transaction) and the accepted events in acceptance order,
# and appends ledger records; raising rolls the whole batch back. It returns the accepted
# commands the rules refused (their reasons are in command_refusals, an outbox that the
# worker publishes once the batch has committed).
ApplyHook = Callable[[asyncpg.Connection, list[Accepted]], Awaitable[list[Accepted]]]


async def apply_nothing(conn: asyncpg.Connection, accepted: list[Accepted]) -> list[Accepted]:
    """The default hook: ingestion only (until the engine is plugged in)."""
    return []


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
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)


class BatchProcessor:
    """Turns batches of one consumer group's messages into transactions; see the module."""

    def __init__(
        self,
        *,
        group: str,
        streams: Mapping[str, str],
        limits: Limits,
        apply_accepted: ApplyHook = apply_nothing,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``streams`` maps each consumed topic to its logical stream (``"sales"``, ...)."""
        for stream in streams.values():
            get_stream(stream)  # an unknown stream is a wiring error: fail at start-up
        self.group = group
        self.streams = dict(streams)
        self.limits = limits
        self.apply_accepted = apply_accepted
        self.clock = clock

    async def process(
        self,
        conn: asyncpg.Connection,
        messages: Sequence[SourceMessage],
        *,
        poisoned: Mapping[Coordinates, Rejection] | None = None,
    ) -> BatchReport:
        """Process one batch in one transaction on ``conn``; return what it did. The
        messages at the coordinates of ``poisoned`` (fresh ones, or parked ones released by
        the batch) are dead-lettered with the rejection given, whatever they hold."""
        report = BatchReport(messages=len(messages))
        if not messages:
            return report
        async with conn.transaction():
            tps = {(m.topic, m.partition) for m in messages}
            before = await positions.lock(conn, self.group, tps)
            fresh, after = positions.above(messages, before)
            report.below_position = len(messages) - len(fresh)
            if report.below_position:
                # A stale worker (its partitions moved on in a rebalance while it consumed)
                # waited on the position rows above and finds its messages written by the
                # new owner; a restarted worker finds those Kafka delivered again.
                log.warning(
                    "dropped %d of %d messages of %s: below the positions stored in PostgreSQL,"
                    " already written by another worker or an earlier run (stale worker or"
                    " redelivery)",
                    report.below_position, len(messages),
                    positions.dropped_ranges(messages, before),
                )  # fmt: skip
            if fresh:
                event_times = await self._process_fresh(conn, fresh, report, poisoned or {})
                await positions.advance(conn, self.group, before, after, event_times)
            report.positions = after
        return report

    async def _process_fresh(
        self,
        conn: asyncpg.Connection,
        messages: list[SourceMessage],
        report: BatchReport,
        poisoned: Mapping[Coordinates, Rejection],
    ) -> dict[TopicPartition, datetime]:
        """Judge, record and apply the batch; return the latest event time per partition."""
        now = self.clock()
        limits = await self._limits(conn)
        decoded = [
            decode(self.streams[m.topic], m.value, now=now, limits=limits) for m in messages
        ]
        events = [d for d in decoded if not isinstance(d, Rejection)]
        await store.hold_writers(conn, exclusive=any(_for_everyone(e) for e in events))
        known = await store.known_events(conn, [e.event_id for e in events])
        registered = await store.registered(conn, (e.partner_id for e in events))
        registering = {
            e.partner_id
            for e in events
            if isinstance(e, PartnerRegistered) and e.partner_id not in registered
        }
        waiting = [_Pending.from_row(r) for r in await store.parked_of(conn, registering)]
        keys: set[OrderKey] = {
            (e.partner_id, e.order_id)
            for e in [*events, *(p.message for p in waiting)]
            if isinstance(e, SaleRecorded | SaleReversed)
        }
        orders = OrderBook(await store.order_lines(conn, keys))

        walk = _Walk(self.streams, known, registered, waiting, orders, now, poisoned)
        for message, result in zip(messages, decoded, strict=True):
            walk.take(message, result)
        await self._write(conn, walk)
        accepted = walk.accepted_with_seqs(await store.arrival_seqs(conn, len(walk.accepted)))
        await store.copy_rows(conn, "inbox", store.INBOX_COLUMNS, [_inbox_row(a) for a in accepted])
        report.refused = await self.apply_accepted(conn, accepted)

        report.applied = len(accepted)
        report.released = sum(a.released for a in accepted)
        report.duplicates = walk.duplicates
        report.parked = sum(1 for p in walk.new_parked if p.outcome is None)
        report.dead_letters = walk.dead
        for row in walk.log:  # [topic, partition, offset, stream, event_id, outcome, ...]
            key = (row[3], row[5])
            report.outcomes[key] = report.outcomes.get(key, 0) + 1
        event_times: dict[TopicPartition, datetime] = {}
        for m, result in zip(messages, decoded, strict=True):
            if not isinstance(result, Rejection):
                tp = (m.topic, m.partition)
                event_times[tp] = max(event_times.get(tp, result.occurred_at), result.occurred_at)
        return event_times

    def registers(self, message: SourceMessage) -> str | None:
        """The partner ``message`` registers, if it is a valid ``PartnerRegistered``."""
        decoded = decode(self.streams[message.topic], message.value, now=self.clock(),
                         limits=self.limits)  # fmt: skip
        return decoded.partner_id if isinstance(decoded, PartnerRegistered) else None

    async def _limits(self, conn: asyncpg.Connection) -> Limits:
        """The limits, with the earliest occurred_at accepted ten years before the oldest
        program's effective_from unless one is configured (see schemas.codec)."""
        if self.limits.earliest_occurred_at is not None:
            return self.limits
        oldest = await program_store.earliest_effective_from(conn)
        if oldest is None:
            return self.limits
        program_id, effective_from = oldest
        start = datetime.combine(effective_from, time(), UTC)
        return msgspec.structs.replace(
            self.limits,
            earliest_occurred_at=ten_years_before(start),
            earliest_basis=f"ten years before {program_id} took effect on {effective_from}",
        )

    async def _write(self, conn: asyncpg.Connection, walk: _Walk) -> None:
        await store.copy_rows(conn, "ingest_log", store.LOG_COLUMNS, walk.log)
        await store.resolve_parked(conn, walk.resolutions)
        await store.copy_rows(
            conn, "parked_events", store.PARKED_COLUMNS, [p.row() for p in walk.new_parked]
        )
        await store.copy_rows(
            conn, "dead_letters", store.DEAD_LETTER_COLUMNS, [_dead_row(d) for d in walk.dead]
        )
        await store.copy_rows(
            conn, "registered_partners", store.REGISTERED_COLUMNS, walk.new_partners
        )
        await store.upsert_order_lines(conn, list(walk.orders.changed()))


@dataclass(slots=True)
class _Pending:
    """A parked event in memory: from an earlier batch (``stored``) or parked by this one."""

    message: Message
    stream: str
    topic: str
    partition: int
    offset: int
    fingerprint: bytes
    raw: bytes
    body: bytes
    stored: bool
    log_row: list[Any] | None = None  # this batch's ingest_log row, while not stored
    outcome: str | None = None
    released_at: datetime | None = None

    @classmethod
    def from_row(cls, row: store.ParkedRow) -> _Pending:
        # The body was valid when parked; decoding it again cannot fail unless the schema
        # changed incompatibly, which is a new type name by the contract, so it would raise.
        message = get_stream(row.stream).decode(row.body)
        return cls(
            message, row.stream, row.topic, row.partition, row.offset, row.fingerprint,
            row.raw, row.body, stored=True,
        )  # fmt: skip

    def row(self) -> tuple[Any, ...]:
        return (
            self.message.event_id, self.message.partner_id, self.stream, self.topic,
            self.partition, self.offset, self.fingerprint, self.raw, self.body,
            self.released_at, self.outcome,
        )  # fmt: skip


@dataclass(slots=True)
class _Candidate:
    message: Message
    stream: str
    fingerprint: bytes
    body: bytes
    topic: str
    partition: int
    offset: int
    released: bool


class _Walk:
    """Judges a batch's messages one by one, in order, keeping the batch's view of state."""

    def __init__(
        self,
        streams: Mapping[str, str],
        known: Mapping[uuid.UUID, store.Known],
        registered: set[str],
        waiting: list[_Pending],
        orders: OrderBook,
        now: datetime,
        poisoned: Mapping[Coordinates, Rejection],
    ) -> None:
        self.streams = streams
        self.poisoned = poisoned
        # Fingerprints of every event id applied or parked, including by this batch.
        self.seen: dict[uuid.UUID, bytes] = {k: v.fingerprint for k, v in known.items()}
        self.registered = set(registered)
        self.waiting: dict[str, list[_Pending]] = defaultdict(list)
        for pending in waiting:
            self.waiting[pending.message.partner_id].append(pending)
        self.orders = orders
        self.now = now
        self.log: list[list[Any]] = []
        self.accepted: list[_Candidate] = []
        self.dead: list[DeadLetter] = []
        self.new_parked: list[_Pending] = []
        self.resolutions: list[store.Resolution] = []
        self.new_partners: list[tuple[Any, ...]] = []
        self.duplicates = 0

    def take(self, m: SourceMessage, result: Message | Rejection) -> None:
        stream = self.streams[m.topic]
        if isinstance(result, Rejection):
            self._dead(m, stream, None, result)
            return
        message = result
        rejection = self.poisoned.get((m.topic, m.partition, m.offset)) or check_key(
            m.key, message
        )
        if rejection is not None:
            self._dead(m, stream, message, rejection)
            return
        fp = fingerprint(message)
        first = self.seen.get(message.event_id)
        if first is not None:
            if first == fp:
                self.duplicates += 1
                self._log(m, stream, message.event_id, DUPLICATE)
            else:
                self._dead(m, stream, message, conflict(message, first, fp))
            return
        if _needs_partner(message) and message.partner_id not in self.registered:
            self._park(m, stream, message, fp)
            return
        rejection = self._stateful(message)
        if rejection is not None:
            self._dead(m, stream, message, rejection)
            return
        self._accept(_Candidate(message, stream, fp, encode(message), m.topic, m.partition,
                                m.offset, released=False))  # fmt: skip
        self._log(m, stream, message.event_id, APPLIED)
        if isinstance(message, PartnerRegistered) and message.partner_id not in self.registered:
            self.registered.add(message.partner_id)
            self.new_partners.append((message.partner_id, message.event_id, message.occurred_at))
            self._release(message.partner_id)

    def accepted_with_seqs(self, seqs: list[int]) -> list[Accepted]:
        assert len(seqs) == len(self.accepted), (len(seqs), len(self.accepted))
        return [
            Accepted(
                message=c.message, stream=c.stream, arrival_seq=seq, fingerprint=c.fingerprint,
                body=c.body, topic=c.topic, partition=c.partition, offset=c.offset,
                released=c.released,
            )  # fmt: skip
            for c, seq in zip(self.accepted, seqs, strict=True)
        ]

    def _accept(self, candidate: _Candidate) -> None:
        self.accepted.append(candidate)
        self.seen[candidate.message.event_id] = candidate.fingerprint

    def _stateful(self, message: Message) -> Rejection | None:
        if isinstance(message, SaleRecorded):
            return self.orders.accept_sale(message)
        if isinstance(message, SaleReversed):
            return self.orders.accept_reversal(message)
        return None

    def _park(self, m: SourceMessage, stream: str, message: Message, fp: bytes) -> None:
        raw = m.value
        assert raw is not None  # it decoded
        pending = _Pending(message, stream, m.topic, m.partition, m.offset, fp, raw,
                           encode(message), stored=False)  # fmt: skip
        pending.log_row = self._log(m, stream, message.event_id, PARKED)
        self.waiting[message.partner_id].append(pending)
        self.new_parked.append(pending)
        self.seen[message.event_id] = fp

    def _release(self, partner_id: str) -> None:
        """Apply the partner's parked events, in parking order, right after its registration."""
        for pending in self.waiting.pop(partner_id, []):
            message = pending.message
            poison = self.poisoned.get((pending.topic, pending.partition, pending.offset))
            rejection = poison or self._stateful(message)
            if rejection is None:
                outcome, code = APPLIED, None
                self._accept(_Candidate(message, pending.stream, pending.fingerprint,
                                        pending.body, pending.topic, pending.partition,
                                        pending.offset, released=True))  # fmt: skip
            else:
                outcome, code = DEAD_LETTERED, str(rejection.code)
                # Not recorded, so a corrected copy sent later is judged afresh.
                self.seen.pop(message.event_id, None)
                self.dead.append(
                    DeadLetter(pending.topic, pending.partition, pending.offset, pending.stream,
                               message.event_id, message.partner_id, pending.raw, rejection)
                )  # fmt: skip
            if pending.stored:
                self.resolutions.append(
                    store.Resolution(pending.topic, pending.partition, pending.offset,
                                     message.event_id, outcome, code)
                )  # fmt: skip
            else:
                assert pending.log_row is not None
                pending.log_row[5:8] = [outcome, code, self.now]
                pending.outcome, pending.released_at = outcome, self.now

    def _dead(
        self, m: SourceMessage, stream: str, message: Message | None, rejection: Rejection
    ) -> None:
        event_id: uuid.UUID | None
        partner_id: str | None
        if message is not None:
            event_id, partner_id = message.event_id, message.partner_id
        elif rejection.code is RejectCode.TOO_DEEP:
            event_id, partner_id = None, None  # not to be parsed at all
        else:
            event_id, partner_id = identify(m.value)
        self.dead.append(
            DeadLetter(m.topic, m.partition, m.offset, stream, event_id, partner_id, m.value,
                       rejection)
        )  # fmt: skip
        self._log(m, stream, event_id, DEAD_LETTERED, str(rejection.code))

    def _log(
        self,
        m: SourceMessage,
        stream: str,
        event_id: uuid.UUID | None,
        outcome: str,
        code: str | None = None,
    ) -> list[Any]:
        row = [m.topic, m.partition, m.offset, stream, event_id, outcome, code, None]
        self.log.append(row)
        return row


def _needs_partner(message: Message) -> bool:
    # A registration creates its partner; a period close concerns every partner ("*").
    return not isinstance(message, PartnerRegistered) and not _for_everyone(message)


def _for_everyone(message: Message) -> bool:
    return isinstance(message, ALL_PARTNER_COMMANDS)


def _inbox_row(a: Accepted) -> tuple[Any, ...]:
    m = a.message
    # The principal is the topic's one publisher, which the ACLs prove (schemas.principals).
    return (
        m.event_id, a.fingerprint, a.stream, m.partner_id, a.topic, a.partition, a.offset,
        a.arrival_seq, type(m).__name__, m.occurred_at, a.body, publisher_of(a.stream),
    )  # fmt: skip


def _dead_row(d: DeadLetter) -> tuple[Any, ...]:
    r = d.rejection
    return (
        d.topic, d.partition, d.offset, d.stream, d.event_id, d.partner_id, d.raw, str(r.code),
        r.path, r.message,
    )  # fmt: skip
