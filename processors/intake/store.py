"""The SQL of ingestion: one query per kind of lookup per batch, COPY for the rows it adds.

Every function runs on the caller's connection, inside the batch's transaction
(``processors.intake.batch``); none commits. Tables: ``ledger/migrations/0003_ingest.sql``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from processors.intake.orders import LineKey, OrderKey, OrderLine
from processors.intake.types import Known, ParkedEvent, Resolution
from schemas.streams import get_stream


async def known_events(conn: asyncpg.Connection, event_ids: Sequence[uuid.UUID]) -> dict[
    uuid.UUID, Known
]:
    if not event_ids:
        return {}
    rows = await conn.fetch(
        """SELECT event_id, fingerprint, false AS parked FROM inbox
           WHERE event_id = ANY($1::uuid[])
           UNION ALL
           SELECT event_id, fingerprint, true FROM parked_events
           WHERE event_id = ANY($1::uuid[]) AND released_at IS NULL""",
        list(event_ids),
    )
    return {r["event_id"]: Known(bytes(r["fingerprint"]), r["parked"]) for r in rows}


async def registered(conn: asyncpg.Connection, partner_ids: Iterable[str]) -> set[str]:
    wanted = sorted(set(partner_ids))
    if not wanted:
        return set()
    rows = await conn.fetch(
        "SELECT partner_id FROM registered_partners WHERE partner_id = ANY($1::text[])", wanted
    )
    return {r["partner_id"] for r in rows}


async def parked_of(conn: asyncpg.Connection, partner_ids: Iterable[str]) -> list[ParkedEvent]:
    """The waiting events of these partners, in the order they were parked.

    All of them: they are released in the transaction that registers their partner, so this
    is bounded by what was published for a partner before it registered. A body was valid
    when parked; decoding it again cannot fail unless the schema changed incompatibly, which
    by the contract is a new type name, so it would raise.
    """
    wanted = sorted(set(partner_ids))
    if not wanted:
        return []
    rows = await conn.fetch(
        """SELECT stream, topic, partition, kafka_offset, fingerprint, raw, body
           FROM parked_events WHERE partner_id = ANY($1::text[]) AND released_at IS NULL
           ORDER BY park_seq""",
        wanted,
    )
    return [
        ParkedEvent(
            message=get_stream(r["stream"]).decode(bytes(r["body"])),
            stream=r["stream"],
            topic=r["topic"],
            partition=r["partition"],
            offset=r["kafka_offset"],
            fingerprint=bytes(r["fingerprint"]),
            raw=bytes(r["raw"]),
            body=bytes(r["body"]),
            stored=True,
        )
        for r in rows
    ]


async def order_lines(conn: asyncpg.Connection, keys: Iterable[OrderKey]) -> dict[
    LineKey, OrderLine
]:
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await conn.fetch(
        """SELECT o.* FROM sold_lines o
           JOIN unnest($1::text[], $2::text[]) AS k(partner_id, order_id)
             ON o.partner_id = k.partner_id AND o.order_id = k.order_id""",
        [p for p, _ in wanted],
        [o for _, o in wanted],
    )
    return {
        (r["partner_id"], r["order_id"], r["line_id"]): OrderLine(
            currency=r["currency"],
            sale_event_id=r["sale_event_id"],
            quantity_sold=r["quantity_sold"],
            net_sold=r["net_sold"],
            quantity_remaining=r["quantity_remaining"],
            net_remaining=r["net_remaining"],
        )
        for r in rows
    }


# An arbitrary, fixed key for the writers' advisory lock: "incentives apply order".
WRITERS_LOCK_KEY = 7_340_212


async def hold_writers(conn: asyncpg.Connection, *, exclusive: bool) -> None:
    """Take the writers' lock for the rest of the batch's transaction: shared for a batch of
    partner events, exclusive for a batch with a command for every partner.

    A replay applies the inbox in ``arrival_seq`` order. Batches of different partitions
    run side by side, and a period close or clock advance reads and changes every partner,
    so its place in ``arrival_seq`` must also be its place in every partner's history: no
    batch may hold arrival numbers below the close's and commit after it, or above and
    before. The lock is taken before arrival numbers are drawn and held until commit, so
    the exclusive batch waits for every batch that drew numbers before it, and every batch
    that comes later draws numbers after it. Program budgets need no lock here: each
    partition spends its own lease (``processors.engine.leases``).
    """
    if exclusive:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITERS_LOCK_KEY)
    else:
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", WRITERS_LOCK_KEY)


async def arrival_seqs(conn: asyncpg.Connection, count: int) -> list[int]:
    """``count`` increasing values of the inbox's arrival sequence, in one round trip."""
    if count == 0:
        return []
    rows = await conn.fetch(
        "SELECT nextval('inbox_arrival_seq_seq') AS n FROM generate_series(1, $1)", count
    )
    # Values of one sequence drawn by one statement only increase; sorting makes that
    # independent of the row order PostgreSQL returns.
    return sorted(r["n"] for r in rows)


INBOX_COLUMNS = (
    "event_id", "fingerprint", "stream", "partner_id", "topic", "partition", "kafka_offset",
    "arrival_seq", "event_type", "occurred_at", "body", "principal",
)  # fmt: skip
LOG_COLUMNS = (
    "topic", "partition", "kafka_offset", "stream", "event_id", "outcome", "code", "resolved_at",
)  # fmt: skip
PARKED_COLUMNS = (
    "event_id", "partner_id", "stream", "topic", "partition", "kafka_offset", "fingerprint",
    "raw", "body", "released_at", "release_outcome",
)  # fmt: skip
REGISTERED_COLUMNS = ("partner_id", "event_id", "registered_at")


async def copy_rows(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    if rows:
        await conn.copy_records_to_table(table, records=rows, columns=list(columns))


async def outcomes_before(
    conn: asyncpg.Connection, topic: str, partition: int, offset: int, count: int
) -> list[tuple[str, str | None]]:
    """The (outcome, code) of the ``count`` messages logged before ``offset`` on the
    partition, latest first."""
    rows = await conn.fetch(
        """SELECT outcome, code FROM ingest_log
           WHERE topic = $1 AND partition = $2 AND kafka_offset < $3
           ORDER BY kafka_offset DESC LIMIT $4""",
        topic,
        partition,
        offset,
        count,
    )
    return [(r["outcome"], r["code"]) for r in rows]


async def resolve_parked(conn: asyncpg.Connection, resolved: Sequence[Resolution]) -> None:
    """Mark released parked events in ``parked_events`` and in their ``ingest_log`` row."""
    if not resolved:
        return
    await conn.execute(
        """UPDATE parked_events p SET released_at = now(), release_outcome = r.outcome
           FROM unnest($1::uuid[], $2::text[]) AS r(event_id, outcome)
           WHERE p.event_id = r.event_id AND p.released_at IS NULL""",
        [r.event_id for r in resolved],
        [r.outcome for r in resolved],
    )
    status = await conn.execute(
        """UPDATE ingest_log l SET outcome = r.outcome, code = r.code, resolved_at = now()
           FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[])
                AS r(topic, partition, kafka_offset, outcome, code)
           WHERE (l.topic, l.partition, l.kafka_offset) = (r.topic, r.partition, r.kafka_offset)
             AND l.outcome = 'parked'""",
        [r.topic for r in resolved],
        [r.partition for r in resolved],
        [r.offset for r in resolved],
        [r.outcome for r in resolved],
        [r.code for r in resolved],
    )
    updated = int(status.rsplit(" ", 1)[-1])
    # Every parked event has its parked log row; anything else means the log is wrong.
    assert updated == len(resolved), (updated, len(resolved))


async def upsert_order_lines(
    conn: asyncpg.Connection, lines: list[tuple[LineKey, OrderLine]]
) -> None:
    if not lines:
        return
    await conn.execute(
        """INSERT INTO sold_lines (partner_id, order_id, line_id, currency, sale_event_id,
                               quantity_sold, net_sold, quantity_remaining, net_remaining)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[],
                                $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
           ON CONFLICT (partner_id, order_id, line_id) DO UPDATE
           SET quantity_remaining = EXCLUDED.quantity_remaining,
               net_remaining = EXCLUDED.net_remaining, updated_at = now()""",
        [k[0] for k, _ in lines],
        [k[1] for k, _ in lines],
        [k[2] for k, _ in lines],
        [v.currency for _, v in lines],
        [v.sale_event_id for _, v in lines],
        [v.quantity_sold for _, v in lines],
        [v.net_sold for _, v in lines],
        [v.quantity_remaining for _, v in lines],
        [v.net_remaining for _, v in lines],
    )
