"""Properties of the codec over generated input (Hypothesis).

- Any valid message survives encode -> decode unchanged, and its fingerprint does not
  depend on how the JSON was written (key order, whitespace, timezone offset).
- Any change to a message's content changes its fingerprint.
- decode never raises, whatever the bytes: it returns a message or a Rejection.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import Limits, Rejection, decode, encode, fingerprint
from schemas.commands import AdjustBalance
from schemas.events import (
    PartnerUpdated,
    SaleLine,
    SaleRecorded,
    SurveyCompleted,
)
from schemas.money import EXPONENTS, MAX_MINOR_UNITS
from schemas.streams import STREAMS, Message, stream_of

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LIMITS = Limits(earliest_occurred_at=datetime(2000, 1, 1, tzinfo=UTC))
# No example database: the tests must not write into the repository.
SETTINGS = settings(max_examples=150, database=None, deadline=None)

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9 ._/-]{0,20}[A-Za-z0-9]\Z")
partner_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,15}\Z")
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2029, 12, 31), timezones=st.just(UTC)
)
offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
currencies = st.sampled_from(sorted(EXPONENTS))
envelopes = st.fixed_dictionaries(
    {"event_id": st.uuids(), "occurred_at": instants, "partner_id": partner_ids}
)


@st.composite
def sales(draw: st.DrawFn) -> SaleRecorded:
    line_ids = draw(st.lists(ids, min_size=1, max_size=5, unique=True))
    lines = tuple(
        SaleLine(
            line_id=line_id,
            sku=draw(ids),
            category=draw(ids),
            quantity=draw(st.integers(1, 10**6)),
            net_amount=draw(st.integers(0, MAX_MINOR_UNITS)),
        )
        for line_id in line_ids
    )
    return SaleRecorded(
        **draw(envelopes),
        order_id=draw(ids),
        lines=lines,
        currency=draw(currencies),
        customer_id=draw(ids),
        new_customer=draw(st.booleans()),
        region=draw(ids),
    )


@st.composite
def surveys(draw: st.DrawFn) -> SurveyCompleted:
    scale = draw(st.sampled_from(["csat_1_5", "nps_0_10"]))
    score = draw(st.integers(1, 5) if scale == "csat_1_5" else st.integers(0, 10))
    return SurveyCompleted(
        **draw(envelopes),
        survey_id=draw(ids),
        customer_id=draw(ids),
        score=score,
        scale=scale,
        order_id=draw(st.none() | ids),
    )


@st.composite
def partner_updates(draw: st.DrawFn) -> PartnerUpdated:
    changes = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "status": st.sampled_from(["active", "suspended", "terminated"]),
                "team": st.none() | ids,
                "region": ids,
            },
        ).filter(bool)
    )
    return PartnerUpdated(**draw(envelopes), **changes)


@st.composite
def adjustments(draw: st.DrawFn) -> AdjustBalance:
    amount = draw(st.integers(-MAX_MINOR_UNITS, MAX_MINOR_UNITS).filter(bool))
    return AdjustBalance(
        **draw(envelopes), asset=draw(currencies), amount=amount, author=draw(ids), reason=draw(ids)
    )


messages = st.one_of(sales(), surveys(), partner_updates(), adjustments())


def rewritten(message: Message, offset: timezone, data: st.DataObject) -> bytes:
    """The same message as another producer might write it: keys shuffled, indented,
    the timestamp in another offset."""
    obj: dict[str, Any] = json.loads(encode(message))
    obj["occurred_at"] = message.occurred_at.astimezone(offset).isoformat()
    keys = data.draw(st.permutations(list(obj)))
    return json.dumps(
        {k: obj[k] for k in keys}, indent=data.draw(st.sampled_from([None, 1, 4]))
    ).encode()


@SETTINGS
@given(message=messages, offset=offsets, data=st.data())
def test_round_trip_and_fingerprint_ignore_how_json_is_written(
    message: Message, offset: timezone, data: st.DataObject
) -> None:
    stream = stream_of(type(message))
    assert decode(stream, encode(message), now=NOW, limits=LIMITS) == message
    other = decode(stream, rewritten(message, offset, data), now=NOW, limits=LIMITS)
    assert other == message
    assert not isinstance(other, Rejection)
    assert fingerprint(other) == fingerprint(message)


@SETTINGS
@given(sale=sales(), data=st.data())
def test_any_change_of_content_changes_the_fingerprint(
    sale: SaleRecorded, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(sale.lines) - 1))
    line = sale.lines[index]
    changed_line = data.draw(
        st.sampled_from(
            [
                SaleLine(**{**_fields(line), "quantity": line.quantity % 10**6 + 1}),
                SaleLine(
                    **{**_fields(line), "net_amount": (line.net_amount + 1) % MAX_MINOR_UNITS}
                ),
                SaleLine(**{**_fields(line), "sku": line.sku + "x"}),
            ]
        )
    )
    lines = sale.lines[:index] + (changed_line,) + sale.lines[index + 1 :]
    changed = SaleRecorded(**{**_fields(sale), "lines": lines})
    assert changed != sale
    assert fingerprint(changed) != fingerprint(sale)
    later = SaleRecorded(
        **{**_fields(sale), "occurred_at": sale.occurred_at + timedelta(milliseconds=1)}
    )
    assert fingerprint(later) != fingerprint(sale)


def _fields(struct: Any) -> dict[str, Any]:
    return {name: getattr(struct, name) for name in struct.__struct_fields__}


@SETTINGS
@given(data=st.binary(max_size=300), stream=st.sampled_from(sorted(STREAMS)))
def test_decode_never_raises_on_arbitrary_bytes(data: bytes, stream: str) -> None:
    result = decode(stream, data, now=NOW, limits=LIMITS)
    assert isinstance(result, Rejection) or stream_of(type(result)) == stream


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@SETTINGS
@given(
    message=sales(), path=st.sampled_from(["", "lines", "currency", "quantity"]), value=json_values
)
def test_decode_never_raises_on_corrupted_messages(
    message: SaleRecorded, path: str, value: Any
) -> None:
    """Valid messages with one field replaced by any JSON value: a Rejection or a message,
    and a Rejection always points into the message."""
    obj = json.loads(encode(message))
    if path == "quantity":
        obj["lines"][0]["quantity"] = value
    elif path:
        obj[path] = value
    else:
        obj["unexpected"] = value
    result = decode("sales", json.dumps(obj).encode(), now=NOW, limits=LIMITS)
    if isinstance(result, Rejection):
        assert result.path.startswith("$") and result.message
    else:
        assert isinstance(result, SaleRecorded)
    if not path:
        assert isinstance(result, Rejection) and result.path == "$.unexpected"
