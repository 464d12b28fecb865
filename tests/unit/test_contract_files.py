"""Upload files: JSONL and CSV parsing with line-precise errors and deterministic ids."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.codec import Limits, RejectCode, Rejection, decode
from schemas.events import MAX_LINES, SaleRecorded
from schemas.files import (
    NAMESPACE,
    Item,
    Outgoing,
    derive_event_id,
    format_error,
    iter_jsonl,
)
from schemas.files_csv import CSV_LAYOUTS, iter_csv
from schemas.streams import MESSAGE_TYPES

NOW = datetime(2026, 4, 1, tzinfo=UTC)
LIMITS = Limits()
SALE_HEADER = (
    "occurred_at,partner_id,order_id,currency,customer_id,new_customer,region,"
    "line_id,sku,category,quantity,net_amount"
)


def sale_row(order: str, line: str, quantity: str = "1", amount: str = "100", **cells: str) -> str:
    values = {
        "occurred_at": "2026-03-01T10:00:00+01:00",
        "partner_id": "P-1",
        "order_id": order,
        "currency": "EUR",
        "customer_id": "C-1",
        "new_customer": "true",
        "region": "EU",
        "line_id": line,
        "sku": "SKU-" + line,
        "category": "routers",
        "quantity": quantity,
        "net_amount": amount,
    }
    values.update(cells)
    return ",".join(values[c] for c in SALE_HEADER.split(","))


def csv_items(text: str | bytes, limits: Limits = LIMITS, **kwargs: Any) -> list[Item]:
    data = text.encode() if isinstance(text, str) else text
    return list(iter_csv(io.BytesIO(data), now=NOW, limits=limits, **kwargs))


def sales_csv(*rows: str) -> list[Item]:
    return csv_items("\n".join([SALE_HEADER, *rows]) + "\n", message_type="SaleRecorded")


def published(item: Item) -> Any:
    """The decoded message of a published item (fails the test for a rejection)."""
    line_no, result = item
    assert isinstance(result, Outgoing), format_error(line_no, result)
    decoded = decode(result.stream, result.value, now=NOW, limits=LIMITS)
    assert not isinstance(decoded, Rejection), decoded
    return decoded


def errors(items: list[Item]) -> list[str]:
    return [format_error(n, r) for n, r in items if isinstance(r, Rejection)]


# --- JSONL ------------------------------------------------------------------------------


def training(**changes: Any) -> bytes:
    data = {
        "type": "TrainingCompleted",
        "event_id": "6f1c2b1e-4a8e-4c5e-9d7e-0a1b2c3d4e5f",
        "occurred_at": "2026-03-01T10:00:00+02:00",
        "partner_id": "P-7",
        "course_id": "NET-1",
        "passed": True,
    }
    data.update(changes)
    return json.dumps(data).encode()


def test_jsonl_yields_one_item_per_non_blank_line_with_its_number() -> None:
    data = b"\n".join(
        [training(), b"", b"  ", b"{oops", training(passed="yes"), training(course_id="X")]
    )
    items = list(iter_jsonl(io.BytesIO(data), now=NOW, limits=LIMITS))
    assert [n for n, _ in items] == [1, 4, 5, 6]
    assert errors(items) == [
        "line 4: $: not JSON: JSON is malformed: object keys must be strings (byte 1) (not_json)",
        'line 5: $.passed: expected bool, got str "yes" (wrong_type)',
    ]
    first = items[0][1]
    assert isinstance(first, Outgoing)
    assert (first.stream, first.key) == ("trainings", "P-7")
    assert first.event_id == uuid.UUID("6f1c2b1e-4a8e-4c5e-9d7e-0a1b2c3d4e5f")
    # What is published is the canonical form (UTC), not the line as written.
    assert b'"occurred_at":"2026-03-01T08:00:00Z"' in first.value


def test_jsonl_routes_mixed_types_to_their_streams() -> None:
    sale = json.loads(training(type="SaleRecorded"))
    del sale["course_id"], sale["passed"]
    sale.update(
        order_id="SO-1",
        lines=[{"line_id": "1", "sku": "A", "category": "c", "quantity": 1, "net_amount": 1}],
        currency="EUR",
        customer_id="C",
        new_customer=False,
        region="EU",
    )
    data = json.dumps(sale).encode() + b"\r\n" + training() + b"\r\n"
    items = list(iter_jsonl(io.BytesIO(data), now=NOW, limits=LIMITS))
    assert [(n, r.stream) for n, r in items if isinstance(r, Outgoing)] == [
        (1, "sales"),
        (2, "trainings"),
    ]


def test_jsonl_too_long_line_is_rejected_and_reading_goes_on() -> None:
    limits = Limits(max_message_bytes=len(training()))
    data = b"\xef\xbb\xbf" + training() + b"\n" + b"x" * 5000 + b"\n" + training(course_id="N2")
    items = list(iter_jsonl(io.BytesIO(data), now=NOW, limits=limits))
    assert [n for n, _ in items] == [1, 2, 3]
    assert isinstance(items[0][1], Outgoing), "a byte order mark is not part of the message"
    assert isinstance(items[1][1], Rejection) and items[1][1].code == RejectCode.TOO_LARGE
    assert isinstance(items[2][1], Outgoing)


# --- CSV: sales -------------------------------------------------------------------------


def test_consecutive_rows_of_one_order_form_one_sale() -> None:
    items = sales_csv(
        sale_row("SO-1", "1", "2", "1000"),
        sale_row("SO-1", "2", "1", "250"),
        sale_row("SO-2", "1"),
    )
    assert [n for n, _ in items] == [2, 4]
    sale = published(items[0])
    assert isinstance(sale, SaleRecorded)
    assert [(line.line_id, line.quantity, line.net_amount) for line in sale.lines] == [
        ("1", 2, 1000),
        ("2", 1, 250),
    ]
    assert sale.new_customer is True
    assert sale.occurred_at == datetime(2026, 3, 1, 9, tzinfo=UTC)


def test_rows_without_event_id_get_a_deterministic_one() -> None:
    rows = (sale_row("SO-1", "1"), sale_row("SO-2", "1"))
    first, second = sales_csv(*rows), sales_csv(*rows)
    ids = [published(item).event_id for item in first]
    assert ids == [published(item).event_id for item in second]
    assert ids[0] != ids[1]
    expected = uuid.uuid5(NAMESPACE, "SaleRecorded\x1fP-1\x1fSO-1")
    assert ids[0] == expected == derive_event_id(published(first[0]))
    assert ids[0].version == 5


def test_an_event_id_column_wins_over_the_derived_id() -> None:
    given = "0b8f8d6e-3c2a-4f0e-9a51-6d2f3a1c7e01"
    text = "event_id," + SALE_HEADER + "\n" + given + "," + sale_row("SO-1", "1") + "\n"
    items = csv_items(text, message_type="SaleRecorded")
    assert published(items[0]).event_id == uuid.UUID(given)


def test_errors_name_the_line_of_the_bad_row() -> None:
    rows = [sale_row(f"SO-{n}", "1") for n in range(2, 17)]  # lines 2..16
    rows.append(sale_row("SO-17", "1", quantity="-2"))  # line 17
    rows.append(sale_row("SO-18", "1"))
    rows.append(sale_row("SO-18", "2", amount="12.5"))  # line 19, the order's second line
    items = sales_csv(*rows)
    assert errors(items) == [
        "line 17: $.lines[0].quantity: expected > 0, got -2 (non_positive_quantity)",
        "line 19: $.lines[1].net_amount: expected a whole number (minor units, no decimal"
        " point), got 12.5 (fractional_amount)",
    ]
    assert len(items) == 17


def test_rows_of_one_order_must_agree_on_order_columns() -> None:
    items = sales_csv(
        sale_row("SO-1", "1"),
        sale_row("SO-1", "2", currency="USD"),
        sale_row("SO-2", "1"),
        sale_row("SO-2", "2", customer_id="C-9"),
        sale_row("SO-3", "1"),
    )
    assert errors(items) == [
        "line 3: $.currency: currency 'USD' differs from 'EUR' on line 2, the first row of"
        " this SaleRecorded (currency_mismatch)",
        "line 5: $.customer_id: customer_id 'C-9' differs from 'C-1' on line 4, the first row"
        " of this SaleRecorded (invalid_value)",
    ]
    assert isinstance(items[2][1], Outgoing), "the next order is not affected"


def test_an_order_split_across_the_file_becomes_two_messages_with_one_id() -> None:
    """Documented: keep an order's rows together. Split, its halves share the derived id,
    so the processor sees a conflict rather than silently merging or doubling."""
    items = sales_csv(sale_row("SO-1", "1"), sale_row("SO-2", "1"), sale_row("SO-1", "2"))
    first, third = published(items[0]), published(items[2])
    assert first.event_id == third.event_id
    assert first.lines != third.lines


def test_cells_are_trimmed_and_booleans_spelt_several_ways() -> None:
    items = sales_csv(
        sale_row(" SO-1 ", "1", new_customer=" no"),
        sale_row("SO-2", "1", new_customer="YES"),
        sale_row("SO-3", "1", new_customer="maybe"),
        sale_row("SO-4", "1", quantity="2.0"),
        sale_row("SO-5", "1", quantity="two"),
    )
    assert published(items[0]).order_id == "SO-1"
    assert published(items[0]).new_customer is False
    assert published(items[1]).new_customer is True
    assert [(r.code, r.path) for _, r in items[2:] if isinstance(r, Rejection)] == [
        (RejectCode.WRONG_TYPE, "$.new_customer"),
        (RejectCode.FRACTIONAL_AMOUNT, "$.lines[0].quantity"),
        (RejectCode.WRONG_TYPE, "$.lines[0].quantity"),
    ]


def test_a_row_with_the_wrong_number_of_cells_is_rejected() -> None:
    items = sales_csv(sale_row("SO-1", "1") + ",extra", sale_row("SO-2", "1"))
    assert errors(items) == ["line 2: $: the row has 13 cells; the header has 12 (invalid_value)"]
    assert isinstance(items[1][1], Outgoing)


def test_an_unreadable_line_holds_back_the_open_order() -> None:
    """Better to reject an order than to publish it perhaps without one of its lines."""
    text = "\n".join([SALE_HEADER, sale_row("SO-1", "1"), "\xff", sale_row("SO-2", "1")])
    data = text.encode().replace(b"\xc3\xbf", b"\xff") + b"\n"
    items = csv_items(data, message_type="SaleRecorded")
    assert [(n, r.code) for n, r in items if isinstance(r, Rejection)] == [
        (2, RejectCode.INVALID_UTF8),
        (3, RejectCode.INVALID_UTF8),
    ]
    assert "line 3" in str(items[0][1])
    assert isinstance(items[2][1], Outgoing) and items[2][0] == 4


def test_too_many_lines_in_one_order_are_rejected_without_holding_them() -> None:
    rows = [sale_row("SO-1", str(n)) for n in range(MAX_LINES + 5)] + [sale_row("SO-2", "1")]
    items = sales_csv(*rows)
    assert [(n, r.code, r.path) for n, r in items if isinstance(r, Rejection)] == [
        (MAX_LINES + 2, RejectCode.INVALID_VALUE, "$.lines")
    ]
    assert isinstance(items[-1][1], Outgoing)


def test_reversals_full_without_line_cells_and_partial_with_them() -> None:
    header = (
        "occurred_at,partner_id,order_id,reversal_id,scope,reason,currency,"
        "line_id,quantity,net_amount"
    )
    text = "\n".join(
        [
            header,
            "2026-03-05T10:00:00Z,P-1,SO-1,R-1,full,cancelled,EUR,,,",
            "2026-03-05T10:00:00Z,P-1,SO-2,R-2,partial,return,EUR,1,1,500",
            "2026-03-05T10:00:00Z,P-1,SO-2,R-2,partial,return,EUR,2,1,300",
            "2026-03-05T10:00:00Z,P-1,SO-3,R-3,partial,return,EUR,,,",
        ]
    )
    items = csv_items(text, message_type="SaleReversed")
    full, partial = published(items[0]), published(items[1])
    assert (full.scope, full.lines) == ("full", ())
    assert [line.line_id for line in partial.lines] == ["1", "2"]
    assert errors(items) == [
        "line 5: $.lines: a partial reversal must list its lines (invalid_value)"
    ]


# --- CSV: header and type ---------------------------------------------------------------


def test_the_type_can_come_from_a_type_column() -> None:
    text = "type,event_id,occurred_at,partner_id,points,reward_id\n"
    text += "RedeemPoints,6f1c2b1e-4a8e-4c5e-9d7e-0a1b2c3d4e5f,2026-03-01T10:00:00Z,P-1,500,BAG\n"
    text += "AdjustBalance,6f1c2b1e-4a8e-4c5e-9d7e-0a1b2c3d4e5f,2026-03-01T10:00:00Z,P-1,500,BAG\n"
    items = csv_items(text)
    assert published(items[0]).points == 500
    assert errors(items) == [
        "line 3: $.type: one type per CSV file: this file holds RedeemPoints, the row says"
        " 'AdjustBalance' (invalid_value)"
    ]


def test_header_problems_stop_the_file_at_line_1() -> None:
    unknown = csv_items(
        SALE_HEADER + ",discount\n" + sale_row("SO-1", "1") + ",0\n", message_type="SaleRecorded"
    )
    assert [(n, r.code, r.path) for n, r in unknown if isinstance(r, Rejection)] == [
        (1, RejectCode.UNKNOWN_FIELD, "$.discount")
    ]
    missing = csv_items(SALE_HEADER.replace(",region", "") + "\n", message_type="SaleRecorded")
    assert [(n, r.code, r.path) for n, r in missing if isinstance(r, Rejection)] == [
        (1, RejectCode.MISSING_FIELD, "$.region")
    ]
    untyped = csv_items(SALE_HEADER + "\n" + sale_row("SO-1", "1") + "\n")
    assert [(n, r.code) for n, r in untyped if isinstance(r, Rejection)] == [
        (1, RejectCode.UNKNOWN_TYPE)
    ]
    assert csv_items("") == []


def test_types_without_a_natural_key_need_an_event_id() -> None:
    text = "occurred_at,partner_id,asset,amount,author,reason\n"
    text += "2026-03-01T10:00:00Z,P-1,EUR,-100,fin.lee,double payment\n"
    items = csv_items(text, message_type="AdjustBalance")
    assert [(n, r.code) for n, r in items if isinstance(r, Rejection)] == [
        (1, RejectCode.MISSING_FIELD)
    ], "the layout requires the event_id column"
    assert "event_id" not in CSV_LAYOUTS["TrainingCompleted"].required
    assert "event_id" in CSV_LAYOUTS["AdjustBalance"].required


def test_timestamps_in_natural_keys_are_compared_in_utc() -> None:
    """The same instant written with two offsets derives the same id."""
    header = "occurred_at,partner_id,course_id,passed,certification\n"
    a = csv_items(
        header + "2026-03-01T10:00:00+02:00,P-1,C-1,1,\n", message_type="TrainingCompleted"
    )
    b = csv_items(header + "2026-03-01T08:00:00Z,P-1,C-1,true,\n", message_type="TrainingCompleted")
    c = csv_items(header + "2026-03-01T08:00:01Z,P-1,C-1,true,\n", message_type="TrainingCompleted")
    ids = [published(items[0]).event_id for items in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]
    assert published(a[0]).certification is None


def test_csv_layouts_cover_every_field_of_every_type() -> None:
    """A field added to a struct appears in its CSV layout without further work."""
    for name, layout in CSV_LAYOUTS.items():
        fields = {f.name for f in msgspec.structs.fields(MESSAGE_TYPES[name])} - {"lines"}
        assert fields <= set(layout.columns), name
    assert CSV_LAYOUTS["SaleRecorded"].line_columns == (
        "line_id",
        "sku",
        "category",
        "quantity",
        "net_amount",
    )
    assert CSV_LAYOUTS["SaleRecorded"].whole_numbers >= {"quantity", "net_amount"}
    assert CSV_LAYOUTS["TrainingCompleted"].booleans == {"passed"}
