"""``./dev.sh bench [--quick] [--only PHASE,...] [--profile]``: the system's speed figures
and their peers', side by side in one run, as one table and ``bench-results.json``.

The run brings up the local stack (``incentives stack up``; the ports come from the usual
``INCENTIVES_*`` variables), makes its own databases and topics, and removes them at the
end, also when it fails or is interrupted. Exit status: 0 every phase measured, 1 some
phase failed (its figures are "-" with the reason), 2 the stack could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import engine, lanes
from benchmarks.figures import SECTIONS
from benchmarks.phases import FULL, PHASES, QUICK, Context, Mode, make_sample
from benchmarks.scratch import Scratch
from benchmarks.stats import Figure, Section, ratio, render, results_json, verdicts_json
from schemas.settings import PROJECT_ROOT, Settings, load_settings

RESULTS = PROJECT_ROOT / "bench-results.json"
PHASE_TIMEOUT_S = 900.0
# Which phase measures a figure, by the key's first word.
_PHASE_OF = {"peers": "peers", "publish": "publish", "engine": "engine", "live": "live",
             "replay": "live", "rebuild": "live", "latency": "latency", "verify": "verify",
             "growth": "growth", "read": "read"}
# Figures computed from others: key -> (numerator, denominator).
_RATIOS = {
    "live.two_over_one": ("live.two_workers.events_per_s", "live.one_worker.events_per_s"),
    "live.even.two_over_one": ("live.even.two_workers.events_per_s",
                               "live.even.one_worker.events_per_s"),
    "live.vs_faust_noop": ("live.two_workers.events_per_s", "peers.faust_noop.messages_per_s"),
    "live.vs_publish": ("live.two_workers.events_per_s", "publish.messages_per_s"),
    "replay.vs_ceiling": ("replay.inputs_per_s", "peers.ceiling.messages_per_s"),
    "verify.vs_raw_read": ("verify.records_per_s", "verify.raw_read.rows_per_s"),
    "growth.large_over_small": ("growth.large.us_per_event", "growth.small.us_per_event"),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./dev.sh bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 3 minutes")
    parser.add_argument("--only", default="", metavar="PHASE,...",
                        help=f"only these phases, of: {', '.join(PHASES)}")
    parser.add_argument("--profile", action="store_true",
                        help="also profile (cProfile) the pure engine and a 1-worker live run")
    parser.add_argument("--partners", type=int, default=None,
                        help="sample partners (default: 300, quick 50)")
    parser.add_argument("--sales", type=int, default=None,
                        help="sample sales (default: 40,000, quick 2,000)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.only.split(","))) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}; phases: {', '.join(PHASES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    mode = QUICK if args.quick else FULL
    mode = dataclasses.replace(mode, partners=args.partners or mode.partners,
                               sales=args.sales or mode.sales)
    selected = [p for p in PHASES if not args.only or p in args.only.split(",")]
    settings = load_settings()
    import stack

    try:
        print("\n".join(stack.up(settings)), flush=True)
    except stack.StackError as exc:
        print(f"bench: the local stack could not start: {exc}", file=sys.stderr)
        return 2
    started, load_before = time.monotonic(), os.getloadavg()
    try:
        ctx = asyncio.run(_bench(settings, mode, selected, args.profile))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; its processes, databases and topics are removed",
              file=sys.stderr)
        return 130
    meta = _meta(mode, ctx, selected, time.monotonic() - started, load_before)
    sections = _sections(ctx, selected)
    for name, path in ctx.profiles.items():
        print(f"\n== profile of the {name} (cProfile, top by cumulative time; {path})")
        print(engine.summary(path))
    print(f"\n{_title(mode, ctx, meta)}\n")
    print(render(sections))
    for error in ctx.errors:
        print(f"\nERROR {error}")
    args.results.write_text(json.dumps({"meta": meta, "figures": results_json(sections),
                                        "verdicts": verdicts_json(sections),
                                        "notes": {f.key: f.note for s in sections
                                                  for f in s.figures if f.note}}, indent=2))
    print(f"\nwrote {args.results}")
    return 1 if ctx.errors else 0


async def _bench(settings: Settings, mode: Mode, selected: list[str], profile: bool) -> Context:
    # SIGTERM (a CI timeout, a supervisor) cancels the run like Ctrl-C does, so the clean-up
    # below still runs.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    folder = Path(settings.stack_dir) / "bench" / "last"
    shutil.rmtree(folder, ignore_errors=True)
    async with Scratch(settings, folder) as scratch:
        sample, path = make_sample(mode, folder)
        ctx = Context(mode, scratch, sample, path)
        print(f"sample: {len(sample):,} messages ({mode.partners:,} partners, {mode.sales:,} "
              f"sales); logs in {folder}", flush=True)
        for name in selected:
            title, phase = PHASES[name]
            print(f"== {title}", flush=True)
            began = time.monotonic()
            try:
                await asyncio.wait_for(phase(ctx), PHASE_TIMEOUT_S)
            except Exception as exc:  # a failed phase must not stop the others
                ctx.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                ctx.notes[f"phase:{name}"] = f"failed: {type(exc).__name__}: " + (
                    str(exc).splitlines() or [""])[0][:120]
                traceback.print_exc()
            finally:
                scratch.stop_children()
            print(f"   ({time.monotonic() - began:.0f} s)", flush=True)
        if profile:
            await _profiles(ctx)
    return ctx


async def _profiles(ctx: Context) -> None:
    print("== profiles", flush=True)
    folder = ctx.scratch.folder
    path = folder / "engine.prof"
    engine.profile_engine(engine.decoded(ctx.sample), engine.example_programs(), path)
    ctx.profiles["pure engine"] = path
    db = await ctx.scratch.database("profile")
    settings = await ctx.scratch.topics(db, "profile")
    worker = folder / "worker.prof"
    run = await lanes.upload_run(ctx.scratch, settings, "profile", ctx.sample_path, 1,
                                 profile=worker)
    print(f"   profiled worker: {run.per_second:,.0f} events/s under cProfile", flush=True)
    if worker.exists():
        ctx.profiles["1-worker live lane's worker (main thread)"] = worker


def _sections(ctx: Context, selected: list[str]) -> list[Section]:
    sizes = {"messages": len(ctx.sample), "latency_per_s": ctx.mode.latency_per_s,
             "verify_records": ctx.mode.verify_records,
             "verify_partners": ctx.mode.verify_partners,
             "growth_small": ctx.mode.growth_small, "growth_large": ctx.mode.growth_large}
    for key, (top, bottom) in _RATIOS.items():
        ctx.values[key] = ratio(ctx.values.get(top), ctx.values.get(bottom))
        if ctx.values[key] is None:
            ctx.notes.setdefault(key, f"needs {top} and {bottom}")
    sections = []
    for title, specs in SECTIONS:
        figures = []
        for spec in specs:
            phase = _PHASE_OF[spec.key.split(".")[0]]
            note = ctx.notes.get(spec.key) or ctx.notes.get(f"phase:{phase}", "")
            if spec.key not in ctx.values and phase not in selected:
                note = f"not run (--only {','.join(selected)})"
            figures.append(Figure(spec.key, spec.label.format(**sizes), spec.unit,
                                  ctx.values.get(spec.key), spec.target, note))
        sections.append(Section(title.format(**sizes), figures))
    return sections


def _meta(mode: Mode, ctx: Context, selected: list[str], seconds: float,
          load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "mode": mode.name, "phases": selected, "finished_at": datetime.now(UTC).isoformat(),
        "seconds": round(seconds, 1), "commit": _commit(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "messages": len(ctx.sample),
        "partners": mode.partners, "sales": mode.sales,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "errors": ctx.errors,
    }


def _title(mode: Mode, ctx: Context, meta: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.2f}" for x in meta["loadavg_before"])
    return (f"bench ({mode.name}): {len(ctx.sample):,} sample messages, {meta['seconds']:.0f} s,"
            f" {meta['cpus']} cores, load average before {load}, commit {meta['commit'][:12]}")


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, text=True,
                              capture_output=True, check=False, timeout=10)
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
