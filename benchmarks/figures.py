"""Every figure the benchmark prints, in table order, with the speed targets beside them.

A key is the figure's name in ``bench-results.json``. Labels may name the mode's sizes
(``{messages}``, ``{verify_records}``, ...), filled in from ``Mode``.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.read_side import FIGURES as READ_SIDE
from benchmarks.stats import Target


@dataclass(frozen=True, slots=True)
class Spec:
    key: str
    label: str
    unit: str
    target: Target | None = None


def _read_side() -> list[Spec]:
    targets = {"read.balance_lookup_p99_ms": Target("<", 10)}
    return [Spec(k, label, unit, targets.get(k)) for k, (label, unit) in READ_SIDE.items()]


SECTIONS: list[tuple[str, list[Spec]]] = [
    ("Peers: drain the {messages:,} sample messages already on the topics", [
        Spec("peers.faust_noop.messages_per_s", "do-nothing faust agent", "/s"),
        Spec("peers.ceiling.messages_per_s", "aiokafka + msgspec + COPY ceiling", "/s"),
        Spec("peers.quixstreams_noop.messages_per_s", "do-nothing quixstreams app", "/s"),
    ]),
    ("Upload: incentives publish of the sample file", [
        Spec("publish.messages_per_s", "incentives publish", "/s"),
    ]),
    ("Pure engine: processors.engine.runner.run over the decoded sample, one core", [
        Spec("engine.messages_per_s", "engine + hash chains", "/s", Target(">=", 20_000)),
    ]),
    ("Live lane: publish to committed ledger (example program, exactly-once)", [
        Spec("live.one_worker.events_per_s", "1 worker", "/s"),
        Spec("live.two_workers.events_per_s", "2 workers (one per core)", "/s",
             Target(">=", 10_000)),
        Spec("live.two_over_one", "2 workers / 1 worker", "x"),
        Spec("live.split_bound", "at most, as the sample's partitions split", "x"),
        Spec("live.even.one_worker.events_per_s", "1 worker, even sample", "/s"),
        Spec("live.even.two_workers.events_per_s", "2 workers, even sample", "/s"),
        Spec("live.even.two_over_one", "2 workers / 1 worker, even sample", "x",
             Target(">=", 1.5)),
        Spec("live.even.split_bound", "at most, as the even sample's partitions split", "x"),
        Spec("live.vs_faust_noop", "2 workers / do-nothing faust", "x", Target(">=", 0.8)),
        Spec("live.vs_publish", "2 workers / incentives publish", "x", Target(">=", 0.6)),
        Spec("live.worker_exits", "workers that exited by themselves", "", Target("==", 0)),
        Spec("live.worker_peak_rss_mib", "worker peak RSS", "MiB"),
    ]),
    ("Latency: publish to visible balance, offered {latency_per_s:,.0f} events/s, 1 worker", [
        Spec("latency.p50_ms", "p50", "ms"),
        Spec("latency.p99_ms", "p99", "ms", Target("<", 500)),
        Spec("latency.max_ms", "max", "ms"),
        Spec("latency.offered_per_s", "rate achieved by the sender", "/s"),
    ]),
    ("Bulk lane: the auditors' replay and rebuild of the 1-worker ledger", [
        Spec("replay.inputs_per_s", "incentives audit replay", "/s", Target(">=", 40_000)),
        Spec("replay.vs_ceiling", "replay / ceiling", "x", Target(">=", 0.5)),
        Spec("rebuild.records_per_s", "incentives projections rebuild", "/s"),
    ]),
    ("Verify: {verify_records:,} records of {verify_partners:,} partners", [
        Spec("verify.records_per_s", "incentives audit verify", "/s", Target(">=", 300_000)),
        Spec("verify.raw_read.rows_per_s", "raw asyncpg cursor read", "/s"),
        Spec("verify.vs_raw_read", "verify / raw read", "x", Target(">=", 0.6)),
        Spec("verify.in_memory.records_per_s", "ledger.verify alone, in memory", "/s"),
    ]),
    ("Growth: 1 worker drains the sample onto a ledger of {growth_small:,} vs "
     "{growth_large:,} records", [
        Spec("growth.small.us_per_event", "per event at {growth_small:,} records", "µs"),
        Spec("growth.large.us_per_event", "per event at {growth_large:,} records", "µs"),
        Spec("growth.large_over_small", "large / small", "x", Target("<=", 1.2)),
        Spec("growth.worker_peak_rss_mib", "worker peak RSS", "MiB"),
    ]),
    ("Read side: the finance API", _read_side()),
]


def all_keys() -> list[str]:
    return [spec.key for _, specs in SECTIONS for spec in specs]
