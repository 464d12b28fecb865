"""The judgement of a batch (pure): each message, in order, against the batch's view of state.

``Walk`` takes the batch's messages one by one with what the batch loaded before it (the
event ids already held, the registered partners, the parked events of the partners being
registered, the order lines the sales and reversals name) and decides for each: applied,
duplicate, dead-lettered (with its rejection) or parked; it releases a partner's parked
events right after the partner's registration. It keeps the rows the batch then writes
(``log``, ``new_parked``, ``resolutions``, ``new_partners``, ``dead``) and the accepted
events in acceptance order. No I/O: ``processors.intake.batch`` loads, walks and writes, and
the unit tests drive it directly (tests/unit/test_intake_judge.py).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from processors.intake.orders import OrderBook, check_key, conflict, identify
from processors.intake.types import (
    Accepted,
    Coordinates,
    DeadLetter,
    Known,
    Outcome,
    ParkedRow,
    Resolution,
    SourceMessage,
)
from schemas.codec import RejectCode, Rejection, encode, fingerprint
from schemas.commands import ALL_PARTNER_COMMANDS
from schemas.events import PartnerRegistered, SaleRecorded, SaleReversed
from schemas.streams import Message, get_stream


@dataclass(slots=True)
class Pending:
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
    outcome: Outcome | None = None
    released_at: datetime | None = None

    @classmethod
    def from_row(cls, row: ParkedRow) -> Pending:
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
class Candidate:
    message: Message
    stream: str
    fingerprint: bytes
    body: bytes
    topic: str
    partition: int
    offset: int
    released: bool


class Walk:
    """Judges a batch's messages one by one, in order, keeping the batch's view of state."""

    def __init__(
        self,
        streams: Mapping[str, str],
        known: Mapping[uuid.UUID, Known],
        registered: set[str],
        waiting: list[Pending],
        orders: OrderBook,
        now: datetime,
        poisoned: Mapping[Coordinates, Rejection],
    ) -> None:
        self.streams = streams
        self.poisoned = poisoned
        # Fingerprints of every event id applied or parked, including by this batch.
        self.seen: dict[uuid.UUID, bytes] = {k: v.fingerprint for k, v in known.items()}
        self.registered = set(registered)
        self.waiting: dict[str, list[Pending]] = defaultdict(list)
        for pending in waiting:
            self.waiting[pending.message.partner_id].append(pending)
        self.orders = orders
        self.now = now
        self.log: list[list[Any]] = []
        self.accepted: list[Candidate] = []
        self.dead: list[DeadLetter] = []
        self.new_parked: list[Pending] = []
        self.resolutions: list[Resolution] = []
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
                self._log(m, stream, message.event_id, Outcome.DUPLICATE)
            else:
                self._dead(m, stream, message, conflict(message, first, fp))
            return
        if needs_partner(message) and message.partner_id not in self.registered:
            self._park(m, stream, message, fp)
            return
        rejection = self._stateful(message)
        if rejection is not None:
            self._dead(m, stream, message, rejection)
            return
        self._accept(Candidate(message, stream, fp, encode(message), m.topic, m.partition,
                                m.offset, released=False))  # fmt: skip
        self._log(m, stream, message.event_id, Outcome.APPLIED)
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

    def _accept(self, candidate: Candidate) -> None:
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
        pending = Pending(message, stream, m.topic, m.partition, m.offset, fp, raw,
                           encode(message), stored=False)  # fmt: skip
        pending.log_row = self._log(m, stream, message.event_id, Outcome.PARKED)
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
                outcome, code = Outcome.APPLIED, None
                self._accept(Candidate(message, pending.stream, pending.fingerprint,
                                        pending.body, pending.topic, pending.partition,
                                        pending.offset, released=True))  # fmt: skip
            else:
                outcome, code = Outcome.DEAD_LETTERED, str(rejection.code)
                # Not recorded, so a corrected copy sent later is judged afresh.
                self.seen.pop(message.event_id, None)
                self.dead.append(
                    DeadLetter(pending.topic, pending.partition, pending.offset, pending.stream,
                               message.event_id, message.partner_id, pending.raw, rejection)
                )  # fmt: skip
            if pending.stored:
                self.resolutions.append(
                    Resolution(pending.topic, pending.partition, pending.offset,
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
        self._log(m, stream, event_id, Outcome.DEAD_LETTERED, str(rejection.code))

    def _log(
        self,
        m: SourceMessage,
        stream: str,
        event_id: uuid.UUID | None,
        outcome: Outcome,
        code: str | None = None,
    ) -> list[Any]:
        row = [m.topic, m.partition, m.offset, stream, event_id, outcome, code, None]
        self.log.append(row)
        return row


def needs_partner(message: Message) -> bool:
    # A registration creates its partner; a period close concerns every partner ("*").
    return not isinstance(message, PartnerRegistered) and not for_everyone(message)


def for_everyone(message: Message) -> bool:
    return isinstance(message, ALL_PARTNER_COMMANDS)
