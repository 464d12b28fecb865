"""Deterministic sample traffic for the demo, the fault suite and the benchmarks.

`generate(partners=..., sales=..., seed=...)` returns the messages that upstream systems
would publish in the first quarter of 2026 for the example program
(`programs/example-channel-2026.yaml`): partner registrations, sales over four product
categories, returns (partial and full), satisfaction surveys, training completions, and
the close of each month (March's also closes the quarter). The same arguments give the
same messages, byte for byte, so a reference ledger computed offline from them can be
compared with what the live system produced.

``hierarchy_and_targets=True`` adds what the goal rules of the example program read
(``target_attainment``, ``override``, gates on attainment): partners in groups of four
(distributor, reseller, reseller, agent) where the first reseller is supplied by the
distributor and the second by the first reseller (``parent_partner_id``, so overrides reach
two levels), and finance's quarterly net-sales target for every distributor and reseller
(``TargetsSet`` on 2 January, between 0.7 and 1.5 times what it will sell, so every band
is met), revised on 15 February for every fourth of them. Without it the messages are
those of earlier versions, byte for byte (``tests/unit/test_pinned_heads.py`` pins them).
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from typing import Any

NAMESPACE = uuid.UUID("5b0c7d0e-4f7e-5c53-9a53-7f1b1f0e9a21")
START = dt.datetime(2026, 1, 2, 8, 0, tzinfo=dt.UTC)
QUARTER_DAYS = 88  # Sales fall between 2 January and 31 March.
REGIONS = ("DE", "AT", "CH", "FR", "NL", "SE", "NO", "DK", "ES", "IT")
TEAMS = ("north", "south", "east", "west")
KINDS = ("distributor", "reseller", "reseller", "agent")
# (category, unit price range in cents)
CATALOGUE = (
    ("hardware", 20_000, 900_000),
    ("software", 5_000, 400_000),
    ("services", 50_000, 1_500_000),
    ("support", 2_500, 2_500),
)
COURSES = ("NET-101", "NET-201", "SEC-301", "CLOUD-110", "SALES-050")
CERTIFIED = {"NET-201": "Certified Network Installer", "SEC-301": "Certified Security Pro"}
Message = dict[str, Any]


def _id(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(str(p) for p in parts)))


def _at(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def partner_ids(partners: int) -> list[str]:
    return [f"P-{n:05d}" for n in range(1, partners + 1)]


def generate(*, partners: int = 50, sales: int = 2_000, seed: int = 2026,
             hierarchy_and_targets: bool = False, even: bool = False) -> list[Message]:
    """Messages in event-time order (ties broken by generation order).

    Sales go mostly to a few large partners (a Pareto draw: the largest makes about a third
    of them), as in a real channel; ``even=True`` sends them round the partners instead,
    for a measurement that needs every partition to carry the same traffic."""
    rng = random.Random(seed)
    timed: list[tuple[dt.datetime, int, Message]] = []
    messages = list(_messages(rng, partner_ids(partners), sales, even))
    if hierarchy_and_targets:
        messages = _with_parents(messages) + list(_targets(messages, seed))
    for message in messages:
        at = dt.datetime.fromisoformat(message["occurred_at"].replace("Z", "+00:00"))
        timed.append((at, len(timed), message))
    timed.sort(key=lambda item: (item[0], item[1]))
    return [message for _, _, message in timed]


def _messages(rng: random.Random, ids: list[str], sales: int, even: bool) -> Iterator[Message]:
    for n, pid in enumerate(ids):
        # Registered from October 2025 on, so some partners have three months of tenure.
        joined = dt.date(2025, 10, 1) + dt.timedelta(days=rng.randrange(0, 120))
        yield {
            "type": "PartnerRegistered",
            "event_id": _id("reg", pid),
            "occurred_at": _at(START - dt.timedelta(days=1, minutes=n)),
            "partner_id": pid,
            "kind": KINDS[n % len(KINDS)],
            "region": rng.choice(REGIONS),
            "team": TEAMS[n % len(TEAMS)],
            "joined_on": joined.isoformat(),
            "status": "active",
        }
    orders: list[tuple[str, Message]] = []
    for n in range(sales):
        if even or not n % 3:
            pid = ids[n % len(ids)]
        else:
            pid = ids[min(int(rng.paretovariate(1.3)) - 1, len(ids) - 1)]
        at = START + dt.timedelta(minutes=rng.randrange(0, QUARTER_DAYS * 24 * 60))
        sale = _sale(rng, pid, n, at)
        orders.append((pid, sale))
        yield sale
    for n, (pid, sale) in enumerate(rng.sample(orders, k=len(orders) // 20)):
        yield _reversal(rng, pid, n, sale)
    for n in range(max(1, sales // 4)):
        pid = rng.choice(ids)
        at = START + dt.timedelta(minutes=rng.randrange(0, QUARTER_DAYS * 24 * 60))
        yield {
            "type": "SurveyCompleted",
            "event_id": _id("survey", n),
            "occurred_at": _at(at),
            "partner_id": pid,
            "survey_id": f"CSAT-{n:06d}",
            "customer_id": f"C-{rng.randrange(10_000):05d}",
            "score": rng.choices((1, 2, 3, 4, 5), weights=(1, 2, 4, 8, 6))[0],
            "scale": "csat_1_5",
        }
    for n in range(max(1, sales // 10)):
        pid, course = rng.choice(ids), rng.choice(COURSES)
        at = START + dt.timedelta(minutes=rng.randrange(0, QUARTER_DAYS * 24 * 60))
        training: Message = {
            "type": "TrainingCompleted",
            "event_id": _id("training", n),
            "occurred_at": _at(at + dt.timedelta(seconds=n)),
            "partner_id": pid,
            "course_id": course,
            "passed": rng.random() < 0.85,
        }
        if course in CERTIFIED:
            training["certification"] = CERTIFIED[course]
        yield training
    for month in ("2026-01", "2026-02", "2026-03"):
        first = dt.date.fromisoformat(month + "-01")
        next_month = (first + dt.timedelta(days=32)).replace(day=1)
        # Closing March also closes the quarter: a close names the month a period ends with.
        yield _close(month, dt.datetime.combine(next_month, dt.time(1), dt.UTC))


PROGRAM_ID = "northwind-emea"
# Fractions of a partner's quarter that its target is set at (so attainment 67 % - 143 %).
TARGET_FACTORS = ((7, 10), (9, 10), (11, 10), (3, 2))


def parent_of(partner_ids_: list[str], n: int) -> str | None:
    """The supplier of the partner at index ``n`` in the hierarchy (see the module)."""
    slot = n % len(KINDS)
    return partner_ids_[n - 1] if slot in (1, 2) else None


def target_count(partners: int) -> int:
    """How many TargetsSet ``hierarchy_and_targets`` adds for ``partners`` partners."""
    targeted = [n for n in range(partners) if KINDS[n % len(KINDS)] != "agent"]
    return len(targeted) + sum(1 for i, _ in enumerate(targeted) if i % 4 == 0)


def _with_parents(messages: list[Message]) -> list[Message]:
    ids = [m["partner_id"] for m in messages if m["type"] == "PartnerRegistered"]
    out: list[Message] = []
    for message in messages:
        if message["type"] == "PartnerRegistered":
            parent = parent_of(ids, ids.index(message["partner_id"]))
            if parent is not None:
                message = {**message, "parent_partner_id": parent}
        out.append(message)
    return out


def _targets(messages: list[Message], seed: int) -> Iterator[Message]:
    # A generator of its own, so the other messages stay those of earlier versions.
    rng = random.Random(seed + 1)
    sold: dict[str, int] = {}
    for m in messages:
        if m["type"] == "SaleRecorded":
            sold[m["partner_id"]] = sold.get(m["partner_id"], 0) + sum(
                line["net_amount"] for line in m["lines"])
    kinds = {m["partner_id"]: m["kind"] for m in messages if m["type"] == "PartnerRegistered"}
    targeted = [pid for pid in kinds if kinds[pid] != "agent"]
    for i, pid in enumerate(targeted):
        times = [(START - dt.timedelta(hours=1), "set")]
        if i % 4 == 0:
            times.append((dt.datetime(2026, 2, 15, 9, tzinfo=dt.UTC), "revised"))
        for at, why in times:
            num, den = rng.choice(TARGET_FACTORS)
            yield {
                "type": "TargetsSet",
                "event_id": _id("target", pid, why),
                "occurred_at": _at(at + dt.timedelta(seconds=i)),
                "partner_id": pid,
                "program_id": PROGRAM_ID,
                "period": "2026-Q1",
                "metric": "net_sales",
                "value": max(sold.get(pid, 0) * num // den, 100_000),
                "set_by": "finance.sample",
            }


def _sale(rng: random.Random, pid: str, n: int, at: dt.datetime) -> Message:
    lines = []
    for line_no in range(1, rng.choice((1, 1, 2, 3)) + 1):
        category, low, high = rng.choice(CATALOGUE)
        quantity = rng.randrange(1, 6)
        price = low if low == high else rng.randrange(low, high, 100)
        lines.append(
            {
                "line_id": str(line_no),
                "sku": f"SKU-{category[:3].upper()}-{rng.randrange(100):03d}",
                "category": category,
                "quantity": quantity,
                "net_amount": quantity * price,
            }
        )
    return {
        "type": "SaleRecorded",
        "event_id": _id("sale", n),
        "occurred_at": _at(at),
        "partner_id": pid,
        "order_id": f"SO-{n:07d}",
        "lines": lines,
        "currency": "EUR",
        "customer_id": f"C-{rng.randrange(10_000):05d}",
        "new_customer": rng.random() < 0.15,
        "region": rng.choice(REGIONS),
    }


def _reversal(rng: random.Random, pid: str, n: int, sale: Message) -> Message:
    at = dt.datetime.fromisoformat(sale["occurred_at"].replace("Z", "+00:00"))
    base: Message = {
        "type": "SaleReversed",
        "event_id": _id("reversal", sale["order_id"]),
        "occurred_at": _at(at + dt.timedelta(days=rng.randrange(1, 20))),
        "partner_id": pid,
        "order_id": sale["order_id"],
        "reversal_id": f"RMA-{n:06d}",
        "currency": "EUR",
        "reason": "customer return",
    }
    line = sale["lines"][0]
    if line["quantity"] > 1 and rng.random() < 0.6:
        unit = line["net_amount"] // line["quantity"]
        base.update(
            scope="partial",
            lines=[
                {"line_id": line["line_id"], "quantity": 1, "net_amount": unit},
            ],
        )
    else:
        base["scope"] = "full"
    return base


def _close(period: str, at: dt.datetime) -> Message:
    return {
        "type": "ClosePeriod",
        "event_id": _id("close", period),
        "occurred_at": _at(at),
        "partner_id": "*",
        "period": period,
    }
