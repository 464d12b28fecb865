"""What the engine remembers about one partner between events: ``PartnerState``.

The state is a msgspec Struct, stored as JSON in ``partner_state.state`` next to the chain
head, and written in the same transaction as the records it led to. It holds only what the
rules need and is bounded in time (see ``prune``):

- ``profile``: kind, region, team, joined_on and status, from PartnerRegistered/Updated.
- ``months``: per calendar month, the facts every metric is built from (net sales and units
  by currency and category, new customers, surveys by scale, certifications, and when the
  last sale or new customer happened, for the ``reached_first`` tie-break). Quarters and
  years are sums of months, so one set of counters serves every period kind.
- ``tiers``: the current tier per program id, since when, and how many period ends in a row
  it has been below its criteria (for grace).
- ``orders``: every sale line with what it earned per rule (``Earning``), so a reversal takes
  back exactly that, at the rates it was earned at, whatever the tier or program is now.
- ``counters``: what each rule paid per period (``program|rule|period``), net of clawbacks:
  cap usage and the base of satisfaction multipliers.
- ``holds``: pending rewards with their release time; ``lots``: points and fund units with
  their expiry; ``available``/``pending``: the partner's balances per ledger asset, which
  payouts and redemptions are checked against.
- ``thresholds``, ``customers``, ``rewarded``, ``courses``, ``certifications``: what was
  already paid or counted once.
- ``claims``: fund claims awaiting finance, ``settled_claims`` those approved or rejected
  (a claim id is used once); ``closed``: periods already settled.
- ``days``: per UTC day, net sales, surveys and new certifications, kept (``DAYS_KEPT``)
  only while a program has a tier window in days: daily buckets, so that a rolling
  window's total can be kept as a running sum.
- ``targets``: finance's targets per program, period and metric (``TargetsSet``);
  ``gated``: rule periods whose gate failed at the close (what they earned was taken back,
  so a later reversal takes nothing more); ``override_earned``: what a distributor earned
  from the override on each partner below it, the most a later return can take back.

Pruning (``prune``, run by ``due``): months older than ``MONTHS_KEPT`` (the longest tier
window is 36 months), days older than ``DAYS_KEPT``, counters, targets, gates and
closed-period marks of periods before last year, and
orders ``ORDER_RETENTION_DAYS`` after the sale or after their last clawback deadline,
whichever is later. A reversal of a pruned order is refused as an unknown order.
"""

import datetime as dt
import enum
import uuid
from typing import Final, NamedTuple, NewType

import msgspec

from processors.engine.periods import add_months, month_key

MONTHS_KEPT: Final = 37
DAYS_KEPT: Final = 366  # the longest window in days
ORDER_RETENTION_DAYS: Final = 3 * 366


class PartnerStatus(enum.StrEnum):
    """A partner's standing (``PartnerRegistered.status``); stored as its value."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class Profile(msgspec.Struct, kw_only=True):
    kind: str
    region: str
    joined_on: dt.date
    status: PartnerStatus
    team: str | None = None
    parent: str | None = None  # parent_partner_id: the distributor that supplies it


class TargetState(msgspec.Struct, kw_only=True):
    """A partner's target for one metric and period of a program (``TargetsSet``)."""

    value: int
    event_id: uuid.UUID  # the TargetsSet that set it
    set_at: dt.datetime
    set_by: str
    previous: int | None = None  # the value it replaced, if any


class SurveyAgg(msgspec.Struct, kw_only=True):
    count: int = 0
    score_sum: int = 0


class DayAgg(msgspec.Struct, kw_only=True):
    """Facts of one UTC day, kept only while a program measures a window in days."""

    net: dict[str, int] = {}  # currency -> net minor units, every category
    surveys: dict[str, SurveyAgg] = {}  # scale name -> count and sum of scores
    certifications: int = 0  # certification ids first earned that day


class MonthAgg(msgspec.Struct, kw_only=True):
    """Facts of one calendar month. Net amounts may be negative (returns exceed sales)."""

    net: dict[str, dict[str, int]] = {}  # currency -> category -> net minor units
    units: dict[str, dict[str, int]] = {}  # currency -> category -> units sold - returned
    new_customers: int = 0
    surveys: dict[str, SurveyAgg] = {}  # scale name -> count and sum of scores
    last_sale_at: dt.datetime | None = None
    last_new_customer_at: dt.datetime | None = None


class TierState(msgspec.Struct, kw_only=True):
    tier: str
    since: dt.datetime
    below_periods: int = 0  # consecutive period ends below the criteria of ``tier``


class Earning(msgspec.Struct, kw_only=True):
    """What one rule paid for one sale line (or one order, or one period): what may be
    clawed back, and how to apportion a partial reversal."""

    program_id: str
    version: int
    rule_id: str
    asset: str
    earned: int  # as paid, after caps and budget
    left: int  # not yet clawed back
    record_id: uuid.UUID
    period: str  # the counter period it was counted in
    clawback_until: dt.datetime | None  # None: no time limit
    basis: str = "amount"  # "amount", "quantity" (per unit), "order" or "threshold"
    formula: str = ""  # how it was computed, repeated in the clawback's explanation
    # Orders and thresholds: the level below which the reward is taken back, and for a
    # threshold what it measures (the rule's metric, categories and period kind).
    level: int = 0
    metric: str = ""
    categories: list[str] = []
    period_kind: str = ""
    currency: str = ""
    # Thresholds: what later periods reversed of this period's sales, in the metric's unit.
    returned_later: int = 0


class LineState(msgspec.Struct, kw_only=True):
    line_id: str
    category: str
    quantity: int
    net_amount: int
    quantity_left: int
    amount_left: int
    earnings: list[Earning] = []


class OrderState(msgspec.Struct, kw_only=True):
    order_id: str
    event_id: uuid.UUID
    occurred_at: dt.datetime
    customer_id: str
    currency: str
    lines: dict[str, LineState]
    earnings: list[Earning] = []  # per-order rewards (new customer)
    keep_until: dt.date


class Hold(msgspec.Struct, kw_only=True):
    record_id: uuid.UUID  # the accrual that put the amount on hold
    source_event_id: uuid.UUID
    leg: str
    program_id: str
    version: int
    rule_id: str
    asset: str
    left: int
    release_at: dt.datetime
    lot_expiry_months: int | None = None  # points and funds start a lot when released
    period: str = ""  # the counter period the accrual counted in ("" in older states)


class Lot(msgspec.Struct, kw_only=True):
    """Units of an expiring asset (points, funds) that became available on one day."""

    record_id: uuid.UUID  # the record that made them available
    source_event_id: uuid.UUID
    leg: str
    program_id: str
    version: int
    rule_id: str | None
    asset: str
    left: int
    available_on: dt.date
    expires_on: dt.date  # expired from this day on (inclusive)


class Claim(msgspec.Struct, kw_only=True):
    claim_id: str
    event_id: uuid.UUID
    asset: str
    amount: int
    program_id: str
    version: int
    submitted_by: str


# The keys of the state's maps that name a rule or a target of a program: each made by one
# function and read back by another, typed so that one map's key cannot be used for
# another's, and stored as the text they are, so the state's JSON is the same.
RuleKey = NewType("RuleKey", str)  # "program|rule|period" (counter_key): counters, gated
ThresholdKey = NewType("ThresholdKey", str)  # "program|rule|period", or "|*" once ever
TargetKey = NewType("TargetKey", str)  # "program|period|metric" (targets.target_key)
EarnedKey = NewType("EarnedKey", str)  # "program|rule|descendant" (close.overrides)


class PartnerState(msgspec.Struct, kw_only=True):
    partner_id: str
    profile: Profile | None = None
    months: dict[str, MonthAgg] = {}
    tiers: dict[str, TierState] = {}  # program id -> tier
    orders: dict[str, OrderState] = {}
    counters: dict[RuleKey, int] = {}  # paid per rule and period, net of clawbacks
    holds: list[Hold] = []
    lots: list[Lot] = []
    available: dict[str, int] = {}  # ledger asset -> balance of partner:<id>:available
    pending: dict[str, int] = {}  # ledger asset -> balance of partner:<id>:pending
    thresholds: dict[ThresholdKey, Earning] = {}  # threshold bonuses paid
    customers: dict[str, str] = {}  # customer id -> month first sold to by this partner
    rewarded: dict[str, str] = {}  # "program|customer" -> month rewarded
    courses: dict[str, str] = {}  # "program|course" -> month paid
    certifications: dict[str, str] = {}  # certification id -> month first earned
    claims: dict[str, Claim] = {}  # claims awaiting approval
    settled_claims: dict[str, str] = {}  # claim id -> month approved or rejected
    closed: list[str] = []  # months already settled, as ``ClosedPeriod.text()``
    pruned_on: dt.date | None = None  # the latest day ``prune`` ran for
    days: dict[str, DayAgg] = {}  # "YYYY-MM-DD" -> facts, while a day window needs them
    targets: dict[TargetKey, TargetState] = {}
    gated: dict[RuleKey, str] = {}  # -> the month its gate took the rule's period
    # Override earned on a descendant's sales, net of returns.
    override_earned: dict[EarnedKey, int] = {}


_ENCODER: Final = msgspec.json.Encoder(order="deterministic")
_DECODER: Final = msgspec.json.Decoder(PartnerState)


def encode_state(state: PartnerState) -> bytes:
    """The JSON stored in ``partner_state.state``; equal states give equal bytes."""
    return _ENCODER.encode(state)


def decode_state(data: bytes | str) -> PartnerState:
    state = _DECODER.decode(data)
    # States stored before holds were kept in release order had them in accrual order.
    state.holds.sort(key=hold_order)
    state.lots.sort(key=lot_order)
    return state


def hold_order(hold: Hold) -> tuple[dt.datetime, uuid.UUID]:
    """The order of ``PartnerState.holds``: soonest release first, then by record id, so
    that ``due`` finds the holds that ended at the front (a UUID orders as its text)."""
    return (hold.release_at, hold.record_id)


def lot_order(lot: Lot) -> tuple[dt.date, uuid.UUID]:
    """The order of ``PartnerState.lots``: soonest expiry first, then by record id."""
    return (lot.expires_on, lot.record_id)


_ORDER_DECODER: Final = msgspec.json.Decoder(OrderState)


def encode_order(order: OrderState) -> bytes:
    """The JSON stored in ``partner_orders.state``."""
    return _ENCODER.encode(order)


def decode_order(data: bytes | str) -> OrderState:
    return _ORDER_DECODER.decode(data)


def new_state(partner_id: str) -> PartnerState:
    return PartnerState(partner_id=partner_id)


_COPY_ENCODER: Final = msgspec.msgpack.Encoder()
_COPY_DECODER: Final = msgspec.msgpack.Decoder(PartnerState)


def copy_state(state: PartnerState) -> PartnerState:
    """A deep copy, so the engine never changes the state it was given.

    Through MessagePack rather than JSON: the copy is made for every event, and MessagePack
    round-trips the same types several times faster.
    """
    return _COPY_DECODER.decode(_COPY_ENCODER.encode(state))


class ClosedPeriod(NamedTuple):
    """A month closed for one program version. ``PartnerState.closed`` stores it as text,
    ``"<program_id>|<version>|<YYYY-MM>"`` (ids hold no ``|``), the form states were
    always stored in; the engine reads and writes it only through this type."""

    program_id: str
    version: int
    month: str  # "YYYY-MM"

    def text(self) -> str:
        return f"{self.program_id}|{self.version}|{self.month}"

    @classmethod
    def parse(cls, text: str) -> "ClosedPeriod":
        program_id, version, month = text.split("|")
        return cls(program_id, int(version), month)


def is_closed(state: PartnerState, closed: ClosedPeriod) -> bool:
    return closed.text() in state.closed


def mark_closed(state: PartnerState, closed: ClosedPeriod) -> None:
    state.closed.append(closed.text())


def closed_periods(state: PartnerState) -> list[ClosedPeriod]:
    return [ClosedPeriod.parse(text) for text in state.closed]


def month(state: PartnerState, key: str) -> MonthAgg:
    found = state.months.get(key)
    if found is None:
        found = state.months[key] = MonthAgg()
    return found


def day_facts(state: PartnerState, day: dt.date) -> DayAgg:
    key = day.isoformat()
    found = state.days.get(key)
    if found is None:
        found = state.days[key] = DayAgg()
    return found


def counter_key(program_id: str, rule_id: str, period: str) -> RuleKey:
    return RuleKey(f"{program_id}|{rule_id}|{period}")


def period_of_rule_key(key: RuleKey) -> str:
    return key.rsplit("|", 1)[1]


def period_of_target_key(key: TargetKey) -> str:
    return key.split("|")[1]


def visible_order(state: PartnerState, order_id: str) -> OrderState | None:
    """The order, unless pruning has passed it.

    An order counts as gone from the day ``prune`` has run for is past its ``keep_until``,
    whether or not it is still in ``orders``. So the live worker, which loads only the
    orders a batch names (``partner_orders``), sees exactly what a replay holding every
    order in memory sees.
    """
    order = state.orders.get(order_id)
    if order is None or (state.pruned_on is not None and order.keep_until < state.pruned_on):
        return None
    return order


def prune(state: PartnerState, today: dt.date) -> None:
    """Forget what no rule can need any more (see the module docstring).

    Once per day of event time: a later event of the same day (or an earlier day) has
    nothing more to forget, and pruning is linear in what the state holds.
    """
    last = state.pruned_on
    if last is not None and today <= last:
        return
    state.pruned_on = today
    if state.days:
        oldest_day = (today - dt.timedelta(days=DAYS_KEPT - 1)).isoformat()
        if min(state.days) < oldest_day:
            state.days = {k: v for k, v in state.days.items() if k >= oldest_day}
    # Everything else is kept by month or year, so only a new month has more to forget;
    # orders past ``keep_until`` are already gone to ``visible_order`` (it reads
    # ``pruned_on``), so dropping them once a month changes no decision.
    if last is not None and (last.year, last.month) == (today.year, today.month):
        return
    oldest_month = month_key(add_months(dt.date(today.year, today.month, 1), -MONTHS_KEPT + 1))
    state.months = {k: v for k, v in state.months.items() if k >= oldest_month}
    oldest_year = str(today.year - 1)
    state.counters = {
        k: v for k, v in state.counters.items() if period_of_rule_key(k)[:4] >= oldest_year
    }
    state.closed = [c.text() for c in closed_periods(state) if c.month[:4] >= oldest_year]
    state.settled_claims = {
        k: v for k, v in state.settled_claims.items() if v[:4] >= oldest_year
    }
    state.orders = {k: v for k, v in state.orders.items() if v.keep_until >= today}
    # Targets are "program|period|metric"; gates "program|rule|period", kept as long as the
    # orders whose earnings they took (a reversal then takes nothing more).
    state.targets = {
        k: v for k, v in state.targets.items() if period_of_target_key(k)[:4] >= oldest_year
    }
    oldest_gate = str(today.year - ORDER_RETENTION_DAYS // 365 - 1)
    state.gated = {
        k: v for k, v in state.gated.items() if period_of_rule_key(k)[:4] >= oldest_gate
    }
