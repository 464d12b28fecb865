"""Checkpoint anchors held outside the database: the ``checkpoints`` topic and files.

A superuser of PostgreSQL can rewrite the ledger together with every checkpoint, or delete
the newest checkpoint and rewrite what followed the one before; the chain of checkpoints
alone cannot show either (``ledger.checkpoint``). So every checkpoint is also published,
as a ``CheckpointAnchor`` (seq, time, previous root, root), to the ``checkpoints`` topic,
which keeps its messages forever (``retention.ms=-1``) and which the database's
superuser cannot rewrite; and ``audit checkpoint --export FILE`` appends it, one JSON line,
to a file the auditor keeps elsewhere. ``audit verify --against topic|FILE`` reads them
back.

Publishing is idempotent and catches up: every stored checkpoint that is not on the topic
yet is sent, in order, so a checkpoint whose publication failed (Kafka away) goes out
with the next ``audit checkpoint``. All anchors go to one partition (one key), in order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ledger.checkpoint import Checkpoint, CheckpointAnchor, anchor_of
from processors.worker.kafka_offsets import end_offsets
from schemas.settings import Settings

CHECKPOINTS = "checkpoints"
KEY = b"checkpoint"

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(CheckpointAnchor)


class AnchorError(Exception):
    """Anchors that cannot be read; the message says where and why."""


async def read_topic(settings: Settings) -> list[CheckpointAnchor]:
    """Every anchor on the ``checkpoints`` topic, in checkpoint_seq order."""
    topic = settings.topic(CHECKPOINTS)
    ends = {tp: end for tp, end in (await end_offsets(settings, [topic], "auditor")).items()
            if end > 0}  # fmt: skip
    if not ends:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
        **settings.kafka_auth("auditor"),
    )
    await consumer.start()
    found: list[CheckpointAnchor] = []
    try:
        parts = [TopicPartition(t, p) for t, p in ends]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        for tp in parts:
            while await consumer.position(tp) < ends[(tp.topic, tp.partition)]:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    found.append(_decode(record.value, f"{topic}/{tp.partition}@{record.offset}"))
    finally:
        await consumer.stop()
    return sorted(found, key=lambda a: a.checkpoint_seq)


async def publish(settings: Settings, checkpoints: Sequence[Checkpoint]) -> list[int]:
    """Send the anchors of ``checkpoints`` not on the topic yet; return their seqs. The
    topic is made with the others (`incentives stack up` or `incentives init`); the auditor
    principal may write it but not create topics."""
    on_topic = {a.checkpoint_seq for a in await read_topic(settings)}
    missing = [c for c in checkpoints if c.checkpoint_seq not in on_topic]
    if not missing:
        return []
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=True,
        **settings.kafka_auth("auditor"),
    )
    await producer.start()
    try:
        for checkpoint in missing:
            value = _ENCODER.encode(anchor_of(checkpoint))
            await producer.send_and_wait(settings.topic(CHECKPOINTS), value, key=KEY)
    finally:
        await producer.stop()
    return [c.checkpoint_seq for c in missing]


def append_file(path: Path, anchors: Iterable[CheckpointAnchor]) -> None:
    """Append one JSON line per anchor, and make it durable before returning."""
    with open(path, "ab") as out:
        for anchor in anchors:
            out.write(_ENCODER.encode(anchor) + b"\n")
        out.flush()
        os.fsync(out.fileno())


def read_file(path: Path) -> list[CheckpointAnchor]:
    """The anchors of a file ``append_file`` wrote (blank lines are skipped)."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise AnchorError(f"cannot read checkpoint anchors from {path}: {exc}") from exc
    anchors = [_decode(line, f"{path}:{n}") for n, line in enumerate(lines, 1) if line.strip()]
    return sorted(anchors, key=lambda a: a.checkpoint_seq)


def _decode(raw: bytes | None, where: str) -> CheckpointAnchor:
    try:
        return _DECODER.decode(raw or b"")
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise AnchorError(f"{where}: not a checkpoint anchor: {exc}") from exc
