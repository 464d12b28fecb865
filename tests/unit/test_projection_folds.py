"""The projections' pure folds over the sample quarter, without a database: folding batch by
batch gives the fold of the whole ledger (so the writer and a rebuild agree whatever the
batching); the balance months add up to the ledger's own balances and their kinds to their
net change; program spend is the engine's budget figure; the tier facts measure the gap the
engine decides with; the comparison names each difference. The SQL side is in
tests/integration/test_projections.py."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
from functools import cache
from pathlib import Path

import msgspec

from incentives.sample_data import generate
from ledger.balances import fold as ledger_fold
from ledger.core import Record
from processors.engine import compile_program
from processors.engine.runner import Books, Outcome, run
from processors.outbox import projection_feed
from projections import balances, spend, tiers
from projections.rows import Difference, Rows, compare
from schemas.codec import Limits, decode
from schemas.program_loader import load_program
from schemas.streams import MESSAGE_TYPES, Message, stream_of

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT_ROOT / "programs" / "example-channel-2026.yaml"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@cache
def _quarter() -> tuple[list[Message], Books, Outcome]:
    messages: list[Message] = []
    for raw in generate(partners=20, sales=600):
        stream = stream_of(MESSAGE_TYPES[raw["type"]])
        messages.append(decode(stream, msgspec.json.encode(raw), now=NOW,
                               limits=Limits()))  # type: ignore[arg-type]
    books = Books()
    outcome = run(messages, books, [compile_program(load_program(EXAMPLE).program)])
    return messages, books, outcome


def _batches(records: list[Record], seed: int) -> list[list[Record]]:
    rng, out, at = random.Random(seed), [], 0
    while at < len(records):
        size = rng.randint(1, 300)
        out.append(records[at:at + size])
        at += size
    return out


def _add(total: Rows, part: Rows) -> None:
    for key, values in part.items():
        was = total.get(key)
        total[key] = values if was is None else tuple(a + b for a, b in zip(was, values,
                                                                            strict=True))


def test_folding_batch_by_batch_gives_the_fold_of_the_whole_ledger() -> None:
    records = _quarter()[2].records
    for module in (balances, spend):
        whole = module.fold(records)
        for seed in range(3):
            added: Rows = {}
            for batch in _batches(records, seed):
                _add(added, module.fold(batch))
            assert added == whole, module.__name__
    changes: Rows = {}
    for batch in _batches(records, 7):
        tiers.fold_changes(batch, changes)
    assert changes == tiers.fold_changes(records) and changes


def test_balance_months_add_up_to_the_ledgers_balances_and_their_kinds_to_the_change() -> None:
    records = _quarter()[2].records
    months = balances.fold(records)
    assert {k[2].month for k in months} >= {1, 2, 3}
    ledger = ledger_fold(records)
    summed: dict[tuple[str, str], int] = {}
    for (pid, asset, _), values in months.items():
        assert balances.check_row(values), values
        for account, amount in ((f"partner:{pid}:pending", values[0]),
                                (f"partner:{pid}:available", values[1])):
            summed[(account, asset)] = summed.get((account, asset), 0) + amount
    assert {k: v for k, v in summed.items() if v} == {
        k: v for k, v in ledger.items() if k[0].startswith("partner:")}


def test_close_awards_fall_in_the_month_they_close() -> None:
    """January's ranking prize is dated on 31 January, so it is in January's row."""
    records = _quarter()[2].records
    prizes = [r for r in records if r.explanation.inputs.get("closed_period") == "2026-01"
              and r.postings]
    assert prizes
    assert {balances.month_of(r.occurred_at) for r in prizes} == {dt.date(2026, 1, 1)}


def test_program_spend_over_partners_is_the_engines_budget_figure() -> None:
    _, books, outcome = _quarter()
    rows = spend.fold(outcome.records)
    spent = sum(v[0] - v[1] for k, v in rows.items() if k[3] == "EUR")
    spent += sum(v[3] for v in rows.values())
    assert {("northwind-emea", 1): spent} == books.budgets


def test_tier_facts_measure_the_gap_to_the_next_tier() -> None:
    messages, books, outcome = _quarter()
    programs = [compile_program(load_program(EXAMPLE).program)]
    facts = [projection_feed.partner_facts(s, programs, None) for s in books.states.values()]
    progress = [t for f in facts for t in f.tiers]
    assert len(progress) == len(books.states)  # one program with tiers
    assert len({t.tier for t in progress}) > 1, "the sample quarter promotes some partners"
    for t in progress:
        if t.next_tier is None:
            assert t.criteria == ()
            continue
        assert t.criteria and all(c.gap == max(c.required - c.actual, 0) for c in t.criteria)
    # Promoted partners hold the tier their last tier change moved them to, since then.
    last = {}
    for key, values in sorted(tiers.fold_changes(outcome.records).items()):
        last[(key[0], key[1])] = (values[3], key[2])
    for f in facts:
        for t in f.tiers:
            if (f.partner_id, t.program_id) in last:
                assert (t.tier, t.since) == last[(f.partner_id, t.program_id)]
    # A batch's facts name only the months its messages fall in.
    one = projection_feed.batch(messages[-5:], Outcome(touched={messages[-1].partner_id}),
                                books.states, programs)
    assert {a.month for f in one.facts for a in f.activity} <= {
        m.occurred_at.strftime("%Y-%m") for m in messages[-5:]}


def test_compare_reports_changed_missing_and_extra_rows_in_key_order() -> None:
    stored = {("P-1", "EUR"): (1,), ("P-2", "EUR"): (5,), ("P-3", "EUR"): (7,)}
    expected = {("P-1", "EUR"): (1,), ("P-2", "EUR"): (6,), ("P-4", "EUR"): (2,)}
    table = balances.TABLE._replace(key=("partner_id", "asset"), values=("amount",))
    found = compare(table, stored, expected)
    assert found == [
        Difference(table.name, ("P-2", "EUR"), (5,), (6,)),
        Difference(table.name, ("P-3", "EUR"), (7,), None),
        Difference(table.name, ("P-4", "EUR"), None, (2,)),
    ]
    assert found[0].describe(table) == (
        "partner_months (partner_id=P-2, asset=EUR): stored (amount=5), expected (amount=6)")
    assert "stored no row" in found[2].describe(table)


def test_projections_import_neither_processors_nor_a_database_driver() -> None:
    """The dependency rule (DESIGN.md section 3): projections never import processors, and
    their folds load without asyncpg."""
    code = ("import sys, projections, projections.balances, projections.tiers, "
            "projections.spend, projections.activity, projections.refusals, "
            "projections.freshness; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('processors', 'asyncpg', 'faust', 'aiokafka')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
