"""Messages for the contract tests as upstream systems write them, with one change each,
and the decoder's verdict on them at a fixed moment with the default limits."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from schemas.codec import (
    Limits,
    Rejection,
    decode,
)

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
