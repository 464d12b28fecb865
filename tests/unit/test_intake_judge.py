"""The judgement of a batch, without PostgreSQL: processors.intake.judge.Walk.

Each test builds the batch's view of state by hand (what the store would have loaded),
walks messages through it in order and checks what it decided and which rows it would write.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec

from processors.intake.judge import Walk
from processors.intake.orders import OrderBook
from processors.intake.types import Known, Outcome, ParkedEvent, SourceMessage
from schemas.codec import Limits, RejectCode, Rejection, decode, encode, fingerprint
from schemas.streams import Message

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
STREAMS = {"t.partners": "partners", "t.sales": "sales"}
TOPIC_OF = {"partners": "t.partners", "sales": "t.sales"}


def _uuid(n: int) -> str:
    return str(uuid.UUID(int=n))


def registration(partner: str, n: int) -> dict[str, Any]:
    return {
        "type": "PartnerRegistered", "event_id": _uuid(n), "occurred_at": "2026-01-01T07:00:00Z",
        "partner_id": partner, "kind": "reseller", "region": "DK", "team": "south",
        "joined_on": "2025-10-19", "status": "active",
    }  # fmt: skip


def sale(partner: str, n: int, order: str, amount: int = 5000) -> dict[str, Any]:
    return {
        "type": "SaleRecorded", "event_id": _uuid(n), "occurred_at": "2026-01-02T08:00:00Z",
        "partner_id": partner, "order_id": order, "currency": "EUR", "customer_id": "C-1",
        "new_customer": False, "region": "DE",
        "lines": [{"line_id": "1", "sku": "SKU-1", "category": "software", "quantity": 1,
                   "net_amount": amount}],
    }  # fmt: skip


def full_reversal(partner: str, n: int, order: str) -> dict[str, Any]:
    return {
        "type": "SaleReversed", "event_id": _uuid(n), "occurred_at": "2026-01-05T16:00:00Z",
        "partner_id": partner, "order_id": order, "reversal_id": f"RMA-{n}", "currency": "EUR",
        "reason": "customer return", "scope": "full",
    }  # fmt: skip


class Batch:
    """Kafka messages at consecutive offsets, and their decoding as the batch does it."""

    def __init__(self) -> None:
        self.offset = 0

    def message(self, raw: dict[str, Any], key: str | None = None) -> SourceMessage:
        stream = "partners" if raw["type"] == "PartnerRegistered" else "sales"
        self.offset += 1
        partner = raw["partner_id"] if key is None else key
        return SourceMessage(TOPIC_OF[stream], 0, self.offset, partner.encode(),
                             msgspec.json.encode(raw))  # fmt: skip


def decoded(m: SourceMessage) -> Message | Rejection:
    return decode(STREAMS[m.topic], m.value, now=NOW, limits=Limits())


def walk(
    *,
    known: dict[uuid.UUID, Known] | None = None,
    registered: set[str] | None = None,
    waiting: list[ParkedEvent] | None = None,
    poisoned: dict[tuple[str, int, int], Rejection] | None = None,
) -> Walk:
    return Walk(STREAMS, known or {}, registered or set(), waiting or [], OrderBook({}), NOW,
                poisoned or {})  # fmt: skip


def take_all(w: Walk, messages: list[SourceMessage]) -> None:
    for m in messages:
        w.take(m, decoded(m))


def outcomes(w: Walk) -> list[tuple[int, Outcome, str | None]]:
    """(offset, outcome, code) of every ingest_log row the batch would write."""
    return [(row[2], row[5], row[6]) for row in w.log]


def test_a_registered_partners_sale_is_applied_and_its_copy_counted_as_a_duplicate() -> None:
    b = Batch()
    first = b.message(sale("P-1", 1, "SO-1"))
    copy = b.message(sale("P-1", 1, "SO-1"))
    w = walk(registered={"P-1"})
    take_all(w, [first, copy])
    assert outcomes(w) == [(1, Outcome.APPLIED, None), (2, Outcome.DUPLICATE, None)]
    assert w.duplicates == 1
    assert [c.offset for c in w.accepted] == [1]
    assert w.dead == []


def test_the_same_event_id_with_other_content_is_a_conflict() -> None:
    b = Batch()
    w = walk(registered={"P-1"})
    take_all(w, [b.message(sale("P-1", 1, "SO-1")), b.message(sale("P-1", 1, "SO-2"))])
    assert [(d.offset, d.rejection.code) for d in w.dead] == [(2, RejectCode.CONFLICT)]
    assert outcomes(w)[1] == (2, Outcome.DEAD_LETTERED, str(RejectCode.CONFLICT))


def test_an_event_id_held_by_an_earlier_batch_is_a_duplicate_only_with_its_fingerprint() -> None:
    b = Batch()
    same, other = b.message(sale("P-1", 1, "SO-1")), b.message(sale("P-1", 2, "SO-2"))
    held = decoded(same)
    assert not isinstance(held, Rejection)
    known = {
        held.event_id: Known(fingerprint(held), parked=False),
        uuid.UUID(int=2): Known(b"\x00" * 32, parked=False),
    }
    w = walk(known=known, registered={"P-1"})
    take_all(w, [same, other])
    assert outcomes(w) == [
        (1, Outcome.DUPLICATE, None), (2, Outcome.DEAD_LETTERED, str(RejectCode.CONFLICT)),
    ]  # fmt: skip


def test_a_sale_before_its_partners_registration_is_parked_then_released_right_after_it() -> None:
    b = Batch()
    early = b.message(sale("P-2", 10, "SO-9"))
    other = b.message(sale("P-1", 11, "SO-8"))
    joins = b.message(registration("P-2", 12))
    w = walk(registered={"P-1"})
    take_all(w, [early, other, joins])
    # Acceptance order: the other partner's sale, the registration, then the parked sale.
    assert [(c.offset, c.released) for c in w.accepted] == [(2, False), (3, False), (1, True)]
    # The parked message's own log row now says applied, at the release.
    assert outcomes(w) == [
        (1, Outcome.APPLIED, None), (2, Outcome.APPLIED, None), (3, Outcome.APPLIED, None),
    ]  # fmt: skip
    assert w.log[0][7] == NOW
    assert [p.outcome for p in w.new_parked] == [Outcome.APPLIED]
    assert [row[0] for row in w.new_partners] == ["P-2"]


def test_a_partner_never_registered_in_the_batch_keeps_its_event_parked() -> None:
    b = Batch()
    w = walk()
    take_all(w, [b.message(sale("P-3", 20, "SO-1"))])
    assert outcomes(w) == [(1, Outcome.PARKED, None)]
    assert w.accepted == [] and [p.outcome for p in w.new_parked] == [None]


def test_an_event_parked_by_an_earlier_batch_is_released_and_resolved() -> None:
    b = Batch()
    parked_raw = sale("P-4", 30, "SO-1")
    parked = decoded(b.message(parked_raw))
    assert not isinstance(parked, Rejection)
    stored = ParkedEvent(parked, "sales", "t.sales", 0, 99, fingerprint(parked),
                         msgspec.json.encode(parked_raw), encode(parked), stored=True)  # fmt: skip
    w = walk(known={parked.event_id: Known(fingerprint(parked), parked=True)},
             waiting=[stored])  # fmt: skip
    take_all(w, [b.message(registration("P-4", 31))])
    assert [(c.offset, c.released) for c in w.accepted] == [(2, False), (99, True)]
    assert [(r.offset, r.outcome, r.code) for r in w.resolutions] == [
        (99, Outcome.APPLIED, None)
    ]


def test_a_kafka_key_other_than_the_partner_is_dead_lettered() -> None:
    b = Batch()
    w = walk(registered={"P-1"})
    take_all(w, [b.message(sale("P-1", 40, "SO-1"), key="P-9")])
    assert [(d.rejection.code, d.rejection.path) for d in w.dead] == [
        (RejectCode.INVALID_VALUE, "$.partner_id")
    ]
    assert w.accepted == []


def test_a_poisoned_message_is_dead_lettered_with_the_rejection_given() -> None:
    b = Batch()
    m = b.message(sale("P-1", 50, "SO-1"))
    poison = Rejection(code=RejectCode.PROCESSING_FAILED, path="$", message="it broke the batch")
    w = walk(registered={"P-1"}, poisoned={(m.topic, m.partition, m.offset): poison})
    take_all(w, [m])
    assert [d.rejection for d in w.dead] == [poison]
    assert outcomes(w) == [(1, Outcome.DEAD_LETTERED, str(RejectCode.PROCESSING_FAILED))]


def test_a_reversal_sees_the_sale_of_the_same_batch_and_an_unknown_order_is_refused() -> None:
    b = Batch()
    w = walk(registered={"P-1"})
    take_all(w, [
        b.message(sale("P-1", 60, "SO-1")),
        b.message(full_reversal("P-1", 61, "SO-1")),
        b.message(full_reversal("P-1", 62, "SO-404")),
    ])  # fmt: skip
    assert [c.offset for c in w.accepted] == [1, 2]
    assert [(d.offset, d.rejection.code) for d in w.dead] == [(3, RejectCode.UNKNOWN_ORDER)]
    # The order line the batch would write back: nothing left of the sale.
    changed = list(w.orders.changed())
    assert [(key, line.net_remaining) for key, line in changed] == [(("P-1", "SO-1", "1"), 0)]


def test_undecodable_bytes_are_dead_lettered_with_the_ids_that_can_be_read() -> None:
    w = walk(registered={"P-1"})
    m = SourceMessage("t.sales", 0, 7, b"P-1", b'{"event_id": "not json')
    w.take(m, decoded(m))
    assert [(d.offset, d.rejection.code, d.partner_id) for d in w.dead] == [
        (7, RejectCode.NOT_JSON, None)
    ]
    assert outcomes(w) == [(7, Outcome.DEAD_LETTERED, str(RejectCode.NOT_JSON))]
