"""The answers of the read side, as msgspec structs: what the API puts on the wire and the
command line prints. Money is always an integer of minor units (points, award units) next
to its asset (``EUR``, ``PTS:<program>``, ``AWARD:<kind>``, ``MDF:<currency>``); people
read it formatted (`projections.read.money.format_amount`)."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from ledger.core import InputValue
from projections.facts import Criterion

Int = int


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    """A partner's balance of one asset, and its lifetime movements, up to a moment.

    ``total = pending + available = earned - paid - redeemed - expired - clawed_back -
    penalties + adjusted + reversed``; ``released`` moved pending to available."""

    pending: Int
    available: Int
    total: Int
    earned: Int
    released: Int
    paid: Int
    redeemed: Int
    expired: Int
    clawed_back: Int
    penalties: Int
    adjusted: Int
    reversed: Int


class AssetBalance(msgspec.Struct, frozen=True, kw_only=True):
    asset: str
    figures: Figures


class PartnerBalances(msgspec.Struct, frozen=True, kw_only=True):
    """``counted_before``: the records counted are those with ``occurred_at`` before this
    instant (None: all of them). ``as_of`` is what was asked for, as written."""

    partner_id: str
    as_of: str | None
    counted_before: dt.datetime | None
    balances: list[AssetBalance]


class Movement(msgspec.Struct, frozen=True, kw_only=True):
    """What one record changed of the partner's balance of one asset."""

    asset: str
    pending: Int
    available: Int
    total: Int


class Line(msgspec.Struct, frozen=True, kw_only=True):
    """One ledger record of the partner, with its explanation and source events."""

    seq: Int
    record_id: uuid.UUID
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    kind: str
    program_id: str | None
    program_version: Int | None
    rule_id: str | None
    summary: str
    formula: str
    inputs: dict[str, InputValue]
    author: str | None
    reason: str | None
    related_record_ids: list[uuid.UUID]
    source_event_ids: list[uuid.UUID]
    movements: list[Movement]


class StatementAsset(msgspec.Struct, frozen=True, kw_only=True):
    """One asset of a statement: opening and closing balance, and the span's movements
    (``change``: closing minus opening for every figure)."""

    asset: str
    opening: Figures
    closing: Figures
    change: Figures


class Statement(msgspec.Struct, frozen=True, kw_only=True):
    """A partner's statement over [start, end) of event time: every line, and per asset the
    opening and closing balance; the lines of an asset add up to closing minus opening.
    ``lines`` is one page (``next_cursor`` names the next, None at the end)."""

    partner_id: str
    period: str
    start: dt.datetime
    end: dt.datetime
    assets: list[StatementAsset]
    lines: list[Line]
    next_cursor: str | None = None


class RecordPage(msgspec.Struct, frozen=True, kw_only=True):
    partner_id: str
    start: dt.datetime | None
    end: dt.datetime | None
    records: list[Line]
    next_cursor: str | None = None


class TierStanding(msgspec.Struct, frozen=True, kw_only=True):
    """A partner's tier in one program, as of a moment (``criteria`` and ``next_tier``
    only for the current standing: they are measured on ``measured_on``)."""

    program_id: str
    program_version: Int | None
    tier: str
    tier_name: str | None
    since: dt.datetime | None
    below_periods: Int | None = None
    next_tier: str | None = None
    window_months: Int | None = None
    measured_on: dt.date | None = None
    criteria: list[Criterion] = []


class PartnerTiers(msgspec.Struct, frozen=True, kw_only=True):
    partner_id: str
    as_of: str | None
    counted_before: dt.datetime | None
    tiers: list[TierStanding]


class TierChange(msgspec.Struct, frozen=True, kw_only=True):
    program_id: str
    program_version: Int
    occurred_at: dt.datetime
    seq: Int
    record_id: uuid.UUID
    from_tier: str | None
    to_tier: str
    summary: str


class TierHistory(msgspec.Struct, frozen=True, kw_only=True):
    partner_id: str
    changes: list[TierChange]


class Partner(msgspec.Struct, frozen=True, kw_only=True):
    partner_id: str
    kind: str | None
    region: str | None
    team: str | None
    status: str | None
    joined_on: dt.date | None


class PartnerPage(msgspec.Struct, frozen=True, kw_only=True):
    partners: list[Partner]
    next_cursor: str | None = None


class BoardEntry(msgspec.Struct, frozen=True, kw_only=True):
    rank: Int
    partner_id: str
    team: str | None
    value: Int
    reached_at: dt.datetime | None


class Leaderboard(msgspec.Struct, frozen=True, kw_only=True):
    """Partners by ``metric`` over ``period``: highest value first, then the one that
    reached it first, then partner id. ``currency`` is empty for new_customers."""

    period: str
    metric: str
    currency: str
    entries: list[BoardEntry]
    next_cursor: str | None = None


class TeamStanding(msgspec.Struct, frozen=True, kw_only=True):
    rank: Int
    team: str
    members: Int
    value: Int
    average: Int  # value / members, rounded down


class TeamStandings(msgspec.Struct, frozen=True, kw_only=True):
    period: str
    metric: str
    currency: str
    teams: list[TeamStanding]


class AssetSpend(msgspec.Struct, frozen=True, kw_only=True):
    asset: str
    awarded: Int
    returned: Int
    penalties: Int
    budget_cost: Int
    partners: Int


class ProgramSpend(msgspec.Struct, frozen=True, kw_only=True):
    """A program version's spend against its budget, as the engine counts it: awards in the
    program currency net of clawbacks, plus the budget cost of non-cash awards.
    ``points``: what partners earned, redeemed and let expire of the program's points, and
    what they hold (all partners)."""

    program_id: str
    program_version: Int
    currency: str
    budget: Int | None
    spent: Int
    remaining: Int | None
    used_bp: Int | None  # spent / budget in basis points, rounded down
    assets: list[AssetSpend]
    points_asset: str
    points_issued: Int
    points_redeemed: Int
    points_expired: Int
    points_outstanding: Int


class SpendReport(msgspec.Struct, frozen=True, kw_only=True):
    programs: list[ProgramSpend]


class RefusedCommand(msgspec.Struct, frozen=True, kw_only=True):
    event_id: uuid.UUID
    partner_id: str
    occurred_at: dt.datetime
    event_type: str
    code: str
    path: str
    message: str


class RefusalPage(msgspec.Struct, frozen=True, kw_only=True):
    refusals: list[RefusedCommand]
    next_cursor: str | None = None


class DeadLetterCount(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    code: str
    count: Int
    unpublished: Int
    first_received_at: dt.datetime
    last_received_at: dt.datetime


class DeadLetterSummary(msgspec.Struct, frozen=True, kw_only=True):
    total: Int
    by_topic_and_code: list[DeadLetterCount]


class PartitionState(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    partition: Int
    position: Int | None  # the next offset the consumer group will read
    newest_event_at: dt.datetime | None  # the newest event time applied
    applied: Int
    duplicates: Int
    dead_lettered: Int
    parked: Int


class Reconciliation(msgspec.Struct, frozen=True, kw_only=True):
    """Per source partition, what was consumed and what became of it: consumed (up to the
    position) = applied + duplicates + dead-lettered + parked. What Kafka holds beyond
    the position is pending (``incentives reconcile`` asks the broker for it)."""

    consumer_group: str
    consumed: Int
    applied: Int
    duplicates: Int
    dead_lettered: Int
    parked: Int
    balanced: bool
    partitions: list[PartitionState]
