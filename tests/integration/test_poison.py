"""The inputs that used to stop a partition for good, through the real broker, worker and
PostgreSQL, among good events: each ends as a dead letter or a refusal with its code, the
good events around them apply, the worker stays up, and `incentives reconcile` balances.

- 2 KB of ``[`` then ``]``, and an object nested 5,000 deep inside a line's sku
  (RecursionError escaped the decoder): ``too_deep``;
- ``customer_id`` holding U+0000 (PostgreSQL cannot store it), an order id of terminal
  escapes: ``control_character``;
- 9,300 ``AdjustBalance`` of +10^15 (the bigint of the balance projection overflowed):
  those that would take a partner beyond 10^18 are refused (``balance_limit``); the sum
  over every partner of the shared ``ledger:adjustments`` goes beyond bigint, as numeric;
- ``occurred_at`` of 1900-01-01 and 0001-01-01: ``too_old``;
- a valid sale the database refuses to store (a trigger of the test's database, standing
  for any input no check foresaw): narrowed down and dead-lettered as ``processing_failed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingest_support import (
    Poison,
    Worker,
    as_bytes,
    fetch,
    install_trap,
    keyed,
    new_id,
    processing_poison,
    registration,
    run_cli,
    sale,
    send_raw,
    wait_consumed,
)

from schemas.codec import RejectCode
from schemas.money import MAX_BALANCE_MINOR_UNITS, MAX_MINOR_UNITS
from schemas.settings import Settings

RICH = [f"P-R{n}" for n in range(10)]
# Partner P-R0 gets 1,002 adjustments (the last two are refused), the others ADJUSTMENTS
# each: 9,300 in all, and the applied ones sum beyond bigint on the shared
# ledger:adjustments.
ADJUSTMENTS = 922
BIGINT_MIN = -(2**63)


def adjustment(partner: str) -> dict[str, Any]:
    return {
        "type": "AdjustBalance", "event_id": new_id(), "occurred_at": "2026-03-21T15:30:00Z",
        "partner_id": partner, "asset": "EUR", "amount": MAX_MINOR_UNITS,
        "author": "finance.lee", "reason": "probe of the largest amounts",
    }  # fmt: skip


def poison(partner: str) -> list[Poison]:
    key = partner.encode()
    deep_sku = as_bytes(sale(partner, "SO-DEEP")).replace(
        b'"SKU-1"', b'{"a": ' * 5000 + b"1" + b"}" * 5000
    )
    return [
        ("sales", key, b"[" * 1000 + b"]" * 1000, RejectCode.TOO_DEEP),
        ("sales", key, deep_sku, RejectCode.TOO_DEEP),
        (*keyed("sales", sale(partner, "SO-NUL", customer_id="C-\u0000-1")),
         RejectCode.CONTROL_CHARACTER),
        (*keyed("sales", sale(partner, "\x07\x1b[31m")), RejectCode.CONTROL_CHARACTER),
        (*keyed("sales", sale(partner, "SO-1900", occurred_at="1900-01-01T00:00:00Z")),
         RejectCode.TOO_OLD),
        (*keyed("sales", sale(partner, "SO-0001", occurred_at="0001-01-01T00:00:00Z")),
         RejectCode.TOO_OLD),
        processing_poison(partner),
    ]  # fmt: skip


async def test_the_inputs_that_stopped_a_partition_are_rejected_and_all_else_applies(
    settings: Settings, tmp_path: Path
) -> None:
    await install_trap(settings)
    registered = [keyed("partners", registration(p)) for p in ["P-1", *RICH]]
    await send_raw(settings, registered)  # acknowledged first: nothing waits parked
    sends: list[Any] = []
    for index, bad in enumerate(poison("P-1")):  # a good sale before and after each
        sends += [keyed("sales", sale("P-1", f"SO-{index}a")), bad[:3],
                  keyed("sales", sale("P-1", f"SO-{index}b"))]  # fmt: skip
    adjustments = [keyed("commands", adjustment("P-R0")) for _ in range(1002)] + [
        keyed("commands", adjustment(p)) for p in RICH[1:] for _ in range(ADJUSTMENTS)
    ]
    assert len(adjustments) == 9_300
    coordinates = await send_raw(settings, sends + adjustments)
    expected = {coordinates[3 * i + 1]: str(p[3]) for i, p in enumerate(poison("P-1"))}

    with Worker(settings, tmp_path / "worker.log") as worker:
        published = await wait_consumed(settings, worker, timeout_s=240)
        worker.check_alive()
    assert published == len(registered) + len(sends) + len(adjustments)

    letters = await fetch(settings, "SELECT topic, partition, kafka_offset, code, message"
                          " FROM dead_letters")  # fmt: skip
    assert {(r["topic"], r["partition"], r["kafka_offset"]): r["code"] for r in letters} == expected
    assert any("SQLSTATE 22023" in r["message"] for r in letters)
    orders = await fetch(settings,
                         "SELECT DISTINCT order_id FROM sold_lines WHERE partner_id = 'P-1'")
    assert {r["order_id"] for r in orders} == {f"SO-{i}{s}" for i in range(7) for s in "ab"}
    refusals = await fetch(settings, "SELECT partner_id, code FROM command_refusals")
    assert [tuple(r) for r in refusals] == [("P-R0", "balance_limit")] * 2
    # Summed in SQL as numeric, as every reader of the ledger sums: beyond bigint is exact.
    balances = await fetch(settings, "SELECT account, sum(amount) AS amount FROM ledger_postings"
                           " WHERE asset = 'EUR' AND account LIKE ANY($1) GROUP BY account",
                           ["ledger:adjustments", "partner:P-R%:available"])  # fmt: skip
    amounts = {r["account"]: int(r["amount"]) for r in balances}
    assert amounts["partner:P-R0:available"] == MAX_BALANCE_MINOR_UNITS
    applied = 1000 + ADJUSTMENTS * (len(RICH) - 1)
    assert amounts["ledger:adjustments"] == -applied * MAX_MINOR_UNITS < BIGINT_MIN

    reconciled = run_cli(settings, "reconcile")
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert f"all {published} messages accounted for" in reconciled.stdout
    checked = run_cli(settings, "projections", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
