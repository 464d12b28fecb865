"""The checks of ingestion that need state: sold lines for reversals, and the Kafka key.

The intake's book of sold lines (``sold_lines``) holds what each line sold and what
reversals left of it, so that a reversal the sale cannot cover is dead-lettered here, with
its reason, before it reaches the inbox. It is not the engine's ``partner_orders``, which
holds what each line earned under each program's rules (see migration 0017).

Pure: the batch loads the order lines it may touch in one query (``processors.intake.store``),
these functions judge and change them in memory in acceptance order, and the batch writes
back what changed. A sale and its reversal in the same batch therefore see each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from schemas.codec import RejectCode, Rejection
from schemas.events import SaleRecorded, SaleReversed
from schemas.screening import escape_controls
from schemas.streams import Message

OrderKey = tuple[str, str]  # (partner_id, order_id)
LineKey = tuple[str, str, str]  # (partner_id, order_id, line_id)


@dataclass(slots=True)
class OrderLine:
    """One sold line and what reversals left of it (a row of the ``sold_lines`` table)."""

    currency: str
    sale_event_id: uuid.UUID
    quantity_sold: int
    net_sold: int
    quantity_remaining: int
    net_remaining: int


class OrderBook:
    """The order lines one batch may touch, judged and changed in acceptance order."""

    def __init__(self, lines: Mapping[LineKey, OrderLine]) -> None:
        self._orders: dict[OrderKey, dict[str, OrderLine]] = {}
        for (partner_id, order_id, line_id), line in lines.items():
            self._orders.setdefault((partner_id, order_id), {})[line_id] = line
        self._changed: set[LineKey] = set()

    def accept_sale(self, sale: SaleRecorded) -> Rejection | None:
        """Record the sale's lines, or say why not: an order is recorded once."""
        key = (sale.partner_id, sale.order_id)
        existing = self._orders.get(key)
        if existing is not None:
            first = next(iter(existing.values())).sale_event_id
            return Rejection(
                code=RejectCode.INVALID_VALUE,
                path="$.order_id",
                message=f"order {sale.order_id!r} of partner {sale.partner_id} was already"
                f" recorded by event {first}; an order is recorded once (a correction is a"
                " SaleReversed)",
            )
        lines = {
            line.line_id: OrderLine(
                currency=sale.currency,
                sale_event_id=sale.event_id,
                quantity_sold=line.quantity,
                net_sold=line.net_amount,
                quantity_remaining=line.quantity,
                net_remaining=line.net_amount,
            )
            for line in sale.lines
        }
        self._orders[key] = lines
        self._changed.update((*key, line_id) for line_id in lines)
        return None

    def accept_reversal(self, reversal: SaleReversed) -> Rejection | None:
        """Take the reversal off what remains of its order, or say why it cannot be."""
        key = (reversal.partner_id, reversal.order_id)
        order = self._orders.get(key)
        if order is None:
            return Rejection(
                code=RejectCode.UNKNOWN_ORDER,
                path="$.order_id",
                message=f"partner {reversal.partner_id} has no recorded order"
                f" {reversal.order_id!r} to reverse",
            )
        currency = next(iter(order.values())).currency
        if reversal.currency != currency:
            return Rejection(
                code=RejectCode.CURRENCY_MISMATCH,
                path="$.currency",
                message=f"reversal currency {reversal.currency} differs from the sale's"
                f" {currency}",
            )
        rejection = (
            _check_full(reversal, order)
            if reversal.scope == "full"
            else _check_partial(reversal, order)
        )
        if rejection is not None:
            return rejection
        self._take(key, order, reversal)
        return None

    def changed(self) -> Iterator[tuple[LineKey, OrderLine]]:
        """The lines sold or reversed since loading, to write back."""
        for partner_id, order_id, line_id in sorted(self._changed):
            yield (partner_id, order_id, line_id), self._orders[(partner_id, order_id)][line_id]

    def _take(self, key: OrderKey, order: dict[str, OrderLine], reversal: SaleReversed) -> None:
        if reversal.scope == "full":
            for line_id, line in order.items():
                line.quantity_remaining = line.net_remaining = 0
                self._changed.add((*key, line_id))
            return
        for returned in reversal.lines:
            line = order[returned.line_id]
            line.quantity_remaining -= returned.quantity
            line.net_remaining -= returned.net_amount
            assert line.quantity_remaining >= 0 and line.net_remaining >= 0, (key, line)
            self._changed.add((*key, returned.line_id))


def _check_full(reversal: SaleReversed, order: dict[str, OrderLine]) -> Rejection | None:
    if any(line.quantity_remaining or line.net_remaining for line in order.values()):
        return None
    return Rejection(
        code=RejectCode.REVERSAL_EXCEEDS_SALE,
        path="$",
        message=f"nothing remains of order {reversal.order_id!r} to reverse: it was reversed"
        " in full already",
    )


def _check_partial(reversal: SaleReversed, order: dict[str, OrderLine]) -> Rejection | None:
    for index, returned in enumerate(reversal.lines):
        line = order.get(returned.line_id)
        at = f"$.lines[{index}]"
        if line is None:
            return Rejection(
                code=RejectCode.UNKNOWN_ORDER,
                path=f"{at}.line_id",
                message=f"order {reversal.order_id!r} has no line {returned.line_id!r}; its"
                f" lines are {', '.join(sorted(order))}",
            )
        if returned.quantity > line.quantity_remaining:
            return Rejection(
                code=RejectCode.REVERSAL_EXCEEDS_SALE,
                path=f"{at}.quantity",
                message=f"returns {returned.quantity} of line {returned.line_id!r}; only"
                f" {line.quantity_remaining} of {line.quantity_sold} sold remain",
            )
        if returned.net_amount > line.net_remaining:
            return Rejection(
                code=RejectCode.REVERSAL_EXCEEDS_SALE,
                path=f"{at}.net_amount",
                message=f"refunds {returned.net_amount} on line {returned.line_id!r}; only"
                f" {line.net_remaining} of {line.net_sold} sold remain",
            )
    return None


def check_key(key: bytes | None, message: Message) -> Rejection | None:
    """The Kafka key must be the ``partner_id``: the key picks the partition, and only one
    partition per partner keeps a partner's messages in order."""
    expected = message.partner_id.encode()
    if key == expected:
        return None
    shown = "no key" if key is None else f"key {key.decode('utf-8', 'replace')!r}"
    return Rejection(
        code=RejectCode.INVALID_VALUE,
        path="$.partner_id",
        message=f"the Kafka message key must be the partner_id {message.partner_id!r};"
        f" the message has {shown}",
    )


def conflict(message: Message, first: bytes, fp: bytes) -> Rejection:
    return Rejection(
        code=RejectCode.CONFLICT,
        path="$.event_id",
        message=f"event_id {message.event_id} was first received with other content"
        f" (fingerprint {first.hex()[:16]}, this one {fp.hex()[:16]}); the first stands",
    )


class _Ids(msgspec.Struct):
    event_id: Any = None
    partner_id: Any = None


_IDS = msgspec.json.Decoder(_Ids)


def identify(raw: bytes | None) -> tuple[uuid.UUID | None, str | None]:
    """Best effort: the event id and partner id of a rejected message, for listings."""
    try:
        ids = _IDS.decode(raw or b"")
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        # RecursionError: a message nested too deep for the parser; the codec rejects
        # those as too_deep before this is reached, so this is a second line of defence.
        return None, None
    try:
        event_id = uuid.UUID(ids.event_id) if isinstance(ids.event_id, str) else None
    except ValueError:
        event_id = None
    partner_id = ids.partner_id if isinstance(ids.partner_id, str) else None
    return event_id, escape_controls(partner_id[:200]) if partner_id else None
