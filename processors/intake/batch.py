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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, time
from typing import Any

import asyncpg
import msgspec

from ledger import program_store
from processors.intake import consumer_positions as positions
from processors.intake import store
from processors.intake.judge import Walk, for_everyone
from processors.intake.orders import OrderBook, OrderKey
from processors.intake.types import (
    Accepted,
    BatchReport,
    Coordinates,
    DeadLetter,
    Outcome,
    SourceMessage,
    TopicPartition,
)
from processors.outbox import deadletters
from schemas.codec import Limits, Rejection, decode, ten_years_before
from schemas.events import PartnerRegistered, SaleRecorded, SaleReversed
from schemas.principals import publisher_of
from schemas.streams import get_stream

log = logging.getLogger(__name__)

# The types of the stage's boundaries, importable from here as before.
__all__ = [
    "Accepted", "ApplyHook", "BatchProcessor", "BatchReport", "Coordinates", "DeadLetter",
    "Outcome", "SourceMessage", "TopicPartition", "apply_nothing",
]  # fmt: skip


# The hook through which the program engine runs inside the batch's transaction. It gets
# the batch's connection (in the transaction) and the accepted events in acceptance order,
# and appends ledger records; raising rolls the whole batch back. It returns the accepted
# commands the rules refused (their reasons are in command_refusals, an outbox that the
# worker publishes once the batch has committed).
ApplyHook = Callable[[asyncpg.Connection, list[Accepted]], Awaitable[list[Accepted]]]


async def apply_nothing(conn: asyncpg.Connection, accepted: list[Accepted]) -> list[Accepted]:
    """The default hook: ingestion only (until the engine is plugged in)."""
    return []



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
        await store.hold_writers(conn, exclusive=any(for_everyone(e) for e in events))
        known = await store.known_events(conn, [e.event_id for e in events])
        registered = await store.registered(conn, (e.partner_id for e in events))
        registering = {
            e.partner_id
            for e in events
            if isinstance(e, PartnerRegistered) and e.partner_id not in registered
        }
        waiting = await store.parked_of(conn, registering)
        keys: set[OrderKey] = {
            (e.partner_id, e.order_id)
            for e in [*events, *(p.message for p in waiting)]
            if isinstance(e, SaleRecorded | SaleReversed)
        }
        orders = OrderBook(await store.order_lines(conn, keys))

        walk = Walk(self.streams, known, registered, waiting, orders, now, poisoned)
        for message, result in zip(messages, decoded, strict=True):
            walk.take(message, result)
        await self._write(conn, walk)
        accepted = walk.numbered(await store.arrival_seqs(conn, len(walk.accepted)))
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

    async def _write(self, conn: asyncpg.Connection, walk: Walk) -> None:
        await store.copy_rows(conn, "ingest_log", store.LOG_COLUMNS, walk.log)
        await store.resolve_parked(conn, walk.resolutions)
        await store.copy_rows(
            conn, "parked_events", store.PARKED_COLUMNS, [p.row() for p in walk.new_parked]
        )
        await deadletters.record(conn, walk.dead)
        await store.copy_rows(
            conn, "registered_partners", store.REGISTERED_COLUMNS, walk.new_partners
        )
        await store.upsert_order_lines(conn, list(walk.orders.changed()))


def _inbox_row(a: Accepted) -> tuple[Any, ...]:
    m = a.message
    # The principal is the topic's one publisher, which the ACLs prove (schemas.principals).
    return (
        m.event_id, a.fingerprint, a.stream, m.partner_id, a.topic, a.partition, a.offset,
        a.arrival_seq, type(m).__name__, m.occurred_at, a.body, publisher_of(a.stream),
    )  # fmt: skip

