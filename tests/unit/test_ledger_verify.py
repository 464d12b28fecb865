"""Tamper tests of the verifier on in-memory ledgers: each names the record it catches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from ledger.checkpoint import Checkpoint, anchor_of, take_checkpoint
from ledger.core import (
    Chain,
    ChainHead,
    Draft,
    Explanation,
    Posting,
    Record,
    RecordKind,
    append,
    empty_head,
    partner_pending,
    program_expense,
    record_hash,
)
from ledger.verify import FindingCode, StreamOrderError, Verifier, VerifyReport, verify

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PARTNERS = ["P-1", "P-2", "P-3"]
LENGTH = 6  # records per partner; checkpoint 1 pins seq 4, checkpoint 2 pins seq 6
replace = msgspec.structs.replace


def draft(partner_id: str, n: int, amount: int = 100, leg: str = "0") -> Draft:
    return Draft(
        partner_id=partner_id, kind=RecordKind.ACCRUAL,
        occurred_at=T0 + timedelta(days=n), recorded_at=T0 + timedelta(days=n, seconds=1),
        source_event_ids=(uuid.uuid5(uuid.NAMESPACE_OID, f"{partner_id}/{n}"),), leg=leg,
        explanation=Explanation(summary=f"sale {n}", formula="net * 3%", inputs={"n": n}),
        postings=(Posting(program_expense("prog"), "EUR", -amount),
                  Posting(partner_pending(partner_id), "EUR", amount)),
        program_id="prog", program_version=1, rule_id="per-sale",
    )


class Ledger:
    """Three partners' chains and two checkpoints, the second pinning every head."""

    def __init__(self) -> None:
        self.chains: dict[str, list[Record]] = {}
        heads_at_4: list[ChainHead] = []
        heads_at_end: list[ChainHead] = []
        for partner_id in PARTNERS:
            chain = Chain.empty(partner_id)
            records = chain.append(draft(partner_id, n) for n in range(4))
            heads_at_4.append(chain.head)
            records += chain.append(draft(partner_id, n) for n in range(4, LENGTH))
            heads_at_end.append(chain.head)
            self.chains[partner_id] = records
        first = take_checkpoint(heads_at_4, previous=None, taken_at=T0 + timedelta(days=4))
        second = take_checkpoint(heads_at_end, previous=first, taken_at=T0 + timedelta(days=9))
        self.checkpoints: list[Checkpoint] = [first, second]

    def stream(self) -> list[Record]:
        """Records as the store reads them: ORDER BY partner_id COLLATE "C", seq."""
        every = [r for records in self.chains.values() for r in records]
        return sorted(every, key=lambda r: (r.partner_id, r.seq))

    def verify(self) -> VerifyReport:
        return verify(self.stream(), self.checkpoints)

    def record(self, partner_id: str, seq: int) -> Record:
        return self.chains[partner_id][seq - 1]

    def put(self, record: Record) -> None:
        self.chains[record.partner_id][record.seq - 1] = record


def reseal_from(records: list[Record], start: int) -> list[Record]:
    """What a forger does: renumber and recompute every hash from index `start` on."""
    out = records[:start]
    prev = out[-1].hash if out else bytes(32)
    for seq, record in enumerate(records[start:], start=start + 1):
        moved = replace(record, seq=seq, prev_hash=prev, hash=b"")
        out.append(replace(moved, hash=record_hash(moved)))
        prev = out[-1].hash
    return out


def codes(report: VerifyReport) -> list[tuple[str | None, int | None, FindingCode]]:
    return [(f.partner_id, f.seq, f.code) for f in report.findings]


def test_an_intact_ledger_verifies() -> None:
    """No findings, and the counts say what was covered."""
    report = Ledger().verify()
    assert report.ok and report.findings == []
    assert (report.records, report.partners, report.checkpoints) == (18, 3, 2)


def test_records_appended_after_the_last_checkpoint_are_fine() -> None:
    """A checkpoint pins the past, not the future: later records do not trip it."""
    ledger = Ledger()
    more, _ = append(ChainHead("P-2", LENGTH, ledger.record("P-2", LENGTH).hash),
                     [draft("P-2", 10)])
    ledger.chains["P-2"] += more
    assert ledger.verify().ok


def test_changed_amount_is_named() -> None:
    """An UPDATE of one posting's amount breaks that record's hash."""
    ledger = Ledger()
    target = ledger.record("P-2", 3)
    ledger.put(replace(target, postings=(Posting(program_expense("prog"), "EUR", -1000),
                                         target.postings[1])))
    report = ledger.verify()
    assert codes(report) == [("P-2", 3, FindingCode.HASH_MISMATCH)]
    assert report.findings[0].record_id == target.record_id
    assert report.findings[0].found == target.hash.hex()


def test_changed_explanation_is_named() -> None:
    """Explanations are hashed too: rewording why someone was paid is tampering."""
    ledger = Ledger()
    target = ledger.record("P-1", 5)
    ledger.put(replace(target, explanation=replace(target.explanation, summary="sale 55")))
    assert codes(ledger.verify()) == [("P-1", 5, FindingCode.HASH_MISMATCH)]


def test_record_deleted_in_the_middle_is_a_gap() -> None:
    """Deleting record 3 leaves seq 2 followed by 4: the finding names record 4 and says 3."""
    ledger = Ledger()
    after = ledger.record("P-2", 4)
    del ledger.chains["P-2"][2]
    report = ledger.verify()
    assert codes(report) == [("P-2", 4, FindingCode.SEQ_GAP)]
    finding = report.findings[0]
    assert (finding.expected, finding.found, finding.record_id) == ("3", "4", after.record_id)
    assert "record(s) 3 missing" in finding.message


def test_last_record_deleted_is_caught_by_the_checkpoint() -> None:
    """A chain cut short is internally consistent; only the checkpoint's pin on seq 6 fails."""
    ledger = Ledger()
    ledger.chains["P-3"].pop()
    report = ledger.verify()
    assert codes(report) == [("P-3", LENGTH, FindingCode.CHECKPOINT_HEAD_MISSING)]
    assert report.findings[0].checkpoint_seq == 2
    assert "ends at seq 5" in report.findings[0].found


def test_two_records_swapped_in_the_table() -> None:
    """Swapping the seqs of records 3 and 4 (read back in seq order) breaks the link at 3;
    checkpoint 1, which pinned seq 4, now finds record 3's hash there."""
    ledger = Ledger()
    third, fourth = ledger.record("P-1", 3), ledger.record("P-1", 4)
    ledger.put(replace(fourth, seq=3))
    ledger.put(replace(third, seq=4))
    report = ledger.verify()
    assert codes(report) == [("P-1", 3, FindingCode.PREV_HASH_MISMATCH),
                             ("P-1", 4, FindingCode.CHECKPOINT_HEAD_MISMATCH)]
    assert report.findings[0].record_id == fourth.record_id


def test_two_records_swapped_in_the_stream() -> None:
    """Records delivered out of seq order are reported at the first one out of place."""
    ledger = Ledger()
    chain = ledger.chains["P-1"]
    chain[2], chain[3] = chain[3], chain[2]
    report = verify([r for p in PARTNERS for r in ledger.chains[p]], ledger.checkpoints)
    assert codes(report) == [("P-1", 4, FindingCode.SEQ_GAP)]


def test_forged_record_with_recomputed_hashes_is_caught_by_the_checkpoint() -> None:
    """A forger inserts a record at seq 3 and recomputes every later hash: the chain alone
    looks fine, but checkpoint 1 pinned another hash at seq 4."""
    ledger = Ledger()
    forged = Chain(ChainHead("P-2", 2, ledger.record("P-2", 2).hash)).append(
        [draft("P-2", 99, amount=1_000_000)])[0]
    chain = ledger.chains["P-2"]
    ledger.chains["P-2"] = reseal_from(chain[:2] + [forged] + chain[2:], 2)
    assert verify(ledger.stream(), []).ok  # without checkpoints nothing shows
    report = ledger.verify()
    assert codes(report) == [("P-2", 4, FindingCode.CHECKPOINT_HEAD_MISMATCH)]
    finding = report.findings[0]
    assert finding.checkpoint_seq == 1
    assert finding.expected == ledger.checkpoints[0].heads[1].hash.hex()
    assert "records 1..4 were rewritten" in finding.message


def test_rewritten_tail_is_bracketed_by_the_checkpoints() -> None:
    """A forgery after checkpoint 1's pin is located between the two pins."""
    ledger = Ledger()
    chain = ledger.chains["P-1"]
    target = chain[4]
    chain[4] = replace(target, explanation=replace(target.explanation, summary="forged"))
    ledger.chains["P-1"] = reseal_from(chain, 4)
    report = ledger.verify()
    assert codes(report) == [("P-1", 6, FindingCode.CHECKPOINT_HEAD_MISMATCH)]
    assert "records 5..6 were rewritten" in report.findings[0].message


def test_missing_partner_is_caught_by_the_checkpoint() -> None:
    """Deleting a whole partner leaves no chain to check; the checkpoint still names it."""
    ledger = Ledger()
    del ledger.chains["P-3"]
    report = ledger.verify()
    assert codes(report) == [("P-3", 4, FindingCode.PARTNER_MISSING)]
    assert report.findings[0].checkpoint_seq == 1


def test_unbalanced_record_with_recomputed_hash() -> None:
    """Even with a valid hash, a record whose postings do not sum to zero is reported."""
    ledger = Ledger()
    chain = ledger.chains["P-3"]
    target = chain[1]
    chain[1] = replace(target, postings=(target.postings[0], Posting(
        partner_pending("P-3"), "EUR", 1_000_000)))
    ledger.chains["P-3"] = reseal_from(chain, 1)
    report = verify(ledger.stream(), [])
    assert codes(report) == [("P-3", 2, FindingCode.UNBALANCED)]
    assert report.findings[0].found == "postings[asset=EUR]: sum 999900"


def test_record_id_not_derived_from_its_fields() -> None:
    """A record id must be the uuid5 of its partner, event, program, rule and leg."""
    ledger = Ledger()
    chain = ledger.chains["P-1"]
    chain[2] = replace(chain[2], record_id=uuid.uuid4())
    ledger.chains["P-1"] = reseal_from(chain, 2)
    report = verify(ledger.stream(), [])
    assert codes(report) == [("P-1", 3, FindingCode.RECORD_ID_MISMATCH)]


def test_duplicate_record_id_in_a_chain() -> None:
    """The same (event, rule, leg) twice in one chain means an event counted twice."""
    ledger = Ledger()
    chain = ledger.chains["P-1"]
    copy = replace(chain[2], seq=4, prev_hash=chain[2].hash, hash=b"")
    chain.insert(3, replace(copy, hash=record_hash(copy)))
    ledger.chains["P-1"] = reseal_from(chain, 4)
    report = verify(ledger.stream(), [])
    assert codes(report) == [("P-1", 4, FindingCode.DUPLICATE_RECORD_ID)]


def test_only_the_first_bad_record_of_a_partner_is_reported() -> None:
    """Everything after the first bad record is suspect; one finding per chain is enough."""
    ledger = Ledger()
    for seq in (2, 5):
        target = ledger.record("P-1", seq)
        ledger.put(replace(target, leg="x"))
    ledger.put(replace(ledger.record("P-3", 6), hash=bytes(32)))
    report = ledger.verify()
    assert codes(report) == [("P-1", 2, FindingCode.HASH_MISMATCH),
                             ("P-3", 6, FindingCode.HASH_MISMATCH),
                             ("P-3", 6, FindingCode.CHECKPOINT_HEAD_MISMATCH)]


def test_malformed_record_is_a_finding_not_a_crash() -> None:
    """Whatever a row holds, the verifier reports it and goes on with other partners."""
    ledger = Ledger()
    target = ledger.record("P-2", 2)
    ledger.put(replace(target, occurred_at=target.occurred_at.replace(tzinfo=None)))
    report = ledger.verify()
    assert codes(report) == [("P-2", 2, FindingCode.MALFORMED_RECORD)]


def test_tampered_checkpoint_root() -> None:
    """A checkpoint whose heads were edited no longer hashes to its root."""
    ledger = Ledger()
    first = ledger.checkpoints[0]
    ledger.checkpoints[0] = replace(first, heads=first.heads[:2] + (
        ChainHead("P-3", 4, bytes(32)),))
    report = ledger.verify()
    assert (None, None, FindingCode.CHECKPOINT_ROOT_MISMATCH) in codes(report)
    assert ("P-3", 4, FindingCode.CHECKPOINT_HEAD_MISMATCH) in codes(report)


def test_deleted_checkpoint() -> None:
    """Checkpoints are numbered and linked: a missing first one is visible."""
    ledger = Ledger()
    del ledger.checkpoints[0]
    report = ledger.verify()
    assert [f.code for f in report.findings] == [FindingCode.CHECKPOINT_SEQ_GAP,
                                                 FindingCode.CHECKPOINT_LINK_MISMATCH]
    assert report.findings[0].checkpoint_seq == 2


def test_deleting_the_newest_checkpoint_and_rewriting_after_the_one_before() -> None:
    """Alone, the database's checkpoints cannot show that the newest one was removed and
    the chains rewritten after the one before; its anchor held outside the database can."""
    ledger = Ledger()
    anchors = [anchor_of(c) for c in ledger.checkpoints]
    del ledger.checkpoints[1]
    ledger.chains["P-2"] = reseal_from(
        ledger.chains["P-2"][:4] + [replace(r, postings=tuple(
            replace(p, amount=p.amount * 100) for p in r.postings))
            for r in ledger.chains["P-2"][4:]], 4)  # fmt: skip
    assert ledger.verify().ok
    report = verify(ledger.stream(), ledger.checkpoints, anchors=anchors)
    assert [(f.code, f.checkpoint_seq) for f in report.findings] == [
        (FindingCode.CHECKPOINT_MISSING, 2)]
    assert report.anchors == 2
    assert report.findings[0].message == (
        "checkpoint 2 is held outside the database, but the database has no such checkpoint")


def test_a_checkpoint_rewritten_consistently_differs_from_its_anchor() -> None:
    """Every chain and checkpoint rewritten and rehashed: only the anchor disagrees."""
    ledger = Ledger()
    anchors = [anchor_of(c) for c in ledger.checkpoints]
    ledger.chains["P-1"] = reseal_from(
        [replace(r, explanation=replace(r.explanation, summary="forged"))
         for r in ledger.chains["P-1"]], 0)  # fmt: skip
    heads = [ChainHead(p, LENGTH, ledger.record(p, LENGTH).hash) for p in PARTNERS]
    early = [ChainHead(p, 4, ledger.record(p, 4).hash) for p in PARTNERS]
    first = take_checkpoint(early, previous=None, taken_at=T0 + timedelta(days=4))
    ledger.checkpoints = [first, take_checkpoint(heads, previous=first,
                                                 taken_at=T0 + timedelta(days=9))]
    assert ledger.verify().ok
    report = verify(ledger.stream(), ledger.checkpoints, anchors=anchors[1:])
    assert [(f.code, f.checkpoint_seq) for f in report.findings] == [
        (FindingCode.CHECKPOINT_ANCHOR_MISMATCH, 2)]
    assert f"root {anchors[1].root}" in report.findings[0].expected
    # Checkpoints newer than every anchor were merely not exported yet.
    assert verify(ledger.stream(), ledger.checkpoints, anchors=[]).ok


def test_partner_dropped_from_a_later_checkpoint() -> None:
    """A rewritten later checkpoint that leaves out a partner contradicts the earlier one."""
    ledger = Ledger()
    first = ledger.checkpoints[0]
    heads = [ChainHead(r.partner_id, r.seq, r.hash)
             for r in (ledger.record("P-1", LENGTH), ledger.record("P-2", LENGTH))]
    ledger.checkpoints[1] = take_checkpoint(heads, previous=first,
                                            taken_at=T0 + timedelta(days=9))
    report = ledger.verify()
    assert [f.code for f in report.findings] == [FindingCode.CHECKPOINT_HEAD_DROPPED]


def test_records_out_of_partner_order_are_a_caller_error() -> None:
    """The query must order by partner in code point order; anything else is a bug."""
    ledger = Ledger()
    with pytest.raises(StreamOrderError, match="'P-1' came after 'P-2'"):
        verify(ledger.chains["P-2"] + ledger.chains["P-1"], [])


def test_progress_is_reported_every_n_records_and_at_the_end() -> None:
    """The CLI shows progress on a large ledger through this hook."""
    calls: list[tuple[int, int]] = []
    verify(Ledger().stream(), [], progress=lambda r, p: calls.append((r, p)), progress_every=5)
    assert calls == [(5, 1), (10, 2), (15, 3), (18, 3)]


def test_feeding_in_batches_equals_one_pass() -> None:
    """An async store feeds each fetched chunk; chunk borders do not matter."""
    ledger = Ledger()
    ledger.chains["P-2"].pop()
    del ledger.chains["P-1"][3]
    stream = ledger.stream()
    verifier = Verifier(ledger.checkpoints)
    for start in range(0, len(stream), 4):
        verifier.feed(stream[start:start + 4])
    assert verifier.finish() == verify(stream, ledger.checkpoints)


def test_empty_ledger_with_no_checkpoints_is_ok() -> None:
    """A fresh installation verifies cleanly."""
    assert verify([], []) == VerifyReport(records=0, partners=0, checkpoints=0, findings=[])


def test_empty_chain_heads_are_not_pinned() -> None:
    """A partner without records is not in the ledger, so a checkpoint leaves it out."""
    checkpoint = take_checkpoint([empty_head("P-9")], previous=None, taken_at=T0)
    assert checkpoint.partner_count == 0
    assert verify([], [checkpoint]).ok
