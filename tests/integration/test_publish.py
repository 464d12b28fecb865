"""Publishing against the real broker, ingested by a real worker: `incentives publish` on
JSONL, CSV and standard input reports bad lines by number and sends the rest; publishing
the same file again doubles nothing; the Python API validates before sending."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ingest_support import (
    Worker,
    fetch,
    payout,
    registration,
    run_cli,
    sale,
    survey,
    training,
    wait_consumed,
)

from incentives.publisher import InvalidMessage, Publisher
from processors.worker.kafka_offsets import end_offsets
from schemas.codec import RejectCode
from schemas.events import PartnerRegistered, SurveyCompleted
from schemas.settings import Settings


async def counts(settings: Settings) -> dict[str, int]:
    rows = await fetch(settings, "SELECT outcome, count(*) AS n FROM ingest_log GROUP BY outcome")
    inbox = await fetch(settings, "SELECT count(*) AS n FROM inbox")
    return {"inbox": inbox[0]["n"], **{r["outcome"]: r["n"] for r in rows}}


async def test_jsonl_bad_lines_are_reported_by_number_and_republishing_doubles_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    """Three bad lines among seven good ones (and a blank line): each error names its line,
    the summary counts, the exit status is 1; the second upload of the same file is counted
    as duplicates by the worker and the inbox does not grow."""
    good_sale = sale("P-A", "SO-1")
    lines = [
        json.dumps(registration("P-A")),
        json.dumps(registration("P-B")),
        json.dumps(good_sale),
        "",
        json.dumps(sale("P-A", "SO-2", discount_code="X")),
        json.dumps(survey("P-B")),
        '{"type": "SaleRecorded",',
        json.dumps(sale("P-A", "SO-3", ("1", 1, 99.5))),
        json.dumps(training("P-A")),
        json.dumps(payout("P-B")),
        json.dumps({**sale("P-B", "SO-4"), "occurred_at": "2026-03-02 09:15:00+01:00"}),
    ]
    path = tmp_path / "march.jsonl"
    path.write_text("\n".join(lines) + "\n")

    first = run_cli(settings, "publish", str(path))
    assert first.returncode == 1, first.stdout + first.stderr
    errors = first.stderr.splitlines()
    assert errors[0].startswith("line 5: $.discount_code: unknown field"), errors
    assert errors[0].endswith("(unknown_field)")
    assert errors[1].startswith("line 7: $: not JSON") and errors[1].endswith("(not_json)")
    assert errors[2] == (
        "line 8: $.lines[0].net_amount: expected a whole number (minor units, no decimal"
        " point), got 99.5 (fractional_amount)"
    )
    assert len(errors) == 3, errors
    assert "7 sent, 3 rejected" in first.stdout, first.stdout

    with Worker(settings, tmp_path / "worker.log") as worker:
        assert await wait_consumed(settings, worker) == 7
        assert await counts(settings) == {"inbox": 7, "applied": 7}
        second = run_cli(settings, "publish", str(path))
        assert second.returncode == 1 and "7 sent, 3 rejected" in second.stdout
        assert await wait_consumed(settings, worker) == 14
        assert await counts(settings) == {"inbox": 7, "applied": 7, "duplicate": 7}

    done = run_cli(settings, "reconcile")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 14 messages accounted for" in done.stdout


REGISTRATIONS_CSV = """\
type,occurred_at,partner_id,kind,region,joined_on,status,team
PartnerRegistered,2026-01-05T10:00:00Z,P-C,reseller,EU-WEST,2026-01-05,active,north
PartnerRegistered,2026-01-06T10:00:00Z,P-D,agent,EU-EAST,2026-01-06,active,
"""

SALES_CSV = """\
occurred_at,partner_id,order_id,currency,customer_id,new_customer,region,line_id,sku,category,quantity,net_amount
2026-03-02T09:15:00+01:00,P-C,SO-77812,EUR,C-1,true,EU-WEST,1,SKU-4410,routers,2,179800
2026-03-02T09:15:00+01:00,P-C,SO-77812,EUR,C-1,true,EU-WEST,2,SKU-0912,cables,10,12500
2026-03-03T10:00:00+01:00,P-C,SO-77813,EUR,C-2,false,EU-WEST,1,SKU-4410,routers,-1,89900
2026-03-04T11:00:00+01:00,P-D,SO-90001,EUR,C-3,true,EU-EAST,1,SKU-1,switches,1,5000
2026-03-04T11:00:00+01:00,P-D,SO-90001,USD,C-3,true,EU-EAST,2,SKU-2,switches,1,5000
2026-03-05T12:00:00+01:00,P-D,SO-90002,EUR,C-4,false,EU-EAST,1,SKU-3,cables,4,2000
"""  # noqa: E501 - a CSV row is one line


async def test_csv_bad_rows_are_reported_by_line_and_derived_ids_make_republishing_safe(
    settings: Settings, tmp_path: Path
) -> None:
    """CSV without event ids (derived from the natural key), one order per group of rows:
    the bad rows are reported with their line, the good orders sent; publishing the same
    files again, one of them through standard input, adds nothing to the inbox."""
    registrations = tmp_path / "partners.csv"
    registrations.write_text(REGISTRATIONS_CSV)
    sales = tmp_path / "sales.csv"
    sales.write_text(SALES_CSV)

    done = run_cli(settings, "publish", str(registrations))
    assert done.returncode == 0, done.stderr
    assert "2 sent, 0 rejected" in done.stdout
    done = run_cli(settings, "publish", str(sales), "--type", "SaleRecorded")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "line 4: $.lines[0].quantity: expected > 0, got -1 (non_positive_quantity)",
        "line 6: $.currency: currency 'USD' differs from 'EUR' on line 5, the first row of this"
        " SaleRecorded (currency_mismatch)",
    ]
    assert "2 sent, 2 rejected" in done.stdout

    with Worker(settings, tmp_path / "worker.log") as worker:
        assert await wait_consumed(settings, worker) == 4
        assert await counts(settings) == {"inbox": 4, "applied": 4}
        again = run_cli(settings, "publish", "-", "--format", "csv",
                        stdin=REGISTRATIONS_CSV.encode())  # fmt: skip
        assert again.returncode == 0 and "2 sent, 0 rejected" in again.stdout, again.stderr
        # Standard input gets the progress line, with the final state.
        assert "-: line 3, 2 sent, 0 rejected" in again.stderr
        again = run_cli(settings, "publish", str(sales), "--type", "SaleRecorded")
        assert again.returncode == 1 and "2 sent, 2 rejected" in again.stdout
        assert await wait_consumed(settings, worker) == 8
        assert await counts(settings) == {"inbox": 4, "applied": 4, "duplicate": 4}

    lines = await fetch(settings, "SELECT order_id, line_id FROM sold_lines ORDER BY 1, 2")
    assert [tuple(r) for r in lines] == [("SO-77812", "1"), ("SO-77812", "2"), ("SO-90002", "1")]


async def test_the_python_publisher_validates_before_sending(settings: Settings) -> None:
    """`Publisher.publish` refuses what the worker would dead-letter (here an event too far
    in the future) without sending it, and sends the rest keyed by partner."""
    now = datetime.now(UTC)
    registered = PartnerRegistered(
        event_id=uuid.uuid4(), occurred_at=now, partner_id="P-PY", kind="agent",
        region="EU-WEST", joined_on=now.date(), status="active",
    )  # fmt: skip
    future = SurveyCompleted(
        event_id=uuid.uuid4(), occurred_at=datetime(2099, 1, 1, tzinfo=UTC), partner_id="P-PY",
        survey_id="S-1", customer_id="C-1", score=5, scale="csat_1_5",
    )  # fmt: skip
    async with Publisher(settings) as publisher:
        await publisher.publish(registered)
        with pytest.raises(InvalidMessage) as refused:
            await publisher.publish(future)
    assert refused.value.rejection.code == RejectCode.FUTURE_TIMESTAMP
    topics = [settings.topic(s) for s in ("partners", "surveys")]
    ends = await end_offsets(settings, topics)
    assert sum(ends.values()) == 1
    assert publisher.acknowledged == 1


PARTNERS = 200
SALES = 20_000


async def test_throughput_of_a_large_upload(settings: Settings, tmp_path: Path) -> None:
    """A month of POS data (20,000 sales of 200 partners) goes through publish and the
    worker completely; the rates are printed (run with -s to see them)."""
    path = tmp_path / "month.jsonl"
    with path.open("w") as out:
        for p in range(PARTNERS):
            out.write(json.dumps(registration(f"P-{p:04d}")) + "\n")
        for n in range(SALES):
            out.write(json.dumps(sale(f"P-{n % PARTNERS:04d}", f"SO-{n}")) + "\n")
    done = run_cli(settings, "publish", str(path), timeout_s=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{PARTNERS + SALES} sent, 0 rejected" in done.stdout
    assert f"month.jsonl: line {PARTNERS + SALES}, {PARTNERS + SALES} sent" in done.stderr

    started = time.monotonic()
    with Worker(settings, tmp_path / "worker.log") as worker:
        await wait_consumed(settings, worker, timeout_s=240)
        wall_s = time.monotonic() - started
    [row] = await fetch(
        settings,
        "SELECT count(*) AS n, extract(epoch FROM max(received_at) - min(received_at)) AS s"
        " FROM inbox WHERE partner_id <> '*'",  # not the worker's own clock commands
    )
    assert row["n"] == PARTNERS + SALES
    print(
        f"\npublish: {done.stdout.strip()}\nworker: {row['n']} events in {float(row['s']):.2f}"
        f" s of batches ({row['n'] / max(float(row['s']), 1e-3):.0f} events/s);"
        f" {wall_s:.1f} s including start-up and rebalance"
    )


def test_schemas_export_writes_a_schema_per_type_for_upstream_teams(
    settings: Settings, tmp_path: Path
) -> None:
    """`incentives schemas export DIR` writes one JSON Schema per message type (those the
    ledger publishes, its outcomes, included) and the index that maps streams to types."""
    done = run_cli(settings, "schemas", "export", str(tmp_path / "schemas"))
    assert done.returncode == 0, done.stderr
    index = json.loads((tmp_path / "schemas" / "index.json").read_text())
    files = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert files == sorted(
        [*(f"{t}.json" for t in [*index["types"], *index["outcomes"]]), "index.json"]
    )
    assert index["outcomes"]["CommandRefused"]["stream"] == "refusals"
    assert index["streams"]["sales"] == ["SaleRecorded", "SaleReversed"]
    assert f"wrote {len(files)} files" in done.stdout
