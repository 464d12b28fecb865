"""Both example programs run over the sample quarter with its distributor hierarchy and
targets (``sample_data.generate(hierarchy_and_targets=True)``), and every kind the language
gained for goals leaves its records: targets and their notes, gates, growth, overrides."""

from __future__ import annotations

import collections
import datetime as dt
from pathlib import Path
from typing import Any

import msgspec

from incentives.sample_data import generate
from processors.engine import compile_program
from processors.engine.runner import Books, Outcome, run
from schemas.codec import Limits, Rejection, decode
from schemas.program_loader import load_program
from schemas.streams import MESSAGE_TYPES, Message, stream_of

PROGRAMS = Path(__file__).resolve().parents[2] / "programs"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _run(program: str, **rewrite: Any) -> Outcome:
    """The sample quarter through ``program``; ``rewrite`` replaces field values (the
    Chinese program is in yuan and has its own id)."""
    messages: list[Message] = []
    for raw in generate(partners=24, sales=900, hierarchy_and_targets=True):
        for field, value in rewrite.items():
            if field in raw:
                raw[field] = value
        message = decode(stream_of(MESSAGE_TYPES[raw["type"]]), msgspec.json.encode(raw),
                         now=NOW, limits=Limits())
        assert not isinstance(message, Rejection), message
        messages.append(message)
    return run(messages, Books(), [compile_program(load_program(PROGRAMS / program).program)])


def _kinds(outcome: Outcome) -> collections.Counter[tuple[str, str | None, str]]:
    return collections.Counter((r.kind.value, r.rule_id, r.leg.split(":")[0])
                               for r in outcome.records)


def test_the_english_example_pays_targets_growth_overrides_and_applies_its_gates() -> None:
    outcome = _run("example-channel-2026.yaml")
    kinds = _kinds(outcome)
    assert outcome.refused == []
    for key in [("accrual", "quarterly-target", "award"), ("note", None, "target"),
                ("accrual", "breakthrough", "award"), ("note", "breakthrough", "no-base"),
                ("accrual", "distributor-override", "override"),
                ("accrual", "network-champion", "award"),
                ("clawback", "support-contracts", "gate")]:
        assert kinds[key] > 0, key
    assert any(r.rule_id == "quarterly-target" and r.kind.value == "note"
               for r in outcome.records), "a partner below its first band gets a note"


def test_the_chinese_example_runs_on_the_same_quarter_in_yuan() -> None:
    """Every sample category earns the rule's rate without category; the NPS-scale gate of
    the rebate fails (the sample's surveys are CSAT) and withholds it."""
    outcome = _run("example-channel-2026.zh.yaml", currency="CNY",
                   program_id="huadong-channel")
    kinds = _kinds(outcome)
    assert outcome.refused == []
    for key in [("accrual", "sales-commission", "line"), ("note", None, "target"),
                ("accrual", "quarterly-target", "award"),
                ("accrual", "distribution-override", "override"),
                ("note", "breakthrough", "no-base")]:
        assert kinds[key] > 0, key
    commissions = [r for r in outcome.records if r.rule_id == "sales-commission"
                   and r.kind.value == "accrual"]
    assert {r.explanation.inputs.get("rate_category") for r in commissions} == {"*"}
    assert kinds[("note", "quarterly-rebate", "gate")] > 0
    assert kinds[("accrual", "quarterly-rebate", "award")] == 0
