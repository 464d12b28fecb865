"""The fault suite's checks, and the figures of a run.

After a run (``fault_run.FaultRun``) the workers are stopped and what they left is read
once (``Stored``). Then: every poison message is a dead letter exactly once, with its code;
every event of the traffic was applied from exactly one of its copies and counted as a
duplicate from the others; the inbox holds each accepted event once; the ingest log's
outcomes add up to what the topics hold; every parked event was released; the ledger equals
the reference the pure runner computes offline from the inbox (record ids, sequences,
hashes, chain heads) and passes the audit; ``incentives reconcile`` accounts for all; and
``incentives projections check`` finds every read model equal to a fold of the ledger.

Besides the traffic, the topics hold the commands the workers' timer sent itself
(``processors.worker.clock``: ClosePeriod and AdvanceClock, resent after a crash as duplicates).
"""

from __future__ import annotations

import collections
import time
import uuid
from dataclasses import dataclass
from typing import NamedTuple

import asyncpg
from fault_run import EXAMPLE, Coordinates, FaultRun, Tally, end_total
from fault_traffic import COPIES, EVENTS_VARIABLE, SEED
from ingest_support import admin, run_cli

from audit import replay
from ledger.store import verify_ledger
from processors.engine import compile_program
from processors.engine.runner import Books, run
from schemas.program_loader import load_program
from schemas.settings import Settings
from schemas.streams import CLOCK

TIMER_COMMANDS = {"ClosePeriod", "AdvanceClock"}


class Logged(NamedTuple):
    """A message's row in the ingest log."""

    event_id: uuid.UUID | None
    outcome: str
    code: str | None
    resolved: bool  # parked first, then released


class DeadLetter(NamedTuple):
    code: str
    published: bool  # on the dead-letter topic


@dataclass(frozen=True, slots=True)
class Stored:
    """What a run left in PostgreSQL, and how many messages the topics hold."""

    log: dict[Coordinates, Logged]
    inbox: list[uuid.UUID]  # in arrival order
    inbox_types: dict[uuid.UUID, str]
    dead: dict[Coordinates, DeadLetter]
    parked: dict[uuid.UUID, str | None]  # release outcome, None while parked
    ends: int

    @classmethod
    async def read(cls, settings: Settings) -> Stored:
        conn = await asyncpg.connect(admin(settings))
        try:
            log = await conn.fetch(
                "SELECT topic, partition, kafka_offset, event_id, outcome, code, resolved_at"
                " FROM ingest_log"
            )
            inbox = await conn.fetch("SELECT event_id, event_type FROM inbox ORDER BY arrival_seq")
            dead = await conn.fetch(
                "SELECT topic, partition, kafka_offset, code, published_at FROM dead_letters"
            )
            parked = await conn.fetch("SELECT event_id, release_outcome FROM parked_events")
        finally:
            await conn.close()
        return cls(
            log={(r["topic"], r["partition"], r["kafka_offset"]):
                 Logged(r["event_id"], r["outcome"], r["code"], r["resolved_at"] is not None)
                 for r in log},
            inbox=[r["event_id"] for r in inbox],
            inbox_types={r["event_id"]: r["event_type"] for r in inbox},
            dead={(r["topic"], r["partition"], r["kafka_offset"]):
                  DeadLetter(r["code"], r["published_at"] is not None) for r in dead},
            parked={r["event_id"]: r["release_outcome"] for r in parked},
            ends=await end_total(settings),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures of a run, as ``check_run`` found them."""

    requested: int  # INCENTIVES_FAULT_EVENTS, or its default
    events: int  # distinct events published, COPIES times each
    messages: int  # everything the test published: copies, poison, late registrations
    poison: int
    codes: int  # distinct reject codes among the poison
    consumed: int  # every message the topics hold: the test's and the timer's
    accepted: int  # in the inbox: the events and the timer's commands
    timer_commands: int  # distinct, in ``accepted``
    records: int
    duplicates: int
    dead_letters: int
    parked_released: int
    tally: Tally
    publish_s: float
    process_s: float
    check_s: float
    wall_s: float

    def render(self) -> str:
        t = self.tally
        rows = [
            ("events published", f"{self.events:,} distinct; {self.messages:,} messages"
             f" ({COPIES} copies of each, {self.poison} poison)"),
            ("messages consumed", f"{self.consumed:,} (with the timer's own commands)"),
            ("events accepted", f"{self.accepted:,} ({self.events:,} published and"
             f" {self.timer_commands} commands of the workers' timer)"),
            ("ledger records", f"{self.records:,}"),
            ("duplicates skipped", f"{self.duplicates:,}"),
            ("dead letters", f"{self.dead_letters} ({self.codes} reject codes)"),
            ("parked, released", f"{self.parked_released:,}"),
            ("kills survived", f"{t.kills} (SIGKILL; messages consumed at each:"
             f" {', '.join(map(str, t.kill_progress))})"),
            ("broker restarts", f"{t.broker_restarts}"),
            ("database restarts", f"{t.database_restarts}"),
            ("rebalances", f"{t.joined + t.left} (workers joined a live pool {t.joined},"
             f" left it {t.left}; died and replaced {t.died})"),
            ("workers started", f"{t.started}"),
            ("wall time", f"{self.wall_s:.1f} s (publish {self.publish_s:.1f} s, process"
             f" {self.process_s:.1f} s, check {self.check_s:.1f} s)"),
            ("throughput", f"{self.consumed / self.process_s:,.0f} messages/s consumed,"
             f" {self.accepted / self.process_s:,.0f} events/s accepted, faults included"),
        ]  # fmt: skip
        width = max(len(name) for name, _ in rows)
        title = f"fault run figures ({EVENTS_VARIABLE}={self.requested}, seed {SEED})"
        return "\n".join([title] + [f"  {name.ljust(width)}  {value}" for name, value in rows])


async def check_run(fault_run: FaultRun) -> Figures:
    """Every message accounted for exactly, the ledger equal to the reference, a clean
    audit and reconcile (see the module); returns the run's figures."""
    began = time.monotonic()
    settings, traffic = fault_run.settings, fault_run.traffic
    stored = await Stored.read(settings)
    assert len(stored.log) == stored.ends, f"{stored.ends} messages held, {len(stored.log)} logged"
    assert len(fault_run.late_coordinates) == COPIES * len(traffic.late_registrations)
    poison = {fault_run.coordinates[i]: str(code) for i, code in traffic.poison_at.items()}
    ours = set(fault_run.coordinates) | set(fault_run.late_coordinates)

    _check_poison(stored, poison)
    _check_events(stored, traffic.event_ids, ours - set(poison))
    timer_ids = _check_timer_commands(stored, ours, settings.topic(CLOCK))
    assert len(stored.inbox) == len(set(stored.inbox)), "an event accepted twice"
    assert set(stored.inbox) == traffic.event_ids | timer_ids
    outcomes = _check_outcomes_add_up(stored, poison)
    _check_parked_released(stored, traffic.late_events)

    records = await assert_reference_ledger(settings)
    reconciled = run_cli(settings, "reconcile")
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert f"all {stored.ends} messages accounted for\n" in reconciled.stdout, reconciled.stdout
    # Every read model, kept by workers killed and restarted, equals a fold of the ledger.
    checked = run_cli(settings, "projections", "check", timeout_s=600)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    now = time.monotonic()
    return Figures(
        requested=fault_run.requested,
        events=traffic.events,
        messages=traffic.messages,
        poison=len(poison),
        codes=len(set(poison.values())),
        consumed=stored.ends,
        accepted=len(stored.inbox),
        timer_commands=len(timer_ids),
        records=records,
        duplicates=outcomes["duplicate"],
        dead_letters=len(stored.dead),
        parked_released=len(stored.parked),
        tally=fault_run.tally,
        publish_s=fault_run.publish_s,
        process_s=fault_run.process_s,
        check_s=now - began,
        wall_s=now - fault_run.started_at,
    )


def _check_poison(stored: Stored, poison: dict[Coordinates, str]) -> None:
    """Every poison message a dead letter, once, with its code, published to the
    dead-letter topic; nothing else a dead letter."""
    assert {c: d.code for c, d in stored.dead.items()} == poison
    assert all(d.published for d in stored.dead.values()), "a dead letter unpublished"
    logged = {c: row.code for c, row in stored.log.items() if row.outcome == "dead_lettered"}
    assert logged == poison


def _check_events(
    stored: Stored, event_ids: frozenset[uuid.UUID], copies: set[Coordinates]
) -> None:
    """Every event of the traffic applied from one of its copies, the others duplicates."""
    fates: dict[uuid.UUID | None, collections.Counter[str]] = collections.defaultdict(
        collections.Counter
    )
    for where in copies:
        row = stored.log[where]
        fates[row.event_id][row.outcome] += 1
    assert set(fates) == event_ids
    wrong = {e: dict(c) for e, c in fates.items() if c != {"applied": 1, "duplicate": COPIES - 1}}
    assert not wrong, f"{len(wrong)} events with another fate, such as {list(wrong.items())[:3]}"


def _check_timer_commands(stored: Stored, ours: set[Coordinates], topic: str) -> set[uuid.UUID]:
    """The messages the test did not publish are the timer's commands, on the clock
    topic, each applied once (a resend is a duplicate); returns their ids."""
    theirs = [row for where, row in stored.log.items() if where not in ours]
    assert {where[0] for where in stored.log if where not in ours} <= {topic}
    assert {row.outcome for row in theirs} <= {"applied", "duplicate"}
    assert all(row.event_id is not None for row in theirs)
    ids = {row.event_id for row in theirs if row.event_id is not None}
    applied = [row.event_id for row in theirs if row.outcome == "applied"]
    assert sorted(applied) == sorted(ids), "a timer command not applied once"
    assert {stored.inbox_types[e] for e in ids} <= TIMER_COMMANDS
    return ids


def _check_outcomes_add_up(
    stored: Stored, poison: dict[Coordinates, str]
) -> collections.Counter[str]:
    """published = applied + duplicates + dead letters + parked, from the log's outcomes,
    with nothing left parked: so the duplicates skipped are exactly what remains."""
    outcomes = collections.Counter(row.outcome for row in stored.log.values())
    assert outcomes["parked"] == 0, "events still parked"
    assert outcomes["applied"] == len(stored.inbox)
    assert outcomes["dead_lettered"] == len(poison)
    assert outcomes["duplicate"] == (
        stored.ends - len(stored.inbox) - len(poison) - outcomes["parked"]
    )
    return outcomes


def _check_parked_released(stored: Stored, late_events: frozenset[uuid.UUID]) -> None:
    """The late partners' events were all parked and released into the ledger; every
    parked event was released, and its log row resolved."""
    assert None not in stored.parked.values(), "a parked event was never released"
    assert {e: stored.parked.get(e) for e in late_events} == dict.fromkeys(late_events, "applied")
    assert sum(row.resolved for row in stored.log.values()) == len(stored.parked)


async def assert_reference_ledger(settings: Settings) -> int:
    """The stored ledger equals the one the pure runner computes offline from the stored
    events in their stored order: the same record ids, sequences and hashes, the same chain
    heads; and the audit finds nothing. Returns the number of records."""
    conn = await asyncpg.connect(admin(settings))
    try:
        inputs = await conn.fetch(replay.INPUTS)
        grants = await replay.stored_grants(conn)
        stored = await conn.fetch(
            "SELECT record_id, partner_id, seq, hash FROM ledger_records ORDER BY partner_id, seq"
        )
        heads = await conn.fetch("SELECT partner_id, head_seq, head_hash FROM partner_state")
        report = await verify_ledger(conn)
    finally:
        await conn.close()
    # The inputs with the budget grants the writers recorded, where they applied them.
    items, lanes = replay.with_grants(inputs, grants)
    reference = Books()
    expected = run(items, reference, [compile_program(load_program(EXAMPLE).program)], lanes)
    assert [
        (r.record_id, r.partner_id, r.seq, r.hash)
        for r in sorted(expected.records, key=lambda r: (r.partner_id, r.seq))
    ] == [(r["record_id"], r["partner_id"], r["seq"], bytes(r["hash"])) for r in stored]
    assert {
        r["partner_id"]: (r["head_seq"], bytes(r["head_hash"])) for r in heads if r["head_seq"]
    } == {p: (h.seq, h.hash) for p, h in reference.heads.items()}
    assert report.findings == []
    return len(stored)
