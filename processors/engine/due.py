"""Time-driven work: holds that end and units that expire, as of a moment.

``due(state, as_of)`` is called by the processor when event time (or a scheduler) passes;
the engine never reads a clock. Ids derive from the record that started the hold or the lot
(its source event, program, rule and leg, plus ``:release`` or ``:expiry``), so calling
``due`` again, or at another moment after the same deadline, gives the same records.

- A hold ends at ``release_at`` (accrual time + ``hold_days``) inclusive: the amount still
  held moves from pending to available, and points or funds start their expiry lot.
- A lot expires on ``expires_on`` (the day it became available plus the policy's months,
  or that month's last day): at 00:00 UTC of that day, so it can be spent up to and
  including the day before. What expires is what is left of the lot, but never more than
  the available balance. Points go to ``points:expired``; funds return to the program.
"""

import datetime as dt
import uuid

from ledger import core
from ledger.core import Explanation, Posting, RecordKind
from processors.engine.book import Book
from processors.engine.periods import start_of_day
from processors.engine.results import Result
from processors.engine.state import PartnerState, copy_state, prune

_NO_EVENT = uuid.UUID(int=0)


def due(state: PartnerState, as_of: dt.datetime,
        *, recorded_at: dt.datetime | None = None, owned: bool = False) -> Result:
    """Release the holds that ended and expire the lots that lapsed, by ``as_of``.

    ``owned``: the caller gives up ``state`` and it is changed in place (see ``apply``).
    """
    state = state if owned else copy_state(state)
    book = Book(state, _NO_EVENT, as_of, recorded_at or as_of)
    _release(book, as_of)
    _expire(book, as_of.astimezone(dt.UTC).date())
    prune(state, as_of.astimezone(dt.UTC).date())
    return Result(drafts=book.drafts, state=state)


def next_due(state: PartnerState) -> dt.datetime | None:
    """When ``due`` would next post something for this partner: the earliest hold release or
    lot expiry (00:00 UTC of its day), or None when nothing is pending.

    The live worker stores it beside the state so that an ``AdvanceClock`` loads only the
    partners with work due; the runner uses it to pick the same partners in a replay.
    """
    # Both lists are kept in order (``state.hold_order``, ``state.lot_order``).
    moments = [h.release_at for h in state.holds[:1]]
    moments += [start_of_day(lot.expires_on) for lot in state.lots[:1]]
    return min(moments, default=None)


def _release(book: Book, as_of: dt.datetime) -> None:
    holds = book.state.holds  # in release order: those that ended are at the front
    count = 0
    while count < len(holds) and holds[count].release_at <= as_of:
        count += 1
    if not count:
        return
    ended = holds[:count]
    del holds[:count]
    for hold in ended:
        if hold.left <= 0:
            continue
        draft = book.record(
            RecordKind.HOLD_RELEASE,
            (hold.program_id, hold.version),
            hold.rule_id,
            f"{hold.leg}:release",
            [
                Posting(core.partner_pending(book.partner_id), hold.asset, -hold.left),
                Posting(core.partner_available(book.partner_id), hold.asset, hold.left),
            ],
            Explanation(summary=f"Hold of {hold.rule_id} ended: {hold.left} available",
                        formula="pending -> available at release_at",
                        inputs={"amount": hold.left,
                                "release_at": hold.release_at.isoformat()},
                        related_record_ids=(hold.record_id,)),
            occurred_at=hold.release_at,
            source_event_ids=(hold.source_event_id,),
        )
        if hold.lot_expiry_months is not None:
            book.add_lot(draft, hold.asset, hold.left, hold.lot_expiry_months)


def _expire(book: Book, today: dt.date) -> None:
    state = book.state
    lots = state.lots  # in expiry order: those that lapsed are at the front
    count = 0
    while count < len(lots) and lots[count].expires_on <= today:
        count += 1
    if not count:
        return
    lapsed = lots[:count]
    del lots[:count]
    for lot in lapsed:
        amount = min(lot.left, max(state.available.get(lot.asset, 0), 0))
        if amount <= 0:
            continue
        kind = core.asset_kind(lot.asset)
        target = (core.POINTS_EXPIRED if kind is core.AssetKind.POINTS
                  else core.program_expense(lot.program_id))
        book.record(
            RecordKind.EXPIRY,
            (lot.program_id, lot.version),
            lot.rule_id,
            f"{lot.leg}:expiry",
            [
                Posting(core.partner_available(book.partner_id), lot.asset, -amount),
                Posting(target, lot.asset, amount),
            ],
            Explanation(summary=f"{amount} {lot.asset} expired",
                        formula="left of the lot, at most the available balance",
                        inputs={"lot_left": lot.left, "amount": amount,
                                "available_on": lot.available_on.isoformat(),
                                "expires_on": lot.expires_on.isoformat()}),
            occurred_at=start_of_day(lot.expires_on),
            source_event_ids=(lot.source_event_id,),
        )
