"""Finance's questions on the command line, as a user runs them: tables with formatted money,
CSV and JSON with the same figures, an unknown partner and a date that names no moment are
errors (exit 1) that say what to write, `--as-of` takes a date or a zoned date-time, and
`programs show ID@VERSION` works as `programs diff` takes it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

import asyncpg
import msgspec
from ingest_support import run_cli

from incentives.sample_data import generate
from ledger import program_store
from processors.writer import ledger as ledger_writer
from schemas.codec import Limits, decode
from schemas.program_loader import load_program
from schemas.settings import Settings
from schemas.streams import MESSAGE_TYPES, stream_of

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


async def _load(settings: Settings) -> None:
    owner = await asyncpg.connect(settings.pg_dsn("owner"))
    try:
        await program_store.publish(owner, load_program(EXAMPLE), published_by="test")
    finally:
        await owner.close()
    conn = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        programs = await ledger_writer.Programs().refresh(conn)
        messages = [decode(stream_of(MESSAGE_TYPES[r["type"]]), msgspec.json.encode(r), now=NOW,
                           limits=Limits()) for r in generate(partners=6, sales=200)]
        async with conn.transaction():
            await ledger_writer.write(conn, messages, programs)  # type: ignore[arg-type]
    finally:
        await conn.close()


async def test_finance_queries_on_the_command_line(settings: Settings) -> None:
    await _load(settings)
    table = run_cli(settings, "balances", "--partner", "P-00001")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("balances of partner P-00001 now:")
    assert "EUR " in table.stdout and "," in table.stdout  # EUR 12,345.67

    as_json = json.loads(run_cli(settings, "balances", "--partner", "P-00001", "--format",
                                 "json").stdout)
    rows = list(csv.DictReader(io.StringIO(run_cli(
        settings, "balances", "--partner", "P-00001", "--format", "csv").stdout)))
    assert {r["asset"]: int(r["total"]) for r in rows} == {
        b["asset"]: b["figures"]["total"] for b in as_json["balances"]}

    day = json.loads(run_cli(settings, "balances", "--partner", "P-00001", "--as-of",
                             "2026-01-31", "--format", "json").stdout)
    second = json.loads(run_cli(settings, "balances", "--partner", "P-00001", "--as-of",
                                "2026-01-31T23:59:59Z", "--format", "json").stdout)
    assert day["balances"] == second["balances"] and day["counted_before"] == (
        "2026-02-01T00:00:00Z")
    offset = run_cli(settings, "balances", "--partner", "P-00001", "--as-of",
                     "2026-02-01T00:59:59+01:00", "--format", "json")
    assert json.loads(offset.stdout)["balances"] == day["balances"]

    for args, says in (
        (("balances", "--partner", "NOPE"), "unknown partner 'NOPE'"),
        (("tier", "--partner", "NOPE"), "unknown partner 'NOPE'"),
        (("statement", "--partner", "NOPE", "--period", "2026-01"), "unknown partner"),
        (("refusals", "--partner", "NOPE"), "unknown partner"),
        (("balances", "--partner", "P-00001", "--as-of", "2026-01-31T23:59:59"),
         "has no time zone"),
        (("statement", "--partner", "P-00001", "--period", "2026-13"), "is not a period"),
        (("statement", "--partner", "P-00001"), "needs --period"),
    ):
        done = run_cli(settings, *args)
        assert done.returncode == 1 and says in done.stderr, (args, done.stdout, done.stderr)
        assert done.stdout == ""

    statement = run_cli(settings, "statement", "--partner", "P-00001", "--period", "2026-01",
                        "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(statement.stdout)))
    kinds = {r["row"] for r in rows}
    assert kinds == {"opening", "line", "closing"}
    for title, args in (("tiers of partner P-00001 now:", ("tier", "--partner", "P-00001")),
                        ("net_sales EUR over 2026-Q1:", ("leaderboard", "--period", "2026-Q1")),
                        ("program spend against budget", ("spend",)),
                        ("net_sales EUR over 2026-Q1:", ("teams", "--period", "2026-Q1"))):
        done = run_cli(settings, *args)
        assert done.returncode == 0 and done.stdout.startswith(title), (args, done.stdout)
    conn = await asyncpg.connect(settings.pg_dsn("reader"))
    try:
        promoted = await conn.fetchval("SELECT min(partner_id) FROM ledger_records"
                                       " WHERE kind = 'tier_change'")
    finally:
        await conn.close()
    history = json.loads(run_cli(settings, "tier", "--partner", promoted, "--history",
                                 "--format", "json").stdout)
    assert history["changes"] and history["changes"][0]["to_tier"]
    before = json.loads(run_cli(settings, "tier", "--partner", promoted, "--as-of",
                                "2025-12-31", "--format", "json").stdout)
    # Before its first change the partner held the tier that change moved it from.
    assert before["tiers"][0]["tier"] == history["changes"][0]["from_tier"]

    shown = run_cli(settings, "programs", "show", "northwind-emea@1")
    assert shown.returncode == 0 and shown.stdout.startswith("# northwind-emea version 1")
    bad = run_cli(settings, "programs", "show", "northwind-emea@x")
    assert bad.returncode == 1 and "PROGRAM_ID@VERSION" in bad.stderr
