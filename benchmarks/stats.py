"""The benchmark's arithmetic and its table: rates, ratios, percentiles, targets (pure).

Every figure is one key of ``bench-results.json``; a figure that could not be measured is
``None`` there and its reason is printed in the table, never a made-up number.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

Value = float | int | None


def rate(count: int, seconds: float) -> float | None:
    """``count`` per second; None when nothing was timed (a zero or negative interval)."""
    if count < 0:
        raise ValueError(f"a count cannot be negative, got {count}")
    return count / seconds if seconds > 0 else None


def ratio(numerator: Value, denominator: Value) -> float | None:
    """``numerator / denominator``; None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile: the smallest value that at least ``q`` % of the values
    do not exceed (p100 is the maximum). ``values`` need not be sorted."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0 < q <= 100:
        raise ValueError(f"a percentile is in (0, 100], got {q}")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def steady_rate(done_at_start: int, started_s: float, total: int, ended_s: float) -> float | None:
    """The rate between two observations of a drain: ``done_at_start`` messages were done at
    ``started_s`` (the first observation, so start-up is left out), all ``total`` at
    ``ended_s``."""
    if not 0 <= done_at_start <= total:
        raise ValueError(f"done at start ({done_at_start}) must be within 0..{total}")
    return rate(total - done_at_start, ended_s - started_s)


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "<": operator.lt, "==": operator.eq,
}


@dataclass(frozen=True, slots=True)
class Target:
    """A figure's target, e.g. ``Target(">=", 20_000)``."""

    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"unknown comparison {self.op!r}; one of {', '.join(_OPS)}")

    def met(self, value: Value) -> bool | None:
        """True or False, or None when there is no value to judge."""
        return None if value is None else _OPS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.op} {format_number(self.bound)}"


@dataclass(frozen=True, slots=True)
class Figure:
    key: str  # the key in bench-results.json, e.g. "engine.messages_per_s"
    label: str  # what the table calls it
    unit: str  # "/s", "ms", "x", "µs", "MiB", "" ...
    value: Value
    target: Target | None = None
    note: str = ""  # how it was measured, or why it was not

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        met = self.target.met(self.value)
        return "n/a" if met is None else ("met" if met else "NOT MET")


@dataclass(slots=True)
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)


def format_number(value: float) -> str:
    """Readable: thousands separators, at most three significant decimals below 10."""
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 10:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:.2f}"


def format_value(figure: Figure) -> str:
    if figure.value is None:
        return "-"
    return f"{format_number(figure.value)} {figure.unit}".rstrip()


_HEADER = ("figure", "value", "target", "verdict", "note")


def render(sections: Iterable[Section], width_max: int = 60) -> str:
    """One table: a line per figure under its section's title."""
    rows: list[tuple[str, ...] | str] = []
    for section in sections:
        rows.append(section.title)
        for f in section.figures:
            target = "" if f.target is None else f"{f.target} {f.unit}".rstrip()
            note = f.note if len(f.note) <= width_max else f.note[: width_max - 1] + "…"
            rows.append(("  " + f.label, format_value(f), target, f.verdict, note))
    cells = [r for r in rows if isinstance(r, tuple)]
    widths = [max(len(c[i]) for c in [_HEADER, *cells]) for i in range(len(_HEADER))]
    lines = [_line(_HEADER, widths), _line(tuple("-" * w for w in widths), widths)]
    for row in rows:
        lines.append(row if isinstance(row, str) else _line(row, widths))
    return "\n".join(lines)


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    label, value, target, verdict, note = cells
    return "  ".join([label.ljust(widths[0]), value.rjust(widths[1]), target.ljust(widths[2]),
                      verdict.ljust(widths[3]), note]).rstrip()


def results_json(sections: Iterable[Section]) -> dict[str, Value]:
    """One key per figure: its value (None when not measured)."""
    return {f.key: f.value for s in sections for f in s.figures}


def verdicts_json(sections: Iterable[Section]) -> dict[str, dict[str, object]]:
    """Per figure with a target: the target and whether it was met (None: not measured)."""
    return {
        f.key: {"target": str(f.target), "met": f.target.met(f.value)}
        for s in sections for f in s.figures if f.target is not None
    }
