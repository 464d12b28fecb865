"""The runner over a quarter of sample traffic: a verifiable ledger, the same every time."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from pathlib import Path

import msgspec

from incentives.sample_data import generate
from ledger.balances import fold
from ledger.verify import verify
from processors.engine import compile_program, decode_state, encode_state, next_due
from processors.engine.runner import Books, run
from schemas.codec import Limits, decode
from schemas.commands import AdvanceClock, ClosePeriod
from schemas.program_loader import load_program
from schemas.streams import MESSAGE_TYPES, Message, stream_of

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _decoded(partners: int, sales: int) -> list[Message]:
    out: list[Message] = []
    for raw in generate(partners=partners, sales=sales):
        stream = stream_of(MESSAGE_TYPES[raw["type"]])
        message = decode(stream, msgspec.json.encode(raw), now=NOW, limits=Limits())
        assert not hasattr(message, "code"), message
        out.append(message)  # type: ignore[arg-type]
    return out


def test_a_quarter_of_traffic_makes_a_ledger_that_verifies_and_balances() -> None:
    programs = [compile_program(load_program(EXAMPLE).program)]
    outcome = run(_decoded(20, 600), books := Books(), programs)

    kinds = Counter(r.kind.value for r in outcome.records)
    # Every family of the example shows up: commissions and their clawbacks, releases of
    # holds, and the close's awards.
    assert kinds["accrual"] > 500 and kinds["clawback"] > 0 and kinds["hold_release"] > 0
    assert {r.rule_id for r in outcome.records} >= {
        "sales-commission",
        "quarterly-rebate",
        "monthly-champion",
        "regional-cup",
        "csat",
    }
    ordered = sorted(outcome.records, key=lambda r: (r.partner_id, r.seq))
    assert verify(ordered, []).findings == []
    per_asset = Counter[str]()
    for (_account, asset), amount in fold(ordered).items():
        per_asset[asset] += amount
    assert per_asset and all(v == 0 for v in per_asset.values()), per_asset
    assert set(books.heads) == {r.partner_id for r in outcome.records}


def test_same_inputs_same_records_ids_and_heads() -> None:
    programs = [compile_program(load_program(EXAMPLE).program)]
    inputs = _decoded(12, 300)
    first, second = Books(), Books()
    a, b = run(inputs, first, programs), run(inputs, second, programs)
    assert [r.hash for r in a.records] == [r.hash for r in b.records]
    assert first.heads == second.heads and first.budgets == second.budgets


def test_running_in_two_halves_equals_running_at_once() -> None:
    """The worker runs batch by batch, storing states as JSON between them; neither the cut
    nor the round trip through storage may change a record."""
    programs = [compile_program(load_program(EXAMPLE).program)]
    inputs = _decoded(12, 300)
    whole, halves = Books(), Books()
    all_at_once = run(inputs, whole, programs)
    cut = len(inputs) // 2
    first = run(inputs[:cut], halves, programs)
    halves.states = {p: decode_state(encode_state(s)) for p, s in halves.states.items()}
    second = run(inputs[cut:], halves, programs)
    assert [r.hash for r in all_at_once.records] == [r.hash for r in first.records + second.records]
    assert whole.heads == halves.heads


def test_an_advance_posts_due_holds_at_their_time_and_only_for_partners_with_work_due() -> None:
    """An AdvanceClock releases what ended by its time, dated when each hold ended; the
    same releases a partner's next event would otherwise post first, with the same ids."""
    programs = [compile_program(load_program(EXAMPLE).program)]
    inputs = [m for m in _decoded(12, 300) if not isinstance(m, ClosePeriod)]
    early = [m for m in inputs if m.occurred_at < dt.datetime(2026, 2, 20, tzinfo=dt.UTC)]
    later = inputs[len(early):]
    # As the timer would: not beyond the time of any event still to come.
    to = min(m.occurred_at for m in later)
    advance = AdvanceClock(event_id=uuid.uuid4(), occurred_at=to, partner_id="*")

    books = Books()
    run(early, books, programs)
    due_before = {p for p, s in books.states.items() if (n := next_due(s)) and n <= to}
    ticked = run([advance], books, programs)

    assert due_before and ticked.touched == due_before
    releases = [r for r in ticked.records if r.kind.value == "hold_release"]
    assert releases and all(r.occurred_at <= to for r in releases)
    assert all(next_due(books.states[p]) is None or next_due(books.states[p]) > to
               for p in books.states)  # fmt: skip
    assert run([advance], books, programs).records == []  # advancing again posts nothing

    # Without the advance, the partners' next events post the same releases first.
    lazy = Books()
    run(early, lazy, programs)
    after_advance = run(later, books, programs)
    without = run(later, lazy, programs)
    ids = {r.record_id for r in ticked.records + after_advance.records}
    assert ids == {r.record_id for r in without.records}
