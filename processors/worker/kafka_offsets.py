"""What Kafka holds: the end offset of every partition of some topics, asked as one of the
system's principals (describing a topic needs a right on it: the auditor may on every
topic, the worker on those it reads)."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.settings import Principal, Settings


async def partitions(
    settings: Settings, principal: Principal, topics: Iterable[str]
) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap, **settings.kafka_auth(principal)
    )
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return sorted(
        TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
    )


async def end_offsets(
    settings: Settings, topics: Iterable[str], principal: Principal = "auditor"
) -> dict[tuple[str, int], int]:
    parts = await partitions(settings, principal, topics)
    if not parts:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        enable_auto_commit=False,
        **settings.kafka_auth(principal),
    )
    await consumer.start()
    try:
        found = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): offset for tp, offset in found.items()}
