"""The finance API end to end, as finance, an auditor and a partner use it: sample traffic
published to Kafka, applied by a real worker, read over HTTP from ``incentives api``.

Proves: a statement's lines add up to its closing minus opening balance (JSON, paged, and
CSV parsed back); the month's closing awards are in that month's statement and in the
balance as of its last day; a partner key reads its own partner only (403 otherwise), no
key or a bad key is 401, every error is problem+json; finance's payout goes in as a
command and shows in the balance, an impossible one in the refusals; `projections check`
agrees with the ledger afterwards."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import msgspec
from api_support import Api, make_key
from ingest_support import Worker, fetch, run_cli, wait_consumed

from incentives.sample_data import generate
from schemas.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
PAGE = 40  # statement lines per page: several pages per statement
WAIT_S = 60.0


def _upload(settings: Settings, path: Path, messages: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(msgspec.json.encode(m) + b"\n" for m in messages))
    done = run_cli(settings, "publish", str(path))
    assert done.returncode == 0, done.stderr


async def _publish_sample(settings: Settings, tmp_path: Path, worker: Worker) -> None:
    """The sample quarter, then its month closes once its events are applied, as finance
    closes a month (sent together, a close on the commands topic could overtake the sales
    on theirs and close its month before them)."""
    traffic = generate(partners=8, sales=400)
    _upload(settings, tmp_path / "q1.jsonl", [m for m in traffic if m["type"] != "ClosePeriod"])
    await wait_consumed(settings, worker, timeout_s=180)
    _upload(settings, tmp_path / "closes.jsonl",
            [m for m in traffic if m["type"] == "ClosePeriod"])
    await wait_consumed(settings, worker, timeout_s=180)


async def _statement(http: httpx.AsyncClient, key: str, partner: str, **query: str
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A whole statement, following next_cursor over its pages."""
    lines: list[dict[str, Any]] = []
    params: dict[str, Any] = {**query, "limit": PAGE}
    while True:
        r = await http.get(f"/partners/{partner}/statement", params=params,
                           headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        body = r.json()
        lines += body["lines"]
        if body["next_cursor"] is None:
            return body, lines
        params["cursor"] = body["next_cursor"]


def _sums(lines: list[dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for line in lines:
        for m in line["movements"]:
            for i, name in enumerate(("pending", "available", "total")):
                out[m["asset"]][i] += m[name]
    return out


def _assert_lines_add_up(body: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    sums = _sums(lines)
    assert {a["asset"] for a in body["assets"]} >= set(sums)
    for a in body["assets"]:
        moved = sums.get(a["asset"], [0, 0, 0])
        for i, name in enumerate(("pending", "available", "total")):
            assert moved[i] == a["closing"][name] - a["opening"][name], (a["asset"], name)


async def test_finance_reads_statements_balances_and_tiers_over_http(
    settings: Settings, tmp_path: Path
) -> None:
    assert run_cli(settings, "programs", "publish", str(EXAMPLE), "--by", "test").returncode == 0
    with Worker(settings, tmp_path / "worker.log") as worker:
        await _publish_sample(settings, tmp_path, worker)
        with Api(settings, tmp_path / "api.log") as api:
            finance = make_key(settings, "finance")
            async with httpx.AsyncClient(base_url=api.base, timeout=30) as http:
                await _statements_add_up(http, finance, settings)
                await _month_awards_in_the_month(http, finance, settings)
                await _csv_parses_back(http, finance)
                await _who_may_read_what(http, finance, settings)
                await _commands_from_finance(http, finance, settings, worker)
    check = run_cli(settings, "projections", "check")
    assert check.returncode == 0, check.stdout + check.stderr


async def _statements_add_up(http: httpx.AsyncClient, key: str, settings: Settings) -> None:
    for partner in ("P-00001", "P-00004", "P-00007"):
        for query in ({"period": "2026-01"}, {"period": "2026-Q1"},
                      {"from": "2026-02-10", "to": "2026-03-05T12:00:00+01:00"}):
            body, lines = await _statement(http, key, partner, **query)
            assert lines, (partner, query)
            _assert_lines_add_up(body, lines)
            assert len({ln["record_id"] for ln in lines}) == len(lines), "a line twice"
        # The statement's closing balance is the balance as of its end.
        body, _ = await _statement(http, key, partner, period="2026-01")
        r = await http.get(f"/partners/{partner}/balances", params={"as_of": "2026-01-31"},
                           headers={"X-API-Key": key})
        closing = {a["asset"]: a["closing"] for a in body["assets"]}
        assert {b["asset"]: b["figures"] for b in r.json()["balances"]} == closing


async def _month_awards_in_the_month(http: httpx.AsyncClient, key: str, settings: Settings
                                     ) -> None:
    """A month's closing awards (the monthly champion's prize, rebates, ...) are dated on
    the month's last day: in that month's statement, in the balance as of that day and as
    of its 23:59:59Z, and not in the balance one microsecond before the close. (The close
    may be the timer's, and budgets cut awards: so the month is found.)"""
    rows = await fetch(settings, """
        SELECT r.partner_id, r.record_id, p.asset, p.amount,
               r.explanation::jsonb -> 'inputs' ->> 'closed_period' AS month
        FROM ledger_records r JOIN ledger_postings p USING (record_id)
        WHERE r.kind = 'accrual' AND p.account LIKE 'partner:%'
          AND r.explanation::jsonb -> 'inputs' ? 'closed_period'
        ORDER BY 5, 1""")
    assert rows, "the sample's month closes pay awards"
    partner, month = rows[0]["partner_id"], rows[0]["month"]
    awarded = {r["record_id"]: (r["asset"], r["amount"]) for r in rows
               if r["partner_id"] == partner and r["month"] == month}
    _, lines = await _statement(http, key, partner, period=month)
    assert awarded.keys() <= {uuid.UUID(ln["record_id"]) for ln in lines}
    last_day = (dt.date.fromisoformat(month + "-01") + dt.timedelta(days=32)).replace(day=1)
    last_day -= dt.timedelta(days=1)
    assert all(ln["occurred_at"].startswith(last_day.isoformat()) for ln in lines
               if uuid.UUID(ln["record_id"]) in awarded)

    async def total(as_of: str) -> dict[str, int]:
        r = await http.get(f"/partners/{partner}/balances", params={"as_of": as_of},
                           headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        return {b["asset"]: b["figures"]["total"] for b in r.json()["balances"]}

    day = last_day.isoformat()
    end_of_day, last_second = await total(day), await total(f"{day}T23:59:59Z")
    before_close = await total(f"{day}T23:59:59.999998Z")
    assert end_of_day == last_second
    for asset in {a for a, _ in awarded.values()}:
        award = sum(amount for a, amount in awarded.values() if a == asset)
        assert end_of_day[asset] - before_close.get(asset, 0) == award


async def _csv_parses_back(http: httpx.AsyncClient, key: str) -> None:
    headers = {"X-API-Key": key}
    r = await http.get("/partners/P-00001/balances", params={"format": "csv"}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    as_json = (await http.get("/partners/P-00001/balances", headers=headers)).json()
    assert {row["asset"]: int(row["total"]) for row in rows} == {
        b["asset"]: b["figures"]["total"] for b in as_json["balances"]}
    eur = next(row for row in rows if row["asset"] == "EUR")
    assert eur["total_formatted"].startswith("EUR ") and "," in eur["total_formatted"]

    r = await http.get("/partners/P-00001/statement", params={"period": "2026-Q1"},
                       headers={**headers, "Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    opening = {x["asset"]: int(x["total"]) for x in rows if x["row"] == "opening"}
    closing = {x["asset"]: int(x["total"]) for x in rows if x["row"] == "closing"}
    moved: dict[str, int] = defaultdict(int)
    for x in rows:
        if x["row"] == "line":
            moved[x["asset"]] += int(x["total"])
    assert {a: closing[a] - opening[a] for a in closing} == {a: moved.get(a, 0) for a in closing}
    body, _ = await _statement(http, key, "P-00001", period="2026-Q1")
    assert closing == {a["asset"]: a["closing"]["total"] for a in body["assets"]}


async def _who_may_read_what(http: httpx.AsyncClient, finance: str, settings: Settings) -> None:
    own = make_key(settings, "partner", "P-00002")
    auditor = make_key(settings, "auditor")

    async def status(path: str, key: str | None, **params: str) -> httpx.Response:
        return await http.get(path, params=params,
                              headers={"X-API-Key": key} if key is not None else {})

    assert (await status("/partners/P-00002/balances", own)).status_code == 200
    assert (await status("/partners/P-00002/statement", own, period="2026-01")).status_code == 200
    assert (await status("/partners/P-00002/tiers", own)).status_code == 200
    for path in ("/partners/P-00001/balances", "/partners/P-00001/tiers", "/programs/spend",
                 "/partners", "/refusals", "/dead-letters", "/reconciliation"):
        r = await status(path, own)
        assert r.status_code == 403, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    for key in (None, "ik_000000000000_nope", "not a key"):
        r = await status("/partners/P-00002/balances", key)
        assert r.status_code == 401 and r.json()["status"] == 401, r.text
        assert r.headers["content-type"] == "application/problem+json"
    for key in (auditor, finance):
        assert (await status("/programs/spend", key)).status_code == 200
        assert (await status("/partners/P-00001/balances", key)).status_code == 200
    r = await status("/partners/P-00002/balances", finance, as_of="2026-01-31T12:00:00")
    assert r.status_code == 400 and "no time zone" in r.json()["detail"]
    r = await status("/partners/NOPE/balances", finance)
    assert r.status_code == 404 and "unknown partner" in r.json()["detail"]
    spend = (await status("/programs/spend", auditor)).json()["programs"][0]
    assert spend["budget"] and 0 < spend["spent"] <= spend["budget"]
    board = (await status("/leaderboards/net_sales", auditor, period="2026-Q1")).json()
    values = [e["value"] for e in board["entries"]]
    assert values == sorted(values, reverse=True) and len(values) == 8
    payout = {"type": "RecordPayout", "event_id": str(uuid.uuid4()), "partner_id": "P-00002",
              "occurred_at": "2026-04-01T00:00:00Z", "amount": 1, "currency": "EUR",
              "reference": "PAY-X"}
    for key in (auditor, own):
        r = await http.post("/commands", json=payout, headers={"X-API-Key": key})
        assert r.status_code == 403, r.text


async def _commands_from_finance(http: httpx.AsyncClient, key: str, settings: Settings,
                                 worker: Worker) -> None:
    headers = {"X-API-Key": key}
    before = (await http.get("/partners/P-00003/balances", headers=headers)).json()
    eur = next(b["figures"] for b in before["balances"] if b["asset"] == "EUR")
    assert eur["available"] > 100
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    paid, refused = str(uuid.uuid4()), str(uuid.uuid4())
    for event_id, amount in ((paid, 100), (refused, eur["available"] * 10)):
        r = await http.post("/commands", headers=headers, json={
            "type": "RecordPayout", "event_id": event_id, "partner_id": "P-00003",
            "occurred_at": now, "amount": amount, "currency": "EUR", "reference": "PAY-1"})
        assert r.status_code == 202, r.text
        assert r.json()["event_id"] == event_id
    r = await http.post("/commands", headers=headers, json={"type": "RecordPayout"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        worker.check_alive()
        after = (await http.get("/partners/P-00003/balances", headers=headers)).json()
        figures = next(b["figures"] for b in after["balances"] if b["asset"] == "EUR")
        found = (await http.get("/refusals", params={"partner": "P-00003"},
                                headers=headers)).json()["refusals"]
        if figures["paid"] == eur["paid"] + 100 and found:
            # Holds that ended by now were released first (the payout is dated now), so
            # available grew; the total lost exactly the payout.
            assert figures["total"] == eur["total"] - 100
            assert [f["event_id"] for f in found] == [refused]
            assert found[0]["code"] == "insufficient_balance"
            return
        await asyncio.sleep(0.3)
    raise AssertionError("the payout or the refusal did not show within the deadline")
