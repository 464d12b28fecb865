"""The event contract at the byte level: every reject code with its path, round trips,
UTC normalisation, and fingerprints telling duplicates from conflicts."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from schemas import money
from schemas.codec import (
    STATEFUL_CODES,
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

NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits()
EVENT_ID = "6f1c2b1e-4a8e-4c5e-9d7e-0a1b2c3d4e5f"


def envelope(type_name: str, partner_id: str = "P-1", **body: Any) -> dict[str, Any]:
    return {
        "type": type_name,
        "event_id": EVENT_ID,
        "occurred_at": "2026-03-01T10:00:00+01:00",
        "partner_id": partner_id,
        **body,
    }


def sale(**changes: Any) -> dict[str, Any]:
    data = envelope(
        "SaleRecorded",
        order_id="SO-1",
        lines=[
            {"line_id": "1", "sku": "A", "category": "routers", "quantity": 2, "net_amount": 1000},
            {"line_id": "2", "sku": "B", "category": "cables", "quantity": 1, "net_amount": 250},
        ],
        currency="EUR",
        customer_id="C-1",
        new_customer=True,
        region="EU",
    )
    data.update(changes)
    return data


def with_line(index: int, **changes: Any) -> dict[str, Any]:
    data = sale()
    data["lines"][index].update(changes)
    return data


def without(data: dict[str, Any], *path: str | int) -> dict[str, Any]:
    data = copy.deepcopy(data)
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return data


def survey(score: float, scale: str = "csat_1_5") -> dict[str, Any]:
    return envelope("SurveyCompleted", survey_id="S-1", customer_id="C-1", score=score, scale=scale)


def reversal(**changes: Any) -> dict[str, Any]:
    data = envelope(
        "SaleReversed",
        order_id="SO-1",
        reversal_id="R-1",
        scope="partial",
        reason="return",
        currency="EUR",
        lines=[{"line_id": "1", "quantity": 1, "net_amount": 500}],
    )
    data.update(changes)
    return data


def adjust(**changes: Any) -> dict[str, Any]:
    data = envelope(
        "AdjustBalance", asset="EUR", amount=-100, author="fin.lee", reason="double payment"
    )
    data.update(changes)
    return data


def close(**changes: Any) -> dict[str, Any]:
    data = envelope("ClosePeriod", partner_id="*", period="2026-03")
    data.update(changes)
    return data


def targets_set(**changes: Any) -> dict[str, Any]:
    data = envelope("TargetsSet", program_id="northwind-emea", period="2026-Q2",
                    metric="net_sales", value=60_000_000, set_by="finance.lee")
    data.update(changes)
    return data


def raw(data: dict[str, Any] | list[Any]) -> bytes:
    return json.dumps(data).encode()


def accepted(stream: str, data: bytes, limits: Limits = LIMITS) -> Any:
    result = decode(stream, data, now=NOW, limits=limits)
    assert not isinstance(result, Rejection), str(result)
    return result


def rejected(stream: str, data: bytes | None, limits: Limits = LIMITS) -> Rejection:
    result = decode(stream, data, now=NOW, limits=limits)
    assert isinstance(result, Rejection), f"expected a rejection, got {result!r}"
    return result


# (code, stream, bytes, expected path, limits): one or more cases per stateless code.
FUTURE = (NOW + timedelta(seconds=301)).isoformat()
CASES: list[tuple[RejectCode, str, bytes | None, str]] = [
    (RejectCode.EMPTY, "sales", b"", "$"),
    (RejectCode.EMPTY, "sales", None, "$"),
    (RejectCode.EMPTY, "sales", b" \r\n", "$"),
    (
        RejectCode.INVALID_UTF8,
        "sales",
        raw(sale(customer_id="C-1")).replace(b"C-1", b"C\xff1"),
        "$",
    ),
    (RejectCode.INVALID_UTF8, "sales", b"\xfe{}", "$"),
    (RejectCode.NOT_JSON, "sales", b"{not json", "$"),
    (RejectCode.NOT_JSON, "sales", raw(sale()) + b" trailing", "$"),
    (RejectCode.NOT_OBJECT, "sales", b"[1, 2]", "$"),
    (RejectCode.NOT_OBJECT, "surveys", b"42", "$"),
    (RejectCode.UNKNOWN_TYPE, "sales", raw(sale(type="SaleShipped")), "$.type"),
    (RejectCode.UNKNOWN_TYPE, "surveys", raw(sale()), "$.type"),
    (RejectCode.MISSING_FIELD, "sales", raw(without(sale(), "customer_id")), "$.customer_id"),
    (RejectCode.MISSING_FIELD, "sales", raw(without(sale(), "lines", 1, "sku")), "$.lines[1].sku"),
    (RejectCode.MISSING_FIELD, "sales", raw(without(sale(), "type")), "$.type"),
    (RejectCode.MISSING_FIELD, "surveys", raw(without(survey(4), "type")), "$.type"),
    (RejectCode.WRONG_TYPE, "sales", raw(with_line(0, quantity="2")), "$.lines[0].quantity"),
    (RejectCode.WRONG_TYPE, "sales", raw(sale(new_customer="yes")), "$.new_customer"),
    (RejectCode.WRONG_TYPE, "sales", raw(sale(lines={"line_id": "1"})), "$.lines"),
    (RejectCode.WRONG_TYPE, "surveys", raw(survey(4.5)), "$.score"),
    (RejectCode.UNKNOWN_FIELD, "sales", raw(sale(net_amout=5)), "$.net_amout"),
    (RejectCode.UNKNOWN_FIELD, "sales", raw(with_line(1, discount=5)), "$.lines[1].discount"),
    (
        RejectCode.NON_POSITIVE_QUANTITY,
        "sales",
        raw(with_line(1, quantity=0)),
        "$.lines[1].quantity",
    ),
    (
        RejectCode.NON_POSITIVE_QUANTITY,
        "sales",
        raw(with_line(0, quantity=-2)),
        "$.lines[0].quantity",
    ),
    (
        RejectCode.NON_POSITIVE_QUANTITY,
        "sales",
        raw(reversal(lines=[{"line_id": "1", "quantity": 0, "net_amount": 1}])),
        "$.lines[0].quantity",
    ),
    (
        RejectCode.FRACTIONAL_AMOUNT,
        "sales",
        raw(with_line(0, net_amount=12.5)),
        "$.lines[0].net_amount",
    ),
    # 100.0 and 1e2 are whole, but written as floats: the producer computed in floats.
    (
        RejectCode.FRACTIONAL_AMOUNT,
        "sales",
        raw(sale()).replace(b'"net_amount": 1000', b'"net_amount": 100.0'),
        "$.lines[0].net_amount",
    ),
    (
        RejectCode.FRACTIONAL_AMOUNT,
        "sales",
        raw(sale()).replace(b'"net_amount": 250', b'"net_amount": 1e2'),
        "$.lines[1].net_amount",
    ),
    (RejectCode.FRACTIONAL_AMOUNT, "sales", raw(with_line(1, quantity=1.5)), "$.lines[1].quantity"),
    (RejectCode.FRACTIONAL_AMOUNT, "commands", raw(adjust(amount=10.5)), "$.amount"),
    (RejectCode.UNKNOWN_CURRENCY, "sales", raw(sale(currency="XYZ")), "$.currency"),
    (RejectCode.UNKNOWN_CURRENCY, "sales", raw(sale(currency="eur")), "$.currency"),
    (
        RejectCode.UNKNOWN_CURRENCY,
        "sales",
        raw(with_line(1, currency="ABC")),
        "$.lines[1].currency",
    ),
    (RejectCode.UNKNOWN_CURRENCY, "sales", raw(reversal(currency="EURO")), "$.currency"),
    (
        RejectCode.CURRENCY_MISMATCH,
        "sales",
        raw(with_line(1, currency="USD")),
        "$.lines[1].currency",
    ),
    (
        RejectCode.NAIVE_TIMESTAMP,
        "sales",
        raw(sale(occurred_at="2026-03-01T10:00:00")),
        "$.occurred_at",
    ),
    (RejectCode.FUTURE_TIMESTAMP, "sales", raw(sale(occurred_at=FUTURE)), "$.occurred_at"),
    (RejectCode.FUTURE_TIMESTAMP, "commands", raw(close(occurred_at=FUTURE)), "$.occurred_at"),
    (RejectCode.SCORE_OFF_SCALE, "surveys", raw(survey(6)), "$.score"),
    (RejectCode.SCORE_OFF_SCALE, "surveys", raw(survey(0)), "$.score"),
    (RejectCode.SCORE_OFF_SCALE, "surveys", raw(survey(11, "nps_0_10")), "$.score"),
    (RejectCode.SCORE_OFF_SCALE, "surveys", raw(survey(-1, "nps_0_10")), "$.score"),
    (RejectCode.TOO_DEEP, "sales", b"[" * 1000 + b"]" * 1000, "$"),
    (RejectCode.TOO_DEEP, "sales", raw(sale()).replace(b'"A"', b'{"a": ' * 40 + b"1" + b"}" * 40),
     "$"),
    (RejectCode.CONTROL_CHARACTER, "sales", raw(sale(customer_id="C-\u0000-1")), "$.customer_id"),
    (RejectCode.CONTROL_CHARACTER, "sales", raw(sale(order_id="\x07\x1b[31m")), "$.order_id"),
    (RejectCode.CONTROL_CHARACTER, "sales", raw(with_line(1, sku="B\u0085C")), "$.lines[1].sku"),
    (RejectCode.CONTROL_CHARACTER, "sales", raw(with_line(0, sku="A\tB")), "$.lines[0].sku"),
    (RejectCode.CONTROL_CHARACTER, "sales", raw(reversal(reason="ok\x1b[2J")), "$.reason"),
    (RejectCode.CONTROL_CHARACTER, "commands", raw(adjust(author="fin\x7f")), "$.author"),
    (RejectCode.TOO_OLD, "sales", raw(sale(occurred_at="1900-01-01T00:00:00Z")), "$.occurred_at"),
    (RejectCode.TOO_OLD, "sales", raw(sale(occurred_at="0001-01-01T00:00:00Z")), "$.occurred_at"),
    (RejectCode.TOO_OLD, "commands", raw(close(occurred_at="2016-03-31T23:59:59Z")),
     "$.occurred_at"),
    (RejectCode.INVALID_VALUE, "sales", raw(sale(partner_id="*")), "$.partner_id"),
    (RejectCode.INVALID_VALUE, "sales", raw(sale(partner_id="P 1")), "$.partner_id"),
    (RejectCode.INVALID_VALUE, "sales", raw(sale(order_id="SO-1\n")), "$.order_id"),
    (RejectCode.INVALID_VALUE, "sales", raw(sale(order_id="")), "$.order_id"),
    (RejectCode.INVALID_VALUE, "sales", raw(sale(event_id="not-a-uuid")), "$.event_id"),
    (RejectCode.INVALID_VALUE, "sales", raw(sale(schema_version=2)), "$.schema_version"),
    (RejectCode.INVALID_VALUE, "sales", raw(sale(schema_version=0)), "$.schema_version"),
    (RejectCode.INVALID_VALUE, "sales", raw(sale(lines=[])), "$.lines"),
    (RejectCode.INVALID_VALUE, "sales", raw(with_line(1, line_id="1")), "$.lines[1].line_id"),
    (RejectCode.INVALID_VALUE, "sales", raw(with_line(0, net_amount=-1)), "$.lines[0].net_amount"),
    (
        RejectCode.INVALID_VALUE,
        "sales",
        raw(with_line(0, net_amount=10**16)),
        "$.lines[0].net_amount",
    ),
    (RejectCode.INVALID_VALUE, "sales", raw(reversal(lines=[])), "$.lines"),
    (RejectCode.INVALID_VALUE, "sales", raw(reversal(scope="full")), "$.lines"),
    (RejectCode.INVALID_VALUE, "sales", raw(reversal(scope="some")), "$.scope"),
    (RejectCode.INVALID_VALUE, "surveys", raw(survey(4, "stars")), "$.scale"),
    (RejectCode.INVALID_VALUE, "commands", raw(close(partner_id="P-1")), "$.partner_id"),
    (RejectCode.INVALID_VALUE, "commands", raw(close(period="2026-13")), "$.period"),
    (RejectCode.INVALID_VALUE, "commands", raw(adjust(amount=0)), "$.amount"),
    (RejectCode.INVALID_VALUE, "commands", raw(targets_set(period="2026-Q5")), "$.period"),
    (RejectCode.INVALID_VALUE, "commands", raw(targets_set(period="2026-3")), "$.period"),
    (RejectCode.INVALID_VALUE, "commands", raw(targets_set(metric="revenue")), "$.metric"),
    (RejectCode.INVALID_VALUE, "commands", raw(targets_set(value=0)), "$.value"),
    (RejectCode.INVALID_VALUE, "commands", raw(adjust(author="   ")), "$.author"),
    (RejectCode.INVALID_VALUE, "commands", raw(adjust(reason=" \n ")), "$.reason"),
    (RejectCode.INVALID_VALUE, "partners", raw(envelope("PartnerUpdated")), "$"),
    (
        RejectCode.INVALID_VALUE,
        "partners",
        raw(envelope("PartnerUpdated", parent_partner_id="P-1")),
        "$.parent_partner_id",
    ),
    (
        RejectCode.INVALID_VALUE,
        "partners",
        raw(
            envelope(
                "PartnerRegistered",
                kind="wholesaler",
                region="EU",
                joined_on="2026-01-01",
                status="active",
            )
        ),
        "$.kind",
    ),
]


@pytest.mark.parametrize(
    ("code", "stream", "data", "path"),
    CASES,
    ids=[f"{c[0].value}-{c[3]}-{i}" for i, c in enumerate(CASES)],
)
def test_each_bad_input_is_rejected_with_its_code_and_path(
    code: RejectCode, stream: str, data: bytes | None, path: str
) -> None:
    rejection = rejected(stream, data)
    assert (rejection.code, rejection.path) == (code, path), rejection.message


def test_every_stateless_code_has_a_case() -> None:
    """A code added to RejectCode without a case above fails here."""
    covered = {case[0] for case in CASES} | {RejectCode.TOO_LARGE}
    assert covered == set(RejectCode) - STATEFUL_CODES


def test_reject_codes_are_the_published_vocabulary() -> None:
    """Dead letters and docs use these exact strings; renaming one breaks consumers."""
    assert {c.value for c in RejectCode} == {
        "empty", "too_large", "invalid_utf8", "not_json", "not_object", "unknown_type",
        "missing_field", "wrong_type", "unknown_field", "non_positive_quantity",
        "fractional_amount", "unknown_currency", "currency_mismatch", "naive_timestamp",
        "future_timestamp", "score_off_scale", "invalid_value", "unknown_partner",
        "unknown_order", "reversal_exceeds_sale", "conflict", "duplicate", "too_deep",
        "control_character", "too_old", "processing_failed",
    }  # fmt: skip
    assert {c.value for c in STATEFUL_CODES} == {
        "unknown_partner",
        "unknown_order",
        "reversal_exceeds_sale",
        "conflict",
        "processing_failed",
        "duplicate",
    }


def test_too_large_is_judged_before_parsing() -> None:
    data = raw(sale())
    accepted("sales", data, Limits(max_message_bytes=len(data)))
    rejection = rejected("sales", data, Limits(max_message_bytes=len(data) - 1))
    assert (rejection.code, rejection.path) == (RejectCode.TOO_LARGE, "$")
    assert f"{len(data)} bytes" in rejection.message


def test_depth_is_judged_before_parsing_and_configurable() -> None:
    """32 levels pass by default, 33 do not; brackets inside strings do not count."""
    # The sku sits in a line (3 levels: message, lines, line); 29 more make 32.
    nested = b'{"a":' * 29 + b"1" + b"}" * 29
    deep_sku = raw(sale()).replace(b'"A"', nested)
    assert rejected("sales", deep_sku).code == RejectCode.WRONG_TYPE
    deeper = raw(sale()).replace(b'"A"', b"[" + nested + b"]")
    assert rejected("sales", deeper).code == RejectCode.TOO_DEEP
    assert "33 levels deep; at most 32" in rejected("sales", deeper).message
    accepted("sales", raw(sale(order_id="[" * 100 + "{" * 27)))
    accepted("sales", raw(sale()), Limits(max_depth=3))
    strict = raw(sale()).replace(b'"A"', b"[1]")
    assert rejected("sales", strict, Limits(max_depth=3)).code == RejectCode.TOO_DEEP


def test_control_characters_are_named_with_their_position() -> None:
    rejection = rejected("sales", raw(sale(customer_id="C-\u0000-1")))
    assert rejection.message.startswith("control character U+0000 (null) at position 2")
    escape = rejected("sales", raw(sale(order_id="SO\x1b[31m")))
    assert "U+001B (escape) at position 2" in escape.message
    # Free text may hold line breaks and tabs, nothing else.
    accepted("sales", raw(reversal(reason="damaged in transit\r\n\tsee photo")))
    assert rejected("sales", raw(reversal(reason="a\x00"))).path == "$.reason"
    # A field name in an error is quoted escaped, so the words can be stored and shown.
    unknown = rejected("sales", raw({**sale(), "x\u0000": 1}))
    assert (unknown.code, unknown.path) == (RejectCode.UNKNOWN_FIELD, "$.x\\u0000")
    assert "\x00" not in unknown.message


def test_earliest_occurred_at_is_inclusive_and_configurable() -> None:
    earliest = datetime(2016, 4, 1, 12, 0, tzinfo=UTC)
    accepted("sales", raw(sale(occurred_at=earliest.isoformat())))
    too_old = rejected("sales", raw(sale(occurred_at="2016-04-01T11:59:59Z")))
    assert "ten years before the receiver's clock" in too_old.message
    configured = Limits(earliest_occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    accepted("sales", raw(sale()), configured)
    early = raw(sale(occurred_at="2025-12-31T23:00:00Z"))
    assert "the configured earliest_occurred_at" in rejected("sales", early, configured).message


def test_future_tolerance_is_inclusive_and_configurable() -> None:
    at_limit = raw(sale(occurred_at=(NOW + timedelta(seconds=300)).isoformat()))
    assert isinstance(decode("sales", at_limit, now=NOW, limits=LIMITS), SaleRecorded)
    strict = Limits(future_tolerance_s=0)
    assert rejected("sales", at_limit, strict).code == RejectCode.FUTURE_TIMESTAMP


def test_messages_name_the_expected_and_the_received_value() -> None:
    assert str(rejected("sales", raw(with_line(0, quantity=-2)))) == (
        "$.lines[0].quantity: expected > 0, got -2 (non_positive_quantity)"
    )
    assert "got 12.5" in rejected("sales", raw(with_line(0, net_amount=12.5))).message
    assert 'got str "2"' in rejected("sales", raw(with_line(0, quantity="2"))).message
    wrong_stream = rejected("surveys", raw(sale())).message
    assert "SurveyCompleted" in wrong_stream and "belongs on stream 'sales'" in wrong_stream
    assert "identifier" in rejected("sales", raw(sale(order_id=" SO"))).message
    naive = rejected("sales", raw(sale(occurred_at="2026-03-01T10:00:00")))
    assert 'got "2026-03-01T10:00:00"' in naive.message


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
