"""The event contract's rejections at the byte level: every stateless reject code with the
path of what was wrong, the limits (size, depth, age, future) judged before or during
parsing and configurable, and messages that name the expected and the received value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from contract_support import (
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
    without,
)

from schemas.codec import (
    STATEFUL_CODES,
    Limits,
    RejectCode,
    decode,
)
from schemas.events import SaleRecorded

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
