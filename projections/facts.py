"""What the projections are fed: a batch's records, and typed facts about its partners.

Most projections are folds of ledger records alone (balances, statements, tier history,
program spend). A few figures are not in any record: the gap to the next tier per
criterion, the metrics a leaderboard ranks by, a partner's team. The engine knows them, so
the writer hands them over as the plain, typed values below (`PartnerFacts`), computed from
its partner states; projections never read the engine's state JSON and never import the
engine (see processors/outbox/projection_feed.py for the one place they are made).

Everything here is pure: msgspec structs, no I/O.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import msgspec

from ledger.core import Record


class Criterion(msgspec.Struct, frozen=True, kw_only=True):
    """One criterion of a tier's qualification, measured over its window.

    ``gap`` is what is missing to meet it (0 when met). For the average satisfaction,
    ``required`` and ``actual`` are the average score times 100, ``actual`` rounded down.
    """

    name: str
    required: int
    actual: int
    gap: int


class TierProgress(msgspec.Struct, frozen=True, kw_only=True):
    """A partner's tier in one program and how far the next tier is.

    ``since`` is None for the entry tier held from the start (entering it is not
    recorded). ``next_tier`` is None at the top. ``measured_on`` is the day of the partner's
    latest input: the criteria are measured over the ``window_months`` ending with its
    month."""

    program_id: str
    program_version: int
    tier: str
    since: dt.datetime | None
    below_periods: int
    next_tier: str | None
    window_months: int | None
    measured_on: dt.date
    criteria: tuple[Criterion, ...] = ()


class Activity(msgspec.Struct, frozen=True, kw_only=True):
    """One metric of one partner in one calendar month (UTC), as the engine counts it.

    ``metric`` is ``net_sales`` or ``units`` (per ``currency``) or ``new_customers``
    (``currency`` empty). ``reached_at`` is when the month's value last changed."""

    month: str  # YYYY-MM
    metric: str
    currency: str
    value: int
    reached_at: dt.datetime | None


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    region: str
    joined_on: dt.date
    status: str
    team: str | None = None


class PartnerFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the engine knows of one partner that no record says.

    ``activity`` holds the months this batch may have changed (a rebuild: every month the
    engine still remembers); ``activity_from`` is the oldest month the engine remembers, so
    older stored months are history that a rebuild keeps. ``profile`` is None when the
    batch did not register or update the partner (a rebuild always gives it)."""

    partner_id: str
    profile: Profile | None = None
    tiers: tuple[TierProgress, ...] = ()
    activity: tuple[Activity, ...] = ()
    activity_from: str | None = None


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """A valid command that the rules refused: nothing was posted for it."""

    event_id: uuid.UUID
    partner_id: str
    event_type: str
    code: str
    path: str
    message: str
    occurred_at: dt.datetime


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """Where one applied input came from, for the freshness of its partition."""

    topic: str
    partition: int
    offset: int
    occurred_at: dt.datetime


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one writer transaction hands the projections."""

    records: Sequence[Record] = ()
    facts: Sequence[PartnerFacts] = ()
    refusals: Sequence[Refusal] = ()
    sources: Sequence[Source] = ()
