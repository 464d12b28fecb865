"""The event contract at the byte level, for what it accepts: valid messages on their
streams, UTC normalisation, round trips, and fingerprints telling duplicates from conflicts;
the event types built in Python, currencies, and limits from settings. Rejections with
their codes and paths are in ``test_contract_rejections.py``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from contract_support import (
    EVENT_ID,
    LIMITS,
    NOW,
    accepted,
    adjust,
    close,
    envelope,
    raw,
    rejected,
    reversal,
    sale,
    survey,
    targets_set,
    with_line,
)

from schemas import money
from schemas.codec import (
    ContractViolation,
    Limits,
    RejectCode,
    Rejection,
    decode,
    encode,
    fingerprint,
    from_violation,
)
from schemas.commands import ClosePeriod
from schemas.events import SaleLine, SaleRecorded
from schemas.streams import ANY, STREAMS, get_stream, stream_of


def test_valid_messages_decode_on_their_stream() -> None:
    assert isinstance(decode("sales", raw(sale()), now=NOW, limits=LIMITS), SaleRecorded)
    assert isinstance(decode("commands", raw(close()), now=NOW, limits=LIMITS), ClosePeriod)
    full = reversal(scope="full")
    del full["lines"]
    accepted("sales", raw(full))
    accepted("surveys", raw(survey(0, "nps_0_10")))
    accepted("surveys", raw(survey(5)))


def test_occurred_at_is_normalised_to_utc() -> None:
    decoded = decode("sales", raw(sale()), now=NOW, limits=LIMITS)
    assert isinstance(decoded, SaleRecorded)
    assert decoded.occurred_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert decoded.occurred_at.tzinfo is UTC
    assert b'"occurred_at":"2026-03-01T09:00:00Z"' in encode(decoded)


def test_round_trip_through_canonical_bytes_is_identity() -> None:
    for data, stream in [
        (sale(), "sales"),
        (reversal(), "sales"),
        (close(), "commands"),
        (adjust(), "commands"),
        (survey(3), "surveys"),
    ]:
        decoded = decode(stream, raw(data), now=NOW, limits=LIMITS)
        assert not isinstance(decoded, Rejection), decoded
        again = decode(stream, encode(decoded), now=NOW, limits=LIMITS)
        assert again == decoded
        assert encode(again) == encode(decoded)


def test_partner_updated_distinguishes_absent_from_null() -> None:
    cleared = accepted("partners", raw(envelope("PartnerUpdated", team=None)))
    untouched = accepted("partners", raw(envelope("PartnerUpdated", status="active")))
    assert encode(cleared).endswith(b'"team":null}')
    assert b"team" not in encode(untouched)


def test_same_content_written_differently_has_one_fingerprint() -> None:
    """Whitespace, key order, the offset of the same instant and explicit defaults."""
    original = decode("sales", raw(sale()), now=NOW, limits=LIMITS)
    reordered = dict(reversed(list(sale().items())))
    reordered["occurred_at"] = "2026-03-01T09:00:00Z"
    reordered["schema_version"] = 1
    rewritten = json.dumps(reordered, indent=4).encode()
    assert rewritten != raw(sale())
    other = decode("sales", rewritten, now=NOW, limits=LIMITS)
    assert not isinstance(original, Rejection) and not isinstance(other, Rejection)
    assert fingerprint(original) == fingerprint(other)
    assert len(fingerprint(original)) == 32


@pytest.mark.parametrize(
    "changed",
    [
        with_line(1, net_amount=251),
        sale(occurred_at="2026-03-01T10:00:01+01:00"),
        sale(new_customer=False),
        sale(lines=list(reversed(sale()["lines"]))),
    ],
    ids=["amount", "time", "flag", "line-order"],
)
def test_changed_content_has_another_fingerprint(changed: dict[str, Any]) -> None:
    """Same event_id, different content: the processor's conflict."""
    first = decode("sales", raw(sale()), now=NOW, limits=LIMITS)
    second = decode("sales", raw(changed), now=NOW, limits=LIMITS)
    assert not isinstance(first, Rejection) and not isinstance(second, Rejection)
    assert first.event_id == second.event_id
    assert fingerprint(first) != fingerprint(second)


def test_building_events_in_python_runs_the_same_rules() -> None:
    line = SaleLine(line_id="1", sku="A", category="c", quantity=1, net_amount=5)
    fields: dict[str, Any] = dict(
        event_id=uuid.UUID(EVENT_ID),
        occurred_at=datetime(2026, 3, 1, 10, tzinfo=timezone(timedelta(hours=2))),
        partner_id="P-1",
        order_id="SO-1",
        lines=(line,),
        currency="EUR",
        customer_id="C",
        new_customer=False,
        region="EU",
    )
    assert SaleRecorded(**fields).occurred_at == datetime(2026, 3, 1, 8, tzinfo=UTC)
    with pytest.raises(ContractViolation) as bad_currency:
        SaleRecorded(**{**fields, "currency": "XXX"})
    violation = bad_currency.value
    assert (violation.code, violation.path) == (RejectCode.UNKNOWN_CURRENCY, "currency")
    with pytest.raises(ContractViolation) as naive:
        SaleRecorded(**{**fields, "occurred_at": datetime(2026, 3, 1, 10)})
    assert naive.value.code == RejectCode.NAIVE_TIMESTAMP


def test_convert_from_python_objects_keeps_the_violation() -> None:
    """msgspec.convert (used for dicts) runs the same rules; the cause carries code and path."""
    data = with_line(1, currency="USD")
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(data, SaleRecorded)
    cause = caught.value.__cause__
    assert isinstance(cause, ContractViolation)
    assert (cause.code, cause.path) == (RejectCode.CURRENCY_MISMATCH, "lines[1].currency")
    assert from_violation(cause) == rejected("sales", raw(data))


def test_programming_errors_raise() -> None:
    with pytest.raises(ValueError, match="unknown stream 'sale'"):
        decode("sale", raw(sale()), now=NOW, limits=LIMITS)
    with pytest.raises(ValueError, match="timezone-aware"):
        decode("sales", raw(sale()), now=datetime(2026, 4, 1), limits=LIMITS)


def test_targets_are_set_for_a_month_a_quarter_or_a_year() -> None:
    for period in ("2026-03", "2026-Q1", "2026"):
        target = accepted("commands", raw(targets_set(period=period)))
        assert (type(target).__name__, target.period, target.value) == (
            "TargetsSet", period, 60_000_000)
    assert rejected("commands", raw(targets_set(partner_id="*"))).path == "$.partner_id"


def test_every_type_is_carried_by_exactly_one_stream() -> None:
    carried = [t for s in STREAMS.values() for t in s.types]
    assert sorted(t.__name__ for t in carried) == sorted(t.__name__ for t in ANY.types)
    assert len(carried) == len(set(carried)) == 15
    assert stream_of(SaleRecorded) == "sales" and stream_of(ClosePeriod) == "commands"
    assert set(STREAMS) == {"sales", "surveys", "trainings", "partners", "commands"}
    assert get_stream("surveys").type_names == ("SurveyCompleted",)


def test_currency_table_and_minor_units() -> None:
    assert money.exponent("EUR") == 2 and money.exponent("JPY") == 0
    assert money.exponent("KWD") == 3 and money.exponent("CLF") == 4
    assert all(len(c) == 3 and c.isupper() for c in money.EXPONENTS)
    assert set(money.EXPONENTS.values()) <= {0, 2, 3, 4}
    assert len(money.EXPONENTS) > 150
    assert not money.is_currency("XAU") and not money.is_currency("eur")
    assert money.to_minor("12.50", "EUR") == 1250
    assert money.to_minor("1200", "JPY") == 1200
    assert money.to_minor("-0.005", "KWD") == -5
    with pytest.raises(ValueError, match="more than 2 decimal places"):
        money.to_minor("12.505", "EUR")
    with pytest.raises(ValueError, match="not a decimal"):
        money.to_minor("12,50", "EUR")
    with pytest.raises(ValueError, match="unknown currency"):
        money.exponent("ABC")
    assert money.format_minor(-1250, "EUR") == "-12.50 EUR"
    assert money.format_minor(5, "KWD") == "0.005 KWD"
    assert money.format_minor(1200, "JPY") == "1200 JPY"


def test_rejections_serialise_for_dead_letters() -> None:
    rejection = rejected("sales", raw(with_line(0, quantity=-2)))
    data = msgspec.json.encode(rejection)
    assert json.loads(data) == {
        "code": "non_positive_quantity",
        "path": "$.lines[0].quantity",
        "message": "expected > 0, got -2",
    }
    assert msgspec.json.decode(data, type=Rejection) == rejection


def test_limits_are_validated_when_converted_from_settings() -> None:
    assert msgspec.convert({"max_message_bytes": 10}, Limits) == Limits(max_message_bytes=10)
    with pytest.raises(msgspec.ValidationError, match="max_message_bytes"):
        msgspec.convert({"max_message_bytes": 0}, Limits)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"max_bytes": 10}, Limits)
