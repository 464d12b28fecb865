"""Checkpoints: one hash over the heads of every partner's chain.

A chain's hash links each record to the one before it, so a chain alone cannot show that its
tail, or the whole chain, was removed, nor that it was rewritten with recomputed hashes. A
checkpoint pins the head (seq and hash) of every partner at one moment. The verifier then
demands that every partner named in a checkpoint still has a record at that seq with that
hash: a shortened chain, a missing partner and a forged history before the checkpoint all fail
that demand. Checkpoints are chained to each other too (each one hashes the previous root),
so removing or editing an old checkpoint breaks every later one. The newest root is worth
publishing outside the database (a statement, an email to the auditor): that is what makes
rewriting the database together with all its checkpoints detectable.

Flat hash rather than a Merkle root: the checkpoint row stores every head anyway and the
verifier always reads all of them, so a Merkle tree would buy only inclusion proofs for a
single partner, which nothing asks for yet. A flat hash is one line for an auditor to
reimplement. A later format can add a Merkle root beside it.

The hashed encoding: ``root = sha256(prev_root || bytes)`` where ``bytes`` is the UTF-8 JSON
text, without whitespace, of::

    ["incentives-ledger-checkpoint/1", checkpoint_seq, taken_at_us, prev_root_hex,
     partner_count, [[partner_id, head_seq, head_hash_hex], ...]]

with the heads sorted by partner id in code point order (PostgreSQL ``COLLATE "C"``), hashes
as 64 lowercase hex digits, ``taken_at_us`` in integer microseconds since the Unix epoch, and
``prev_root`` = ``GENESIS_ROOT`` (32 zero bytes) for checkpoint 1. Strings follow the same JSON
rules as records (see ledger.core).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

import msgspec

from ledger.core import HASH_SIZE, ChainHead, Problem, epoch_us

CHECKPOINT_FORMAT = "incentives-ledger-checkpoint/1"
GENESIS_ROOT = bytes(HASH_SIZE)

_ENCODER = msgspec.json.Encoder()


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    checkpoint_seq: int  # 1, 2, 3, ... without gaps; also the checkpoint's id
    taken_at: datetime
    prev_root: bytes
    partner_count: int
    heads: tuple[ChainHead, ...]  # sorted by partner_id, one per partner with records
    root: bytes


def checkpoint_bytes(checkpoint: Checkpoint) -> bytes:
    """Every field but `root`, in the encoding described in the module doc."""
    return _ENCODER.encode(
        (
            CHECKPOINT_FORMAT,
            checkpoint.checkpoint_seq,
            epoch_us(checkpoint.taken_at),
            checkpoint.prev_root.hex(),
            checkpoint.partner_count,
            [(head.partner_id, head.seq, head.hash.hex()) for head in checkpoint.heads],
        )
    )


def checkpoint_root(checkpoint: Checkpoint) -> bytes:
    return hashlib.sha256(checkpoint.prev_root + checkpoint_bytes(checkpoint)).digest()


def take_checkpoint(
    heads: Iterable[ChainHead], *, previous: Checkpoint | None, taken_at: datetime
) -> Checkpoint:
    """The checkpoint after `previous` (None for the first) over the given chain heads.

    The caller reads the heads in one snapshot (partner_state in one transaction). Empty
    chains (seq 0) are left out: a partner is in the ledger once it has a record.
    """
    assert taken_at.utcoffset() is not None, "taken_at must be time-zone aware"
    ordered = sorted((head for head in heads if head.seq > 0), key=lambda h: h.partner_id)
    for before, after in zip(ordered, ordered[1:], strict=False):
        assert before.partner_id != after.partner_id, f"two heads for {after.partner_id!r}"
    for head in ordered:
        assert len(head.hash) == HASH_SIZE, f"head hash of {head.partner_id!r} is not 32 bytes"
    unrooted = Checkpoint(
        checkpoint_seq=1 if previous is None else previous.checkpoint_seq + 1,
        taken_at=taken_at,
        prev_root=GENESIS_ROOT if previous is None else previous.root,
        partner_count=len(ordered),
        heads=tuple(ordered),
        root=b"",
    )
    return msgspec.structs.replace(unrooted, root=checkpoint_root(unrooted))


def check_checkpoint(checkpoint: Checkpoint, previous: Checkpoint | None) -> list[Problem]:
    """Problems of one checkpoint on its own and against the one before it.

    `previous` is None for the first checkpoint of the ledger. Whether the heads match the
    chains is the verifier's job: it needs the records.
    """
    problems = _check_shape(checkpoint)
    root = checkpoint_root(checkpoint)
    if root != checkpoint.root:
        problems.append(Problem("checkpoint_root_mismatch", "root", root.hex(),
                                checkpoint.root.hex()))
    expected_seq = 1 if previous is None else previous.checkpoint_seq + 1
    if checkpoint.checkpoint_seq != expected_seq:
        problems.append(Problem("checkpoint_seq_gap", "checkpoint_seq", str(expected_seq),
                                str(checkpoint.checkpoint_seq)))
    expected_prev = GENESIS_ROOT if previous is None else previous.root
    if checkpoint.prev_root != expected_prev:
        problems.append(Problem("checkpoint_link_mismatch", "prev_root", expected_prev.hex(),
                                checkpoint.prev_root.hex()))
    if previous is not None:
        if checkpoint.taken_at < previous.taken_at:
            problems.append(Problem("checkpoint_time_regressed", "taken_at",
                                    f">= {previous.taken_at.isoformat()}",
                                    checkpoint.taken_at.isoformat()))
        problems.extend(_check_progress(previous, checkpoint))
    return problems


def _check_shape(checkpoint: Checkpoint) -> list[Problem]:
    problems: list[Problem] = []
    heads = checkpoint.heads
    if checkpoint.partner_count != len(heads):
        problems.append(Problem("checkpoint_malformed", "partner_count", str(len(heads)),
                                str(checkpoint.partner_count)))
    for index, head in enumerate(heads):
        if index and heads[index - 1].partner_id >= head.partner_id:
            problems.append(Problem("checkpoint_malformed", f"heads[{index}].partner_id",
                                    f"> {heads[index - 1].partner_id!r}", repr(head.partner_id)))
        if head.seq < 1 or len(head.hash) != HASH_SIZE:
            problems.append(Problem("checkpoint_malformed", f"heads[{index}]",
                                    "seq >= 1 and a 32-byte hash",
                                    f"seq {head.seq}, {len(head.hash)} bytes"))
    return problems


def _check_progress(previous: Checkpoint, current: Checkpoint) -> list[Problem]:
    """Heads only move forward: every partner stays, and an unmoved head keeps its hash."""
    problems: list[Problem] = []
    now = {head.partner_id: head for head in current.heads}
    for head in previous.heads:
        later = now.get(head.partner_id)
        path = f"heads[partner={head.partner_id}]"
        if later is None:
            problems.append(Problem("checkpoint_head_dropped", path,
                                    f"a head at seq >= {head.seq}", "no head"))
        elif later.seq < head.seq or (later.seq == head.seq and later.hash != head.hash):
            problems.append(Problem("checkpoint_head_regressed", path,
                                    f"seq >= {head.seq} (hash {head.hash.hex()} if equal)",
                                    f"seq {later.seq}, hash {later.hash.hex()}"))
    return problems
