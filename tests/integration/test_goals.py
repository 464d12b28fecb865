"""The goal kinds end to end: targets, a gate, two-tier overrides and a network ranking of
the example program, through Kafka, a real `incentives worker` and PostgreSQL, and the
auditor's replay of what it wrote.

D-1 is a distributor supplying the reseller R-1, which supplies S-1. Finance sets D-1's
quarterly target (EUR 100,000.00, revised to 80,000.00 in February). Each month is sent
and consumed before its close, so that the closes see exactly the month's facts. Amounts
are EUR cents, computed by hand from the example program's rates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
from ingest_support import (
    Worker,
    fetch,
    keyed,
    new_id,
    registration,
    reversal,
    run_cli,
    sale,
    send_raw,
    wait_consumed,
)

from ledger import program_store
from schemas.program_loader import load_program
from schemas.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
PROGRAM = "northwind-emea"


def target(partner: str, value: int, at: str) -> dict[str, Any]:
    return {"type": "TargetsSet", "event_id": new_id(), "occurred_at": at,
            "partner_id": partner, "program_id": PROGRAM, "period": "2026-Q1",
            "metric": "net_sales", "value": value, "set_by": "finance.lee"}


def close(period: str, at: str) -> dict[str, Any]:
    return {"type": "ClosePeriod", "event_id": new_id(), "occurred_at": at,
            "partner_id": "*", "period": period}


def hardware(partner: str, order: str, amount: int, at: str) -> dict[str, Any]:
    message = sale(partner, order, ("1", 1, amount), occurred_at=at, new_customer=False)
    message["lines"][0]["category"] = "hardware"
    return message


Found = dict[tuple[str, str, str], list[tuple[str, int, Any]]]


async def records(settings: Settings) -> Found:
    """(partner, rule, leg) -> [(kind, partner-side amount, explanation inputs)] of the
    records of the goal rules and of every note, in chain order."""
    rows = await fetch(
        settings,
        """SELECT r.partner_id, r.rule_id, r.leg, r.kind, r.explanation,
                  coalesce(sum(p.amount) FILTER (WHERE p.account LIKE 'partner:%'), 0) AS amount
           FROM ledger_records r LEFT JOIN ledger_postings p USING (record_id)
           WHERE r.rule_id IN ('quarterly-target', 'distributor-override', 'network-champion',
                               'support-contracts', 'breakthrough')
              OR r.kind = 'note'
           GROUP BY r.record_id ORDER BY r.partner_id, r.seq""",
    )
    found: Found = {}
    for r in rows:
        found.setdefault((r["partner_id"], r["rule_id"] or "", r["leg"]), []).append(
            (r["kind"], int(r["amount"]), json.loads(r["explanation"])["inputs"]))
    return found


def quarter(d: str, r: str, s: str) -> list[list[tuple[str, dict[str, Any]]]]:
    """The traffic of the quarter that the test's docstring tells, in phases: each phase is
    sent and consumed before the next, so that each close sees exactly its month's facts;
    the last phase is the target for the closed quarter."""
    joined = {"joined_on": "2025-06-01", "occurred_at": "2025-06-01T09:00:00Z",
              "region": "FR"}
    return [
        [("partners", registration(d, kind="distributor", **joined)),
         ("partners", registration(r, parent_partner_id=d, **joined)),
         ("partners", registration(s, parent_partner_id=r, **joined))],
        [("commands", target(d, 10_000_000, "2026-01-05T09:00:00Z")),
         ("sales", hardware(d, "SO-D1", 9_000_000, "2026-01-15T10:00:00Z")),
         ("sales", hardware(r, "SO-R1", 4_000_000, "2026-01-20T10:00:00Z")),
         ("sales", hardware(s, "SO-S1", 2_000_000, "2026-01-22T10:00:00Z"))],
        [("commands", close("2026-01", "2026-02-03T00:00:00Z"))],
        [("commands", target(d, 8_000_000, "2026-02-20T09:00:00Z")),
         ("sales", reversal(r, "SO-R1", ("1", 1, 1_000_000), occurred_at="2026-02-10T10:00:00Z")),
         ("sales", hardware(s, "SO-S2", 3_500_000, "2026-02-12T10:00:00Z"))],
        [("commands", close("2026-02", "2026-03-03T00:00:00Z"))],
        [("sales", {**sale(d, "SO-D2", ("1", 2, 50_000), occurred_at="2026-03-12T10:00:00Z",
                           new_customer=False),
                    "lines": [{"line_id": "1", "sku": "SUP-1", "category": "support",
                               "quantity": 2, "net_amount": 50_000}]})],
        [("commands", close("2026-03", "2026-04-03T00:00:00Z"))],
        [("commands", target(d, 9_000_000, "2026-04-05T09:00:00Z"))],
    ]


def check_goal_records(found: Found, d: str, r: str, s: str) -> None:
    """The goal rules' records that the test's docstring computes, amount by amount."""

    def amounts(partner: str, rule: str, leg: str) -> list[tuple[str, int]]:
        return [(kind, amount) for kind, amount, _ in found[(partner, rule, leg)]]

    assert amounts(d, "distributor-override", "override:R-1") == [
        ("accrual", 60_000), ("clawback", -15_000)]
    assert amounts(d, "distributor-override", "override:S-1") == [
        ("accrual", 10_000), ("accrual", 17_500)]
    level2 = found[(d, "distributor-override", "override:S-1")][0][2]
    assert (level2["level"], level2["path"], level2["net_sales"]) == (2, [d, r, s], 2_000_000)
    assert (r, "distributor-override", "override:S-1") not in found  # R-1 is a reseller
    [(kind, amount, inputs)] = found[(d, "support-contracts", "gate")]
    assert (kind, amount, inputs["failed"]) == ("clawback", -5_000, ["certifications_min"])
    [(kind, amount, inputs)] = found[(d, "quarterly-target", "award")]
    assert (kind, amount, inputs["target"], inputs["value"], inputs["attainment_bp"]) == (
        "accrual", 90_500, 8_000_000, 9_050_000, "11312.5")
    [(kind, amount, inputs)] = found[(d, "network-champion", "award")]
    assert (kind, amount, inputs["value"]) == ("accrual", 500_000, 9_050_000 + 3_000_000
                                               + 5_500_000)
    [(kind, amount, inputs)] = found[(s, "breakthrough", "award")]
    assert (kind, amount, inputs["base"], inputs["value"], inputs["growth_bp"]) == (
        "accrual", 60_000, 2_000_000, 3_500_000, "7500")
    assert [kind for kind, _, _ in found[(d, "breakthrough", "no-base")]] == ["note", "note"]
    for partner in (r, s):
        assert amounts(partner, "quarterly-target", "no-target") == [("note", 0)]
    targets = found[(d, "", "target:2026-Q1:net_sales")]
    assert [(kind, i["value"], i["previous"]) for kind, _, i in targets] == [
        ("note", 10_000_000, None), ("note", 8_000_000, 10_000_000)]


async def test_targets_gates_and_overrides_through_the_worker_and_the_replay(
    settings: Settings, tmp_path: Path
) -> None:
    """January: D-1 sells 90,000.00, R-1 40,000.00, S-1 20,000.00. The January close pays
    D-1 1.5 % of R-1's 40,000.00 (600.00) and 0.5 % of S-1's 20,000.00 one level further
    down (100.00). February: R-1 takes back 10,000.00 of its January sale and sells nothing:
    its February net is -10,000.00 and -150.00 of D-1's override is clawed back; S-1 sells
    35,000.00 (D-1: 0.5 % = 175.00), +75 % over January, a breakthrough award of 300.00 and
    2 % of the 15,000.00 increase, 600.00 together. March: D-1
    sells two support contracts (2 x 25.00) without holding a certification: the quarter's
    close takes the 50.00 back (the gate). D-1's quarter is 90,500.00 against the revised
    target of 80,000.00 (113.125 %): 1 % = 905.00. Its network sold 90,500 + 30,000 +
    55,000: the network champion's EUR 5,000.00. D-1 had no December to grow from: a note.
    R-1 and S-1 have no target: notes. A target for the closed quarter is refused. The
    auditor's replay gives the same ledger."""
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    try:
        await program_store.publish(conn, load_program(EXAMPLE), published_by="goals-test")
    finally:
        await conn.close()

    d, r, s = "D-1", "R-1", "S-1"
    phases = quarter(d, r, s)
    with Worker(settings, tmp_path / "worker.log") as worker:
        for phase in phases:
            await send_raw(settings, [keyed(stream, m) for stream, m in phase])
            await wait_consumed(settings, worker)
    late = phases[-1][0][1]["event_id"]

    check_goal_records(await records(settings), d, r, s)

    refused = await fetch(settings, "SELECT event_id, code FROM command_refusals")
    assert [(str(x["event_id"]), x["code"]) for x in refused] == [(late, "period_closed")]

    replay = run_cli(settings, "audit", "replay")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert replay.stdout.strip().endswith(": identical"), replay.stdout
