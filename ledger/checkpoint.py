"""Checkpoints: one hash over the heads of every partner's chain.

A chain's hash links each record to the one before it, so a chain alone cannot show that its
tail, or the whole chain, was removed, nor that it was rewritten with recomputed hashes. A
checkpoint pins the head (seq and hash) of every partner at one moment. The verifier then
demands that every partner named in a checkpoint still has a record at that seq with that
hash: a shortened chain, a missing partner and a forged history before the checkpoint all fail
that demand. Checkpoints are chained to each other too (each one hashes the previous root),
so removing or editing an old checkpoint breaks every later one. What the chain cannot
show is that its newest links were removed (the newest checkpoint deleted, and the ledger
after the one before rewritten), or that the database was rewritten together with every
checkpoint. So each checkpoint is also written outside the database, as an *anchor*
(``CheckpointAnchor``: its seq, time, previous root and root, without the heads, which the
root commits to): to a Kafka topic and, on request, a file the auditor keeps. ``check_anchors``
demands that the database still holds every anchored checkpoint, unchanged.

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
ANCHOR_FORMAT = "incentives-ledger-checkpoint-anchor/1"
GENESIS_ROOT = bytes(HASH_SIZE)

_ENCODER = msgspec.json.Encoder()


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    checkpoint_seq: int  # 1, 2, 3, ... without gaps; also the checkpoint's id
    taken_at: datetime
    prev_root: bytes
    partner_count: int
    heads: tuple[ChainHead, ...]  # sorted by partner_id, one per partner with records
    root: bytes


class CheckpointAnchor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A checkpoint as held outside the database: one JSON object, hashes in hex."""

    format: str = ANCHOR_FORMAT
    checkpoint_seq: int
    taken_at: datetime
    partner_count: int
    prev_root: str
    root: str


def anchor_of(checkpoint: Checkpoint) -> CheckpointAnchor:
    return CheckpointAnchor(
        checkpoint_seq=checkpoint.checkpoint_seq,
        taken_at=checkpoint.taken_at,
        partner_count=checkpoint.partner_count,
        prev_root=checkpoint.prev_root.hex(),
        root=checkpoint.root.hex(),
    )


def check_anchors(
    checkpoints: Iterable[Checkpoint], anchors: Iterable[CheckpointAnchor]
) -> list[tuple[int, Problem]]:
    """Problems of the stored checkpoints against anchors held outside the database: an
    anchored checkpoint that is gone (``checkpoint_missing``) or differs from its anchor
    (``checkpoint_anchor_mismatch``), each with the anchor's checkpoint_seq. Checkpoints
    newer than every anchor are not problems: they were not exported yet."""
    stored = {c.checkpoint_seq: anchor_of(c) for c in checkpoints}
    problems: list[tuple[int, Problem]] = []
    for anchor in sorted(set(anchors), key=lambda a: a.checkpoint_seq):
        path = f"checkpoint {anchor.checkpoint_seq}"
        have = stored.get(anchor.checkpoint_seq)
        seq = anchor.checkpoint_seq
        if have is None:
            problems.append((seq, Problem("checkpoint_missing", path, f"root {anchor.root}",
                                          "no such checkpoint in the database")))
        elif have != msgspec.structs.replace(anchor, format=ANCHOR_FORMAT):
            problems.append((seq, Problem("checkpoint_anchor_mismatch", path, _shown(anchor),
                                          _shown(have))))
    return problems


def _shown(anchor: CheckpointAnchor) -> str:
    return (f"root {anchor.root}, prev_root {anchor.prev_root}, taken at "
            f"{anchor.taken_at.isoformat()}, {anchor.partner_count} partners")


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
