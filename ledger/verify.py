"""The auditor's verifier: proves that the ledger's chains and checkpoints are intact.

It consumes records ordered by (partner_id in code point order, seq), the order that
``ORDER BY partner_id COLLATE "C", seq`` gives, and holds only one partner's state at a time
(its running hash, next seq and the ids seen in its chain), so ten million records stream
through in constant memory per partner. Checkpoints are read first, into an index of the
heads they pin: memory grows with the number of distinct pinned heads, not with the ledger.

Per record it recomputes the hash, checks the gapless seq from 1 and the prev_hash link,
recomputes the record id from the fields it is derived from (see ledger.core) and checks it is
unique within the partner (with the derivation, that makes it unique in the ledger), and
checks that postings sum to zero per asset. Per checkpoint it recomputes the root, the link to
the previous checkpoint, and demands that each pinned head still exists in its chain.

Only the first bad record of a partner is reported (after it, every later hash is suspect
anyway), plus at most one checkpoint finding per partner and the findings about checkpoints
themselves. Use `Verifier` to feed records in batches (an async store feeds each fetched
chunk), or `verify` for one iterable.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Callable, Iterable
from typing import Final

import msgspec

from ledger.checkpoint import Checkpoint, CheckpointAnchor, check_anchors, check_checkpoint
from ledger.core import (
    GENESIS_HASH,
    LEDGER_NAMESPACE,
    LedgerError,
    Record,
    canonical_bytes,
    check_balanced,
)

ProgressFn = Callable[[int, int], None]  # (records verified so far, partners begun so far)

_NO_DEMAND: Final = 2**63  # larger than any seq: "no checkpoint pins a later record"


class FindingCode(enum.StrEnum):
    # The first bad record of a chain.
    SEQ_GAP = "seq_gap"
    PREV_HASH_MISMATCH = "prev_hash_mismatch"
    HASH_MISMATCH = "hash_mismatch"
    RECORD_ID_MISMATCH = "record_id_mismatch"
    DUPLICATE_RECORD_ID = "duplicate_record_id"
    UNBALANCED = "unbalanced"
    MALFORMED_RECORD = "malformed_record"
    # A chain against the checkpoints.
    CHECKPOINT_HEAD_MISMATCH = "checkpoint_head_mismatch"
    CHECKPOINT_HEAD_MISSING = "checkpoint_head_missing"
    PARTNER_MISSING = "partner_missing"
    # The checkpoints themselves (codes of ledger.checkpoint.check_checkpoint).
    CHECKPOINT_ROOT_MISMATCH = "checkpoint_root_mismatch"
    CHECKPOINT_SEQ_GAP = "checkpoint_seq_gap"
    CHECKPOINT_LINK_MISMATCH = "checkpoint_link_mismatch"
    CHECKPOINT_TIME_REGRESSED = "checkpoint_time_regressed"
    CHECKPOINT_MALFORMED = "checkpoint_malformed"
    CHECKPOINT_HEAD_DROPPED = "checkpoint_head_dropped"
    CHECKPOINT_HEAD_REGRESSED = "checkpoint_head_regressed"
    # The checkpoints against their anchors outside the database (check_anchors).
    CHECKPOINT_MISSING = "checkpoint_missing"
    CHECKPOINT_ANCHOR_MISMATCH = "checkpoint_anchor_mismatch"


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    partner_id: str | None
    seq: int | None
    record_id: uuid.UUID | None
    code: FindingCode
    expected: str
    found: str
    message: str
    checkpoint_seq: int | None = None


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    records: int
    partners: int
    checkpoints: int
    findings: list[Finding]
    anchors: int = 0  # anchors held outside the database that the checkpoints met

    @property
    def ok(self) -> bool:
        return not self.findings


class StreamOrderError(LedgerError):
    """The caller fed records out of partner order; that is a bug in the query, not tampering."""


# uuid5 computed on the integer, as uuid.UUID does, without building a UUID object per record.
_NAMESPACE_BYTES = LEDGER_NAMESPACE.bytes
_ID_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & (2**128 - 1)
_ID_BITS = (5 << 76) | (0x8000 << 48)

# A demand: (pinned seq, pinned hash, checkpoint_seq of the first checkpoint that pins it).
_Demand = tuple[int, bytes, int]


class Verifier:
    def __init__(
        self,
        checkpoints: Iterable[Checkpoint],
        *,
        anchors: Iterable[CheckpointAnchor] = (),
        progress: ProgressFn | None = None,
        progress_every: int = 100_000,
    ) -> None:
        """`checkpoints` must be all of them, in checkpoint_seq order, starting at 1;
        `anchors` are copies of some held outside the database (see ledger.checkpoint)."""
        assert progress_every >= 1
        self.findings: list[Finding] = []
        self._progress = progress
        self._progress_every = progress_every
        self._next_progress = progress_every
        self._records = 0
        self._partners = 0
        self._checkpoints = 0
        self._demands: dict[str, list[_Demand]] = {}
        checkpoints = list(checkpoints)
        self._anchors = len(set(anchors))
        for seq, problem in check_anchors(checkpoints, anchors):
            missing = problem.code == FindingCode.CHECKPOINT_MISSING
            self._add(None, None, None, FindingCode(problem.code), problem.expected,
                      problem.found, f"{problem.path} is held outside the database, but "
                      + ("the database has no such checkpoint" if missing
                         else "the database holds another one"), seq)
        self._index_checkpoints(checkpoints)
        # The partner being verified.
        self._partner: str | None = None
        self._expect_seq = 1
        self._head = GENESIS_HASH
        # The record ids of the chain so far, as integers: a UUID hashes in Python code, an
        # int in C, and this set takes one insert and one probe per record.
        self._ids: set[int] = set()
        self._bad = False
        self._last_seq = 0
        self._pending: list[_Demand] = []
        self._pending_pos = 0
        self._next_demand = _NO_DEMAND
        self._last_pinned_seq = 0
        self._checkpoint_reported = False

    # --- feeding ------------------------------------------------------------------------------

    def feed(self, records: Iterable[Record]) -> None:
        for record in records:
            if record.partner_id != self._partner:
                self._switch_partner(record.partner_id)
            self._records += 1
            if self._records >= self._next_progress:
                self._report_progress()
            if not self._bad:
                self._check_record(record)
            seq = record.seq
            if seq > self._last_seq:
                self._last_seq = seq
            if seq >= self._next_demand:
                self._meet_demands(record)

    def finish(self) -> VerifyReport:
        self._end_partner()
        self._partner = None
        for partner_id in sorted(self._demands):
            pinned_seq, pinned_hash, checkpoint_seq = self._demands[partner_id][0]
            self._add(partner_id, pinned_seq, None, FindingCode.PARTNER_MISSING,
                      f"a chain with record {pinned_seq} hashing to {pinned_hash.hex()}",
                      "no records", f"checkpoint {checkpoint_seq} names partner "
                      f"{partner_id!r}, but the ledger has no record of it", checkpoint_seq)
        self._demands.clear()
        if self._progress is not None:
            self._progress(self._records, self._partners)
        return VerifyReport(records=self._records, partners=self._partners,
                            checkpoints=self._checkpoints, findings=list(self.findings),
                            anchors=self._anchors)

    # --- one record -----------------------------------------------------------------------------

    def _check_record(self, record: Record) -> None:
        """The hot path: one attribute walk, one encode, one sha256, one sha1."""
        try:
            if record.seq != self._expect_seq:
                self._flag_seq(record)
                return
            if record.prev_hash != self._head:
                self._flag(record, FindingCode.PREV_HASH_MISMATCH, self._head.hex(),
                           record.prev_hash.hex(), "prev_hash does not link to the previous "
                           "record's hash: a record before it was removed, added or moved")
                return
            digest = hashlib.sha256(self._head + canonical_bytes(record)).digest()
            if digest != record.hash:
                self._flag(record, FindingCode.HASH_MISMATCH, digest.hex(), record.hash.hex(),
                           "the stored hash is not sha256(prev_hash || canonical bytes): "
                           "a field or posting of this record was changed")
                return
            record_id = record.record_id
            id_int = record_id.int
            if not _id_matches(record, id_int):
                self._flag(record, FindingCode.RECORD_ID_MISMATCH, "uuid5 of the record's "
                           "partner, first source event, program, rule and leg",
                           str(record_id), "the record id is not derived from its own fields")
                return
            if id_int in self._ids:
                self._flag(record, FindingCode.DUPLICATE_RECORD_ID, "a record id not seen "
                           "before in this chain", str(record_id), "the record id repeats")
                return
            if not _balanced(record):
                problems = check_balanced(record)
                self._flag(record, FindingCode.UNBALANCED, "every asset sums to 0",
                           "; ".join(f"{p.path}: {p.found}" for p in problems),
                           "postings do not sum to zero per asset")
                return
        except (AttributeError, IndexError, TypeError, ValueError, OverflowError,
                msgspec.EncodeError) as exc:
            self._flag(record, FindingCode.MALFORMED_RECORD, "a well-formed record",
                       f"{type(exc).__name__}: {exc}", "the record cannot be encoded")
            return
        self._ids.add(id_int)
        self._head = digest
        self._expect_seq += 1

    def _flag_seq(self, record: Record) -> None:
        expected, found = self._expect_seq, record.seq
        if found > expected:
            missing = str(expected) if found == expected + 1 else f"{expected}..{found - 1}"
            message = (f"seq jumps from {expected - 1} to {found}: record(s) {missing} "
                       "missing or out of order")
        else:
            message = f"seq {found} repeats or goes back after {expected - 1}"
        self._flag(record, FindingCode.SEQ_GAP, str(expected), str(found), message)

    def _flag(self, record: Record, code: FindingCode, expected: str, found: str,
              message: str) -> None:
        self._bad = True
        self._add(record.partner_id, record.seq, record.record_id, code, expected, found,
                  message, None)

    # --- checkpoints ----------------------------------------------------------------------------

    def _index_checkpoints(self, checkpoints: Iterable[Checkpoint]) -> None:
        previous: Checkpoint | None = None
        pinned: dict[str, dict[int, _Demand]] = {}
        for checkpoint in checkpoints:
            self._checkpoints += 1
            for problem in check_checkpoint(checkpoint, previous):
                self._add(None, None, None, FindingCode(problem.code), problem.expected,
                          problem.found, f"checkpoint {checkpoint.checkpoint_seq}: "
                          f"{problem.path} is wrong", checkpoint.checkpoint_seq)
            for head in checkpoint.heads:
                by_seq = pinned.setdefault(head.partner_id, {})
                # The first checkpoint that pins a seq is kept; a later one that pins the same
                # seq with another hash was already reported as a regressed head.
                by_seq.setdefault(head.seq, (head.seq, head.hash, checkpoint.checkpoint_seq))
            previous = checkpoint
        self._demands = {p: sorted(by_seq.values()) for p, by_seq in pinned.items()}

    def _meet_demands(self, record: Record) -> None:
        """Compare the record with every pinned head at or before its seq."""
        pending, pos = self._pending, self._pending_pos
        while pos < len(pending) and pending[pos][0] <= record.seq:
            pinned_seq, pinned_hash, checkpoint_seq = pending[pos]
            pos += 1
            if pinned_seq < record.seq:
                self._flag_missing_head(pinned_seq, pinned_hash, checkpoint_seq,
                                        f"no record {pinned_seq}; the chain goes on at "
                                        f"{record.seq}")
            elif record.hash != pinned_hash:
                self._flag_checkpoint(
                    record.seq, record.record_id, FindingCode.CHECKPOINT_HEAD_MISMATCH,
                    pinned_hash.hex(), record.hash.hex(),
                    f"checkpoint {checkpoint_seq} pinned another hash at seq {pinned_seq}: "
                    f"records {self._last_pinned_seq + 1}..{pinned_seq} were rewritten "
                    "(hashes recomputed)", checkpoint_seq)
            else:
                self._last_pinned_seq = pinned_seq
        self._pending_pos = pos
        self._next_demand = pending[pos][0] if pos < len(pending) else _NO_DEMAND

    def _flag_missing_head(self, pinned_seq: int, pinned_hash: bytes, checkpoint_seq: int,
                           found: str) -> None:
        self._flag_checkpoint(
            pinned_seq, None, FindingCode.CHECKPOINT_HEAD_MISSING,
            f"record {pinned_seq} hashing to {pinned_hash.hex()}", found,
            f"checkpoint {checkpoint_seq} pinned record {pinned_seq}, which is gone",
            checkpoint_seq)

    def _flag_checkpoint(self, seq: int, record_id: uuid.UUID | None, code: FindingCode,
                         expected: str, found: str, message: str, checkpoint_seq: int) -> None:
        if self._checkpoint_reported:
            return
        self._checkpoint_reported = True
        assert self._partner is not None
        self._add(self._partner, seq, record_id, code, expected, found, message, checkpoint_seq)

    # --- partners -------------------------------------------------------------------------------

    def _switch_partner(self, partner_id: str) -> None:
        if self._partner is not None and partner_id < self._partner:
            raise StreamOrderError(
                f"records must come ordered by partner_id (code point order, COLLATE \"C\"): "
                f"{partner_id!r} came after {self._partner!r}"
            )
        self._end_partner()
        self._partners += 1
        self._partner = partner_id
        self._expect_seq = 1
        self._head = GENESIS_HASH
        self._ids = set()
        self._bad = False
        self._last_seq = 0
        self._pending = self._demands.pop(partner_id, [])
        self._pending_pos = 0
        self._next_demand = self._pending[0][0] if self._pending else _NO_DEMAND
        self._last_pinned_seq = 0
        self._checkpoint_reported = False

    def _end_partner(self) -> None:
        if self._partner is None:
            return
        for pinned_seq, pinned_hash, checkpoint_seq in self._pending[self._pending_pos:]:
            self._flag_missing_head(pinned_seq, pinned_hash, checkpoint_seq,
                                    f"the chain ends at seq {self._last_seq}")
        self._pending = []
        self._pending_pos = 0

    def _report_progress(self) -> None:
        self._next_progress += self._progress_every
        if self._progress is not None:
            self._progress(self._records, self._partners)

    def _add(self, partner_id: str | None, seq: int | None, record_id: uuid.UUID | None,
             code: FindingCode, expected: str, found: str, message: str,
             checkpoint_seq: int | None) -> None:
        self.findings.append(Finding(partner_id=partner_id, seq=seq, record_id=record_id,
                                     code=code, expected=expected, found=found,
                                     message=message, checkpoint_seq=checkpoint_seq))


def verify(
    records: Iterable[Record],
    checkpoints: Iterable[Checkpoint],
    *,
    anchors: Iterable[CheckpointAnchor] = (),
    progress: ProgressFn | None = None,
    progress_every: int = 100_000,
) -> VerifyReport:
    verifier = Verifier(checkpoints, anchors=anchors, progress=progress,
                        progress_every=progress_every)
    verifier.feed(records)
    return verifier.finish()


def _id_matches(record: Record, id_int: int) -> bool:
    name = (f"{record.partner_id}:{record.source_event_ids[0]}:{record.program_id or ''}:"
            f"{record.rule_id or ''}:{record.leg}")
    digest = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    return (int.from_bytes(digest[:16]) & _ID_MASK) | _ID_BITS == id_int


def _balanced(record: Record) -> bool:
    postings = record.postings
    if len(postings) == 2:
        first, second = postings
        return first.asset == second.asset and first.amount + second.amount == 0
    return not check_balanced(record)
