"""The benchmark's phases. Each measures some figures (``Context.put``) on the run's own
databases and topics; a phase that fails leaves its figures unmeasured, with the reason,
and the others still run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from benchmarks import audits, engine, lanes, latency, ledger_fill
from benchmarks.read_side import FIGURES as READ_SIDE
from benchmarks.read_side import FULL as READ_FULL
from benchmarks.read_side import QUICK as READ_QUICK
from benchmarks.read_side import measure_read_side
from benchmarks.scratch import BenchError, Scratch, stop
from benchmarks.stats import Value, percentile, steady_rate
from incentives.sample_data import generate
from schemas.settings import Settings
from stack.postgres import admin_dsn

PEER_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    partners: int
    sales: int
    latency_per_s: float
    latency_seconds: float
    verify_records: int
    verify_partners: int
    growth_small: int

    @property
    def growth_large(self) -> int:
        return self.verify_records


# The full run's sample is the one the speed targets were set on (56,303 messages); the
# quick one is twenty times smaller.
FULL = Mode("full", partners=300, sales=40_000, latency_per_s=1_000, latency_seconds=30,
            verify_records=1_000_000, verify_partners=1_000, growth_small=100_000)
QUICK = Mode("quick", partners=50, sales=2_000, latency_per_s=500, latency_seconds=5,
             verify_records=100_000, verify_partners=1_000, growth_small=10_000)


@dataclass(slots=True)
class Context:
    mode: Mode
    scratch: Scratch
    sample: list[dict[str, Any]]
    sample_path: Path
    values: dict[str, Value] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    profiles: dict[str, Path] = field(default_factory=dict)
    peer_topics: Settings | None = None  # the sample on topics no worker has read
    verify_db: Settings | None = None  # the filled ledger verify measured

    def put(self, key: str, value: Value, note: str = "") -> None:
        self.values[key] = value
        if note:
            self.notes[key] = note

    @property
    def settings(self) -> Settings:
        return self.scratch.settings


def make_sample(mode: Mode, folder: Path, *, even: bool = False,
                ) -> tuple[list[dict[str, Any]], Path]:
    sample = generate(partners=mode.partners, sales=mode.sales, even=even)
    path = folder / ("sample-even.jsonl" if even else "sample.jsonl")
    path.write_bytes(b"".join(msgspec.json.encode(m) + b"\n" for m in sample))
    return sample, path


async def publish_phase(ctx: Context) -> None:
    """The sample into topics no one has read yet: the peers and the growth runs drain them."""
    db = await ctx.scratch.database("peers")
    topics = await ctx.scratch.topics(db, "peers")
    published = await lanes.publish(ctx.scratch, topics, ctx.sample_path)
    ctx.peer_topics = topics
    ctx.put("publish.messages_per_s", published.per_second,
            f"{published.sent:,} messages in {published.seconds:.2f} s")


async def _peers_topics(ctx: Context) -> Settings:
    if ctx.peer_topics is None:
        await publish_phase(ctx)
    assert ctx.peer_topics is not None
    return ctx.peer_topics


async def peers_phase(ctx: Context) -> None:
    topics = await _peers_topics(ctx)
    for peer, key in (("ceiling", "peers.ceiling.messages_per_s"),
                      ("faust", "peers.faust_noop.messages_per_s"),
                      ("quix", "peers.quixstreams_noop.messages_per_s")):
        if peer == "quix" and importlib.util.find_spec("quixstreams") is None:
            ctx.put(key, None, "not measured: quixstreams is not installed (the bench extra)")
            print("   quixstreams: not installed (pip install -e '.[bench]'); skipped")
            continue
        try:
            rate, note = await _peer(ctx, topics, peer)
        except BenchError as exc:
            ctx.put(key, None, f"failed: {str(exc).splitlines()[0]}")
            ctx.errors.append(f"peer {peer}: {exc}")
            continue
        ctx.put(key, rate, note)
        print(f"   {peer}: {rate:,.0f}/s ({note})", flush=True)


async def _peer(ctx: Context, topics: Settings, peer: str) -> tuple[float | None, str]:
    import asyncio

    folder = ctx.scratch.folder
    result = folder / f"peer-{peer}.json"
    env = ctx.scratch.env(topics, INCENTIVES_CONSUMER_GROUP=f"{topics.consumer_group}-{peer}")
    child = ctx.scratch.spawn(
        ["-m", "benchmarks.peers", peer, "--expect", str(len(ctx.sample)),
         "--result", str(result)], folder / f"peer-{peer}.log", env)
    try:
        await asyncio.to_thread(child.wait, PEER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass  # stopped below; no result file says it did not finish
    status = stop(child)
    if not result.exists():
        log = (folder / f"peer-{peer}.log").read_text(errors="replace")[-1500:]
        raise BenchError(f"the {peer} peer exited {status} without a result:\n{log}")
    found = json.loads(result.read_text())
    rate = steady_rate(found["first_done"], 0.0, found["messages"], found["seconds"])
    return rate, f"{found['messages'] - found['first_done']:,} messages in {found['seconds']:.2f} s"


async def engine_phase(ctx: Context) -> None:
    inputs = engine.decoded(ctx.sample)
    run = engine.time_engine(inputs, engine.example_programs())
    ctx.put("engine.messages_per_s", run.per_second,
            f"{run.messages:,} messages -> {run.records:,} records in {run.seconds:.1f} s")


async def live_phase(ctx: Context) -> None:
    """1 and 2 workers on the sample, then on its even variant (``generate(even=True)``).

    The sample's largest partner makes about a third of its sales, and a partner is never
    split between workers, so the worker holding it bounds what a second worker can add
    (``live.split_bound``); the even sample, whose partitions carry the same traffic,
    measures the scale-out itself (``live.even.two_over_one``)."""
    _, even_path = make_sample(ctx.mode, ctx.scratch.folder, even=True)
    runs = []
    for sample, path in (("", ctx.sample_path), ("even.", even_path)):
        for workers, key in ((1, "one_worker"), (2, "two_workers")):
            name = f"live{workers}{sample.rstrip('.')}"
            db = await ctx.scratch.database(name)
            settings = await ctx.scratch.topics(db, name)
            run = await lanes.upload_run(ctx.scratch, settings, name, path, workers)
            rate = run.per_second
            ctx.put(f"live.{sample}{key}.events_per_s", rate,
                    f"{run.events:,} events in {run.seconds:.1f} s, {run.records:,} records; "
                    f"{run.reconcile}")
            print(f"   {workers} worker(s){' (even sample)' if sample else ''}: {rate:,.0f} "
                  f"events/s; {run.reconcile}"
                  + "".join(f"\n   EXITED: {e}" for e in run.exits), flush=True)
            runs.append(run)
            if workers == 2:
                ctx.put(f"live.{sample}split_bound", 1 / run.busiest_share,
                        f"the busiest of the 2 workers consumed {run.busiest_share:.0%} of "
                        "the messages")
            if workers == 1 and not sample:
                await _bulk(ctx, settings, run.records)
            await ctx.scratch.drop(settings)
    exits = [e for r in runs for e in r.exits]
    ctx.put("live.worker_exits", len(exits), "; ".join(exits)[:200])
    ctx.put("live.worker_peak_rss_mib", max(r.peak_rss_mib for r in runs), "largest of the runs")


async def _bulk(ctx: Context, settings: Settings, records: int) -> None:
    replay = await audits.replay(ctx.scratch, settings)
    ctx.put("replay.inputs_per_s", replay.per_second,
            f"{replay.count:,} inputs in {replay.seconds:.1f} s (wall {replay.wall_s:.1f} s)")
    rebuild = await audits.rebuild(ctx.scratch, settings, records)
    ctx.put("rebuild.records_per_s", rebuild.per_second,
            f"{records:,} records, wall time {rebuild.wall_s:.1f} s")


async def latency_phase(ctx: Context) -> None:
    mode = ctx.mode
    registrations = [m for m in ctx.sample if m["type"] == "PartnerRegistered"]
    rest = [m for m in ctx.sample if m["type"] != "PartnerRegistered"]
    events = rest[: int(mode.latency_per_s * mode.latency_seconds)]
    db = await ctx.scratch.database("latency")
    settings = await ctx.scratch.topics(db, "latency")
    run = await latency.latency_run(ctx.scratch, settings, registrations, events,
                                    mode.latency_per_s)
    await ctx.scratch.drop(settings)
    if not run.latencies_ms:
        raise BenchError("no event became visible")
    note = (f"{len(run.latencies_ms):,} events ({run.with_record:,} by their record)"
            + (f", {run.missing:,} never seen" if run.missing else ""))
    ctx.put("latency.p50_ms", percentile(run.latencies_ms, 50), note)
    ctx.put("latency.p99_ms", percentile(run.latencies_ms, 99))
    ctx.put("latency.max_ms", max(run.latencies_ms) if not run.missing else None,
            "" if not run.missing else "some events were never seen")
    ctx.put("latency.offered_per_s", run.achieved_per_s,
            f"{run.sent:,} sent in {run.sending_seconds:.1f} s")
    for exit_ in run.exits:
        ctx.errors.append(f"latency: {exit_}")


async def _filled(ctx: Context, name: str, records: int) -> Settings:
    db = await ctx.scratch.database(name)
    print(f"   filling a ledger of {records:,} records ...", flush=True)
    # The synthetic ledger is set-up, like a test's fixtures: written as the superuser.
    superuser = admin_dsn(db, db.pg_database)
    report = await _in_thread(ledger_fill.fill, superuser, records, ctx.mode.verify_partners)
    await ledger_fill.finish(superuser)
    print(f"   filled in {report.seconds:.1f} s ({report.per_second:,.0f} records/s)",
          flush=True)
    return db


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(fn, *args)


async def verify_phase(ctx: Context) -> None:
    mode = ctx.mode
    db = await _filled(ctx, "verify", mode.verify_records)
    ctx.verify_db = db
    cli = await audits.verify_cli(ctx.scratch, db)
    ctx.put("verify.records_per_s", cli.per_second,
            f"{cli.count:,} records, wall {cli.wall_s:.1f} s")
    raw = await audits.raw_read(ctx.scratch, db)
    ctx.put("verify.raw_read.rows_per_s", raw.per_second, f"in {raw.seconds:.1f} s")
    memory = await audits.verify_in_memory(ctx.scratch, db, min(mode.verify_records, 100_000),
                                           mode.verify_partners)
    ctx.put("verify.in_memory.records_per_s", memory.per_second, f"{memory.count:,} records")


async def growth_phase(ctx: Context) -> None:
    topics = await _peers_topics(ctx)
    mode, runs = ctx.mode, []
    for size, db in ((mode.growth_small, None), (mode.growth_large, ctx.verify_db)):
        ledger = db or await _filled(ctx, f"growth{size}", size)
        settings = msgspec.structs.replace(
            topics, pg_database=ledger.pg_database,
            consumer_group=f"{topics.consumer_group}-growth{size}")
        await lanes.publish_program(settings)
        run = await lanes.drain_run(ctx.scratch, settings, f"growth{size}")
        print(f"   {size:,} records: {run.us_per_event:,.0f} µs/event "
              f"({run.events:,} events in {run.seconds:.1f} s)", flush=True)
        runs.append(run)
        ctx.errors.extend(f"growth: {e}" for e in run.exits)
        await ctx.scratch.drop(ledger)
    ctx.verify_db = None
    small, large = runs
    ctx.put("growth.small.us_per_event", small.us_per_event,
            f"{small.events:,} events in {small.seconds:.1f} s")
    ctx.put("growth.large.us_per_event", large.us_per_event,
            f"{large.events:,} events in {large.seconds:.1f} s")
    ctx.put("growth.worker_peak_rss_mib", max(r.peak_rss_mib for r in runs), "at the larger")


async def read_phase(ctx: Context) -> None:
    sizes = READ_FULL if ctx.mode.name == "full" else READ_QUICK
    found = await measure_read_side(ctx.scratch, sizes)
    for key in READ_SIDE:
        ctx.put(key, found[key], f"{sizes.partners:,} partners, {sizes.records:,} records")


Phase = Callable[[Context], Awaitable[None]]
PHASES: dict[str, tuple[str, Phase]] = {
    "publish": ("incentives publish", publish_phase),
    "peers": ("peers: faust, ceiling, quixstreams", peers_phase),
    "engine": ("pure engine", engine_phase),
    "live": ("live lane: 1 and 2 workers, on the sample and on its even variant; replay and"
             " rebuild", live_phase),
    "latency": ("latency at a fixed offered rate", latency_phase),
    "verify": ("verify", verify_phase),
    "growth": ("growth", growth_phase),
    "read": ("read side", read_phase),
}
