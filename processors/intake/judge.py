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
from datetime import datetime
from typing import Any

from processors.intake.orders import OrderBook, check_key, conflict, identify
from processors.intake.types import (
    Accepted,
    Coordinates,
    DeadLetter,
    Known,
    Outcome,
    ParkedEvent,
    Resolution,
    SourceMessage,
)
from schemas.codec import RejectCode, Rejection, encode, fingerprint
from schemas.commands import ALL_PARTNER_COMMANDS
from schemas.events import PartnerRegistered, SaleRecorded, SaleReversed
from schemas.streams import Message


class Walk:
    """Judges a batch's messages one by one, in order, keeping the batch's view of state."""

    def __init__(
        self,
        streams: Mapping[str, str],
        known: Mapping[uuid.UUID, Known],
        registered: set[str],
        waiting: list[ParkedEvent],
        orders: OrderBook,
        now: datetime,
        poisoned: Mapping[Coordinates, Rejection],
    ) -> None:
        self.streams = streams
        self.poisoned = poisoned
        # Fingerprints of every event id applied or parked, including by this batch.
        self.seen: dict[uuid.UUID, bytes] = {k: v.fingerprint for k, v in known.items()}
        self.registered = set(registered)
        self.waiting: dict[str, list[ParkedEvent]] = defaultdict(list)
        for parked in waiting:
            self.waiting[parked.message.partner_id].append(parked)
        self.orders = orders
        self.now = now
        self.log: list[list[Any]] = []
        self.accepted: list[Accepted] = []
        self.dead: list[DeadLetter] = []
        self.new_parked: list[ParkedEvent] = []
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
        self._accept(Accepted(message, stream, fp, encode(message), m.topic, m.partition,
                              m.offset))  # fmt: skip
        self._log(m, stream, message.event_id, Outcome.APPLIED)
        if isinstance(message, PartnerRegistered) and message.partner_id not in self.registered:
            self.registered.add(message.partner_id)
            self.new_partners.append((message.partner_id, message.event_id, message.occurred_at))
            self._release(message.partner_id)

    def numbered(self, seqs: list[int]) -> list[Accepted]:
        """The accepted events, each with its arrival number (drawn in acceptance order)."""
        assert len(seqs) == len(self.accepted), (len(seqs), len(self.accepted))
        for accepted, seq in zip(self.accepted, seqs, strict=True):
            accepted.arrival_seq = seq
        return self.accepted

    def _accept(self, accepted: Accepted) -> None:
        self.accepted.append(accepted)
        self.seen[accepted.message.event_id] = accepted.fingerprint

    def _stateful(self, message: Message) -> Rejection | None:
        if isinstance(message, SaleRecorded):
            return self.orders.accept_sale(message)
        if isinstance(message, SaleReversed):
            return self.orders.accept_reversal(message)
        return None

    def _park(self, m: SourceMessage, stream: str, message: Message, fp: bytes) -> None:
        raw = m.value
        assert raw is not None  # it decoded
        parked = ParkedEvent(message, stream, m.topic, m.partition, m.offset, fp, raw,
                           encode(message), stored=False)  # fmt: skip
        parked.log_row = self._log(m, stream, message.event_id, Outcome.PARKED)
        self.waiting[message.partner_id].append(parked)
        self.new_parked.append(parked)
        self.seen[message.event_id] = fp

    def _release(self, partner_id: str) -> None:
        """Apply the partner's parked events, in parking order, right after its registration."""
        for parked in self.waiting.pop(partner_id, []):
            message = parked.message
            poison = self.poisoned.get((parked.topic, parked.partition, parked.offset))
            rejection = poison or self._stateful(message)
            if rejection is None:
                outcome, code = Outcome.APPLIED, None
                self._accept(Accepted(message, parked.stream, parked.fingerprint, parked.body,
                                      parked.topic, parked.partition, parked.offset,
                                      released=True))  # fmt: skip
            else:
                outcome, code = Outcome.DEAD_LETTERED, str(rejection.code)
                # Not recorded, so a corrected copy sent later is judged afresh.
                self.seen.pop(message.event_id, None)
                self.dead.append(
                    DeadLetter(parked.topic, parked.partition, parked.offset, parked.stream,
                               message.event_id, message.partner_id, parked.raw, rejection)
                )  # fmt: skip
            if parked.stored:
                self.resolutions.append(
                    Resolution(parked.topic, parked.partition, parked.offset,
                                     message.event_id, outcome, code)
                )  # fmt: skip
            else:
                assert parked.log_row is not None
                parked.log_row[5:8] = [outcome, code, self.now]
                parked.outcome, parked.released_at = outcome, self.now

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
