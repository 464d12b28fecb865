"""Unit and property tests of the pure ledger core: records, postings, hashing, the chain.
Balances folded from records are in ``test_ledger_balances.py``."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_core_support import (
    EPOCH,
    PROGRAM,
    T0,
    draft_lists,
    explanations,
    make_draft,
    moments,
)

from ledger.checkpoint import (
    GENESIS_ROOT,
    check_checkpoint,
    checkpoint_root,
    take_checkpoint,
)
from ledger.core import (
    GENESIS_HASH,
    LEDGER_NAMESPACE,
    PAYOUT_CLEARING,
    AssetKind,
    Chain,
    ChainHead,
    Draft,
    Explanation,
    InvalidDraft,
    PartnerMismatch,
    Posting,
    Record,
    RecordKind,
    append,
    asset_kind,
    award,
    canonical_bytes,
    check_balanced,
    currency,
    decode_explanation,
    empty_head,
    explanation_json,
    mdf,
    partner_available,
    partner_pending,
    points,
    program_expense,
    record_hash,
    seal,
)
from ledger.verify import verify

# --- properties -----------------------------------------------------------------------------


@given(draft_lists)
def test_every_sealed_record_balances_per_asset(batch: list[Draft]) -> None:
    """Whatever the engine drafts, each sealed record's postings sum to zero per asset."""
    records, _ = append(empty_head("P-1"), batch)
    for record in records:
        assert check_balanced(record) == []
        totals: dict[str, int] = {}
        for posting in record.postings:
            totals[posting.asset] = totals.get(posting.asset, 0) + posting.amount
        assert set(totals.values()) <= {0}


@given(draft_lists)
def test_appending_twice_equals_appending_once(batch: list[Draft]) -> None:
    """Idempotency by record id: a replayed batch adds nothing and leaves the head alone."""
    chain = Chain.empty("P-1")
    first = chain.append(batch)
    head = chain.head
    assert chain.append(batch) == []
    assert chain.head == head
    doubled, doubled_head = append(empty_head("P-1"), batch + batch)
    assert doubled == first
    assert doubled_head == head


@given(draft_lists)
def test_same_input_gives_same_ids_and_hashes(batch: list[Draft]) -> None:
    """Replaying the same drafts from the same head reproduces ids, seqs and hashes exactly."""
    once, head_once = append(empty_head("P-1"), batch)
    again, head_again = append(empty_head("P-1"), [msgspec.json.decode(
        msgspec.json.encode(d), type=Draft) for d in batch])
    assert [(r.record_id, r.seq, r.hash) for r in once] == [
        (r.record_id, r.seq, r.hash) for r in again]
    assert head_once == head_again


@given(draft_lists)
def test_chain_is_gapless_and_linked(batch: list[Draft]) -> None:
    """Seqs run 1, 2, 3, ... and each record's prev_hash is the hash before it."""
    records, head = append(empty_head("P-1"), batch)
    prev = GENESIS_HASH
    for seq, record in enumerate(records, start=1):
        assert record.seq == seq
        assert record.prev_hash == prev
        assert record.hash == record_hash(record)
        prev = record.hash
    assert head == ChainHead("P-1", len(records), prev)


# The fields of a record and a way to change each by one bit or one character. partner_id is
# left out: changing it moves the record to another partner's chain, which the verifier tests
# cover as a gap in one chain and a foreign record in another.
FIELDS = ["record_id", "seq", "kind", "occurred_at", "recorded_at", "program_id",
          "program_version", "rule_id", "leg", "source_event_ids", "explanation",
          "postings.amount", "postings.account", "postings.asset", "prev_hash", "hash"]


def _flip_char(text: str, n: int) -> str:
    if not text:
        return "x"
    i = n % len(text)
    return text[:i] + ("a" if text[i] != "a" else "b") + text[i + 1:]


def _flip_bytes(data: bytes, n: int) -> bytes:
    i = n % len(data)
    return data[:i] + bytes([data[i] ^ (1 << (n % 8))]) + data[i + 1:]


def mutate(record: Record, field: str, n: int) -> Record:
    replace = msgspec.structs.replace
    if field == "record_id":
        return replace(record, record_id=uuid.UUID(int=record.record_id.int ^ (1 << (n % 128))))
    if field == "seq":
        return replace(record, seq=record.seq ^ (1 << (n % 8)))
    if field == "kind":
        kinds = list(RecordKind)
        return replace(record, kind=kinds[(kinds.index(record.kind) + 1 + n % 5) % len(kinds)])
    if field in ("occurred_at", "recorded_at"):
        moment: datetime = getattr(record, field)
        return replace(record, **{field: moment + timedelta(microseconds=1 << (n % 30))})
    if field in ("program_id", "rule_id", "leg"):
        return replace(record, **{field: _flip_char(getattr(record, field) or "", n)})
    if field == "program_version":
        return replace(record, program_version=(record.program_version or 0) + 1)
    if field == "source_event_ids":
        first = uuid.UUID(bytes=_flip_bytes(record.source_event_ids[0].bytes, n))
        return replace(record, source_event_ids=(first, *record.source_event_ids[1:]))
    if field == "explanation":
        summary = _flip_char(record.explanation.summary, n)
        return replace(record, explanation=replace(record.explanation, summary=summary))
    if field in ("prev_hash", "hash"):
        return replace(record, **{field: _flip_bytes(getattr(record, field), n)})
    if not record.postings:
        return replace(record, postings=(Posting(PAYOUT_CLEARING, "EUR", 1),))
    postings = list(record.postings)
    leg = n % len(postings)
    old = postings[leg]
    if field == "postings.amount":
        postings[leg] = Posting(old.account, old.asset, old.amount + 1 + n % 7)
    elif field == "postings.account":
        postings[leg] = Posting(_flip_char(old.account, n), old.asset, old.amount)
    else:
        postings[leg] = Posting(old.account, _flip_char(old.asset, n), old.amount)
    return replace(record, postings=tuple(postings))


@settings(max_examples=300)
@given(draft_lists, st.sampled_from(FIELDS), st.integers(0, 10**6), st.data())
def test_any_changed_field_breaks_the_chain_from_that_record(
    batch: list[Draft], field: str, n: int, data: st.DataObject
) -> None:
    """One changed bit or character in record k changes every hash from k on, and the verifier
    names record k as the first (and only) bad record of the chain."""
    records, _ = append(empty_head("P-1"), batch)
    k = data.draw(st.integers(0, len(records) - 1))
    tampered = mutate(records[k], field, n)
    assert tampered != records[k]
    stream = records[:k] + [tampered] + records[k + 1:]

    report = verify(stream, [])
    assert len(report.findings) == 1
    finding = report.findings[0]
    assert (finding.partner_id, finding.seq, finding.record_id) == (
        "P-1", tampered.seq, tampered.record_id)

    if field != "hash":  # the stored hash is not itself hashed; every other field is
        rehashed = record_hash(tampered)
        assert rehashed != records[k].hash
        for later in records[k + 1:]:
            rehashed = record_hash(msgspec.structs.replace(later, prev_hash=rehashed))
            assert rehashed != later.hash


# --- the documented encoding, reimplemented with the standard library -------------------------


def reference_hash(record: Record) -> bytes:
    """The hashed encoding as the module docstring states it, without msgspec."""
    def us(moment: datetime) -> int:
        return (moment - EPOCH) // timedelta(microseconds=1)

    e = record.explanation
    explanation: dict[str, Any] = {"summary": e.summary}
    if e.formula != "":
        explanation["formula"] = e.formula
    if e.inputs:
        explanation["inputs"] = e.inputs
    if e.rounding is not None:
        explanation["rounding"] = {"mode": e.rounding.mode, "exact": e.rounding.exact,
                                   "result": e.rounding.result}
    for name in ("author", "reason"):
        if getattr(e, name) is not None:
            explanation[name] = getattr(e, name)
    if e.related_record_ids:
        explanation["related_record_ids"] = [str(u) for u in e.related_record_ids]
    body = ["incentives-ledger-record/1", str(record.record_id), record.partner_id, record.seq,
            record.kind.value, us(record.occurred_at), us(record.recorded_at), record.program_id,
            record.program_version, record.rule_id, record.leg,
            [str(u) for u in record.source_event_ids], explanation,
            [[p.account, p.asset, p.amount] for p in record.postings], record.prev_hash.hex()]
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(record.prev_hash + text.encode("utf-8")).digest()


@given(draft_lists)
def test_record_hash_matches_the_documented_encoding(batch: list[Draft]) -> None:
    """An auditor can recompute every hash from the docstring with json and hashlib alone."""
    records, _ = append(empty_head("P-1"), batch)
    for record in records:
        assert reference_hash(record) == record.hash


@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,8}", fullmatch=True),
                          st.integers(1, 10**9), st.binary(min_size=32, max_size=32)),
                unique_by=lambda t: t[0], max_size=6), moments)
def test_checkpoint_root_matches_the_documented_encoding(
    heads: list[tuple[str, int, bytes]], taken_at: datetime
) -> None:
    """The checkpoint root is sha256(prev_root || JSON of the sorted heads), as documented."""
    checkpoint = take_checkpoint([ChainHead(*h) for h in heads], previous=None,
                                 taken_at=taken_at)
    ordered = sorted(heads)
    body = ["incentives-ledger-checkpoint/1", 1,
            (taken_at - EPOCH) // timedelta(microseconds=1), GENESIS_ROOT.hex(), len(heads),
            [[p, s, h.hex()] for p, s, h in ordered]]
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    assert checkpoint.root == hashlib.sha256(GENESIS_ROOT + text.encode()).digest()
    assert checkpoint_root(checkpoint) == checkpoint.root
    assert check_checkpoint(checkpoint, None) == []


def test_checkpoints_chain_to_each_other() -> None:
    """Each checkpoint hashes the previous root, so editing an old one breaks the next."""
    first = take_checkpoint([ChainHead("P-1", 3, b"\x01" * 32)], previous=None, taken_at=T0)
    heads = [ChainHead("P-1", 5, b"\x02" * 32), ChainHead("P-2", 1, b"\x03" * 32)]
    second = take_checkpoint(heads, previous=first, taken_at=T0 + timedelta(hours=1))
    assert (second.checkpoint_seq, second.prev_root, second.partner_count) == (2, first.root, 2)
    assert check_checkpoint(second, first) == []
    # A rewritten first checkpoint that pins P-1 at seq 5 with another hash than the second.
    forged_first = take_checkpoint([ChainHead("P-1", 5, b"\x09" * 32)], previous=None,
                                   taken_at=T0)
    assert [p.code for p in check_checkpoint(second, forged_first)] == [
        "checkpoint_link_mismatch", "checkpoint_head_regressed"]


@given(explanations)
def test_explanation_text_round_trips(explanation: Explanation) -> None:
    """The stored explanation text decodes to an equal explanation with the same text."""
    text = explanation_json(explanation)
    assert decode_explanation(text) == explanation
    assert explanation_json(decode_explanation(text)) == text


# --- units ----------------------------------------------------------------------------------


def test_record_id_is_uuid5_of_partner_event_program_rule_and_leg() -> None:
    """Replays get the same id; the partner and program are part of the name."""
    draft = make_draft(0)
    expected = uuid.uuid5(LEDGER_NAMESPACE, f"P-1:{uuid.UUID(int=1)}:{PROGRAM}:per-sale:0")
    assert draft.record_id == expected
    assert make_draft(0, partner_id="P-2").record_id != expected
    assert make_draft(0, program_id="prog-b").record_id != expected
    payout = make_draft(0, program_id=None, program_version=None, rule_id=None,
                        kind=RecordKind.PAYOUT, leg="payout",
                        postings=(Posting(partner_available("P-1"), "EUR", -5),
                                  Posting(PAYOUT_CLEARING, "EUR", 5)))
    assert payout.record_id == uuid.uuid5(LEDGER_NAMESPACE, f"P-1:{uuid.UUID(int=1)}:::payout")


def test_assets_and_their_kinds() -> None:
    """Each asset helper builds the documented spelling and asset_kind reads it back."""
    assert [currency("EUR"), points("prog-a"), award("trip"), mdf("USD")] == [
        "EUR", "PTS:prog-a", "AWARD:trip", "MDF:USD"]
    assert [asset_kind(a) for a in ("EUR", "PTS:prog-a", "AWARD:trip", "MDF:USD")] == [
        AssetKind.CURRENCY, AssetKind.POINTS, AssetKind.AWARD, AssetKind.MDF]
    assert asset_kind("eur") is None and asset_kind("MDF:EURO") is None
    with pytest.raises(InvalidDraft, match="ISO 4217"):
        currency("euro")
    with pytest.raises(InvalidDraft, match="no ':'"):
        partner_pending("P:1")


def test_unbalanced_draft_is_a_programmer_error_at_seal() -> None:
    """The engine must never produce an unbalanced record: sealing one trips an assert."""
    draft = make_draft(0, postings=(Posting(program_expense(PROGRAM), "EUR", -100),
                                    Posting(partner_pending("P-1"), "EUR", 99)))
    assert [p.code for p in check_balanced(draft)] == ["unbalanced"]
    with pytest.raises(AssertionError, match="does not balance"):
        seal(draft, 1, GENESIS_HASH)


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"partner_id": "P 1"}, "partner_id"),
        ({"occurred_at": datetime(2026, 1, 1)}, "occurred_at"),
        ({"source_event_ids": ()}, "source_event_ids"),
        ({"leg": ""}, "leg"),
        ({"program_version": None}, "program_version"),
        ({"program_id": None}, "program_version"),
        ({"kind": RecordKind.TIER_CHANGE}, "postings"),
        ({"postings": (Posting("cash", "EUR", -1), Posting(PAYOUT_CLEARING, "EUR", 1))},
         "postings[0].account"),
        ({"postings": (Posting(partner_pending("P-2"), "EUR", -1),
                       Posting(PAYOUT_CLEARING, "EUR", 1))}, "postings[0].account"),
        ({"postings": (Posting(PAYOUT_CLEARING, "eur", -1), Posting(PAYOUT_CLEARING, "eur", 1))},
         "postings[0].asset"),
        ({"postings": (Posting(PAYOUT_CLEARING, "EUR", 0), Posting(PAYOUT_CLEARING, "EUR", 0))},
         "postings[0].amount"),
        ({"explanation": Explanation(summary="x", inputs={"rate": 0.03})},  # type: ignore[dict-item]
         "explanation.inputs['rate']"),
        ({"explanation": Explanation(summary="nul\x00")}, "explanation.summary"),
        ({"explanation": Explanation(summary="x" * 20_000)}, "explanation"),
        ({"kind": RecordKind.ADJUSTMENT}, "explanation.author"),
        ({"kind": RecordKind.ADJUSTMENT, "explanation": Explanation(summary="x", author="ann")},
         "explanation.reason"),
        ({"kind": RecordKind.REVERSAL}, "explanation.related_record_ids"),
    ],
)
def test_invalid_drafts_are_rejected_with_the_path(changes: dict[str, Any], path: str) -> None:
    """Expected failures are typed errors that name the bad value's path."""
    with pytest.raises(InvalidDraft) as caught:
        make_draft(0, **changes)
    assert caught.value.path == path
    assert f"at `{path}`" in str(caught.value)


def test_append_refuses_another_partners_draft() -> None:
    """A chain holds one partner's records only."""
    with pytest.raises(PartnerMismatch, match="partner 'P-2'"):
        append(empty_head("P-1"), [make_draft(0, partner_id="P-2")])


def test_append_skips_ids_the_caller_knows() -> None:
    """The store passes the ids it already holds; those drafts are not sealed again."""
    first, head = append(empty_head("P-1"), [make_draft(0), make_draft(1)])
    more, new_head = append(head, [make_draft(1), make_draft(2)],
                            known_ids={r.record_id for r in first})
    assert [r.seq for r in more] == [3]
    assert more[0].prev_hash == head.hash
    assert new_head == ChainHead("P-1", 3, more[0].hash)


def test_tier_change_moves_no_value_but_is_chained() -> None:
    """A record without postings is still sealed into the chain and balances trivially."""
    tier = make_draft(0, kind=RecordKind.TIER_CHANGE, postings=(), leg="tier",
                      explanation=Explanation(summary="gold -> platinum",
                                              inputs={"from": "gold", "to": "platinum"}))
    records, head = append(empty_head("P-1"), [make_draft(1), tier])
    assert [r.kind for r in records] == [RecordKind.ACCRUAL, RecordKind.TIER_CHANGE]
    assert records[1].prev_hash == records[0].hash and head.seq == 2
    assert check_balanced(records[1]) == []


def test_canonical_bytes_are_compact_json() -> None:
    """The hashed bytes are the documented array; spot-check its head and tail."""
    record = seal(make_draft(0), 1, GENESIS_HASH)
    text = canonical_bytes(record).decode()
    occurred_us = (record.occurred_at - EPOCH) // timedelta(microseconds=1)
    assert text.startswith(f'["incentives-ledger-record/1","{record.record_id}","P-1",1,'
                           f'"accrual",{occurred_us},')
    assert text.endswith(f'[["program:prog-a:expense","EUR",-100],'
                         f'["partner:P-1:pending","EUR",100]],"{"00" * 32}"]')
    # No whitespace between tokens: re-serialising compactly gives the same text.
    assert text == json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


# --- decoding ---------------------------------------------------------------------------------


def test_decoding_an_invalid_draft_reports_the_path() -> None:
    """InvalidDraft is a ValueError, so msgspec turns it into a ValidationError on decode."""
    raw = msgspec.json.encode(make_draft(0)).replace(b'"partner:P-1:pending"',
                                                      b'"partner:P-2:pending"')
    with pytest.raises(msgspec.ValidationError, match=r"postings\[1\]\.account"):
        msgspec.json.decode(raw, type=Draft)
