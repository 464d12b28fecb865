"""The fault suite's traffic: the sample quarter, three copies of every event, poison of
every reject code, and partners whose events come before their registration.

The sample quarter of ``incentives.sample_data`` is sized to INCENTIVES_FAULT_EVENTS
distinct events, with a partner of our own (POISON_PARTNER) whose sale the stateful poison
breaks. Every event is published three times: twice in a row (the second copy is usually
judged in the same batch as the first) and once more after the whole quarter (judged
against what earlier batches stored). One message of every reject code
(``ingest_support.bad_inputs`` and ``stateful_poison``) is published once, each at a seeded
random place of that stream; the stateful ones after the sale they break. The registrations
of LATE_PARTNERS partners are held back: the run publishes them (three times) only once the
workers have parked every other event of theirs, which the registrations then release.

The same arguments give the same traffic, byte for byte.
"""

from __future__ import annotations

import collections
import os
import random
import uuid
from dataclasses import dataclass
from typing import Any

from ingest_support import (
    Poison,
    Send,
    bad_inputs,
    keyed,
    processing_poison,
    registration,
    sale,
    seed_ids,
    stateful_poison,
)

from incentives.sample_data import generate, partner_ids, target_count
from schemas.codec import RejectCode
from schemas.streams import MESSAGE_TYPES, stream_of

EVENTS_VARIABLE = "INCENTIVES_FAULT_EVENTS"
# Distinct events when the variable is not set: the size of the normal suite's runs.
EVENTS_DEFAULT = 10_000
EVENTS_MIN = 1_000
SEED = 7
COPIES = 3
# Partners whose registration is held back, chosen among all but the busiest ones (the
# sample's partners are the busier the lower their number).
LATE_PARTNERS = 3
LATE_SKIP_BUSIEST = 10
POISON_PARTNER = "P-POISON"
# Every code a dead letter can have: an unknown partner is parked instead, a duplicate counted.
DEAD_LETTER_CODES = set(RejectCode) - {RejectCode.UNKNOWN_PARTNER, RejectCode.DUPLICATE}


def fault_events() -> int:
    """Distinct events of a run: INCENTIVES_FAULT_EVENTS (``100_000`` is allowed), else
    EVENTS_DEFAULT."""
    raw = os.environ.get(EVENTS_VARIABLE, "").strip()
    events = int(raw.replace("_", "")) if raw else EVENTS_DEFAULT
    assert events >= EVENTS_MIN, f"{EVENTS_VARIABLE}={raw}: give at least {EVENTS_MIN}"
    return events


@dataclass(frozen=True, slots=True)
class Traffic:
    """What a run publishes. ``sends`` go out before the first worker starts, the
    ``late_registrations`` (COPIES times each) once their partners' events are parked."""

    sends: list[Send]
    poison_at: dict[int, RejectCode]  # index in ``sends`` -> the code it must get
    late_registrations: list[Send]
    late_partners: list[str]
    late_events: frozenset[uuid.UUID]  # the late partners' events but their registrations
    event_ids: frozenset[uuid.UUID]  # every distinct event, each published COPIES times

    @property
    def events(self) -> int:
        return len(self.event_ids)

    @property
    def messages(self) -> int:
        """Every message the run publishes: the copies, the poison, the late ones."""
        return len(self.sends) + COPIES * len(self.late_registrations)


def build_traffic(events: int, seed: int = SEED) -> Traffic:
    """At least ``events`` distinct events (see the module)."""
    seed_ids(seed)
    rng = random.Random(seed)
    partners, sales = sample_size(events - 2)  # the poison partner brings two
    quarter = generate(partners=partners, sales=sales, seed=seed, hierarchy_and_targets=True)
    late = sorted(rng.sample(partner_ids(partners)[LATE_SKIP_BUSIEST:], LATE_PARTNERS))
    held = [m for m in quarter if m["type"] == "PartnerRegistered" and m["partner_id"] in late]
    on_time = [_keyed(m) for m in quarter if m not in held]

    registered = registration(POISON_PARTNER)
    sold = sale(POISON_PARTNER, "SO-POISON", ("1", 2, 179800), ("2", 10, 12500))
    at = rng.randrange(len(on_time) // 2)
    on_time[at:at] = [keyed("partners", registered), keyed("sales", sold)]

    assert COPIES == 3, "two copies in a row, the third after the quarter"
    stream = [copy for send in on_time for copy in (send, send)] + on_time
    after_sale = 2 * (at + 1) + 1  # past the sale's first copy
    places = [(rng.randrange(len(stream) + 1), p) for p in bad_inputs(POISON_PARTNER, "P-ELSE")]
    places += [(rng.randrange(after_sale, len(stream) + 1), p) for p in stateful_poison(sold)]
    places.append((rng.randrange(after_sale, len(stream) + 1), processing_poison(POISON_PARTNER)))
    sends, poison_at = _interleave(stream, sorted(places, key=lambda place: place[0]))
    assert set(poison_at.values()) == DEAD_LETTER_CODES, "poison of every kind"

    late_events = {_id(m) for m in quarter if m["partner_id"] in late and m not in held}
    assert len(late_events) >= LATE_PARTNERS, "every sample partner has sales"
    return Traffic(
        sends=sends,
        poison_at=poison_at,
        late_registrations=[_keyed(m) for m in held],
        late_partners=late,
        late_events=frozenset(late_events),
        event_ids=frozenset(_id(m) for m in [*quarter, registered, sold]),
    )


def sample_size(events: int) -> tuple[int, int]:
    """(partners, sales) for which ``generate`` makes at least ``events`` messages and one
    sale fewer would not: a registration per partner and the targets of the non-agents, per
    sale a twentieth of a return, a quarter of a survey and a tenth of a training, and three
    month closes."""
    partners = max(40, events // 200)
    fixed = partners + target_count(partners) + 3

    def count(sales: int) -> int:
        return fixed + sales + sales // 20 + max(1, sales // 4) + max(1, sales // 10)

    sales = max(1, int((events - fixed) / 1.4))
    while count(sales) < events:
        sales += 1
    while sales > 1 and count(sales - 1) >= events:
        sales -= 1
    return partners, sales


def _id(message: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(message["event_id"])


def _keyed(message: dict[str, Any]) -> Send:
    return keyed(stream_of(MESSAGE_TYPES[message["type"]]), message)


def _interleave(
    stream: list[Send], places: list[tuple[int, Poison]]
) -> tuple[list[Send], dict[int, RejectCode]]:
    """``stream`` with each poison message put before the element at its place (sorted)."""
    sends: list[Send] = []
    poison_at: dict[int, RejectCode] = {}
    pending = collections.deque(places)
    for index in range(len(stream) + 1):
        while pending and pending[0][0] == index:
            name, key, value, code = pending.popleft()[1]
            poison_at[len(sends)] = code
            sends.append((name, key, value))
        if index < len(stream):
            sends.append(stream[index])
    return sends, poison_at
