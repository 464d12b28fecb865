"""The pure engine: ``processors.engine.runner.run`` over the decoded sample, on one core.

The sample is decoded and validated first (as the worker's boundary does), and not timed;
then one call of the runner takes every message in order, with the example program, from
empty books: program rules, hold releases, hash chains. Nothing else runs in the process
meanwhile, so the figure is one core's.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.scratch import BenchError
from processors.engine import CompiledProgram, compile_program
from processors.engine.runner import Books, run
from schemas.codec import Limits, Rejection, decode
from schemas.program_loader import load_program
from schemas.settings import PROJECT_ROOT
from schemas.streams import MESSAGE_TYPES, Message, stream_of

EXAMPLE = PROJECT_ROOT / "programs" / "example-channel-2026.yaml"
PROFILE_LINES = 30


@dataclass(frozen=True, slots=True)
class EngineRun:
    messages: int
    records: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def decoded(raw: list[dict[str, Any]]) -> list[Message]:
    now, limits = datetime.now(UTC), Limits()
    out: list[Message] = []
    for n, message in enumerate(raw):
        stream = stream_of(MESSAGE_TYPES[message["type"]])
        result = decode(stream, msgspec.json.encode(message), now=now, limits=limits)
        if isinstance(result, Rejection):
            raise BenchError(f"sample message {n} is rejected: {result}")
        out.append(result)
    return out


def example_programs() -> list[CompiledProgram]:
    return [compile_program(load_program(EXAMPLE).program)]


def time_engine(inputs: list[Message], programs: list[CompiledProgram]) -> EngineRun:
    started = time.perf_counter()
    outcome = run(inputs, Books(), programs)
    seconds = time.perf_counter() - started
    return EngineRun(len(inputs), len(outcome.records), seconds)


def profile_engine(inputs: list[Message], programs: list[CompiledProgram], out: Path) -> str:
    """The same run under cProfile; the stats go to ``out`` and the top cumulative costs
    are returned as text."""
    profiler = cProfile.Profile()
    profiler.enable()
    run(inputs, Books(), programs)
    profiler.disable()
    profiler.dump_stats(out)
    return summary(out)


def summary(stats_file: Path, lines: int = PROFILE_LINES) -> str:
    """Two views of a cProfile stats file: the project's own functions by cumulative time
    (where the time goes, top down), and every function by its own time (the hot leaves,
    libraries included)."""
    text = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=text)
    text.write("-- the project's functions, by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(_OURS, lines)
    text.write("-- every function, by own time\n")
    stats.sort_stats("tottime").print_stats(lines)
    return _short_paths(text.getvalue())


# Functions of the project's own packages (pstats filters on "path:line(function)").
_OURS = r"/(processors|ledger|projections|schemas)/"


def _short_paths(text: str) -> str:
    """Paths relative to the project, site-packages or the standard library, so that the
    lines stay readable."""
    root = str(PROJECT_ROOT) + "/"
    return "\n".join(_LIBRARY.sub("", line).replace(root, "") for line in text.splitlines())


_LIBRARY = re.compile(r"/\S*/site-packages/|/\S*/lib/python3\.\d+/")
