"""Building blocks of the semantic checks of programs: findings and the common checks.

``schemas.program_checks`` and ``schemas.program_checks_goals`` both use them; each finding
carries the path of the bad value and says what was expected and what came.
"""

import difflib
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from schemas.programs import Program


class Finding(NamedTuple):
    path: str
    message: str


Findings = list[Finding]


def duplicates(values: Sequence[object], path: str, what: str, field: str = "") -> Findings:
    """Repeated values in a list; ``field`` names the key inside each item (``.id``)."""
    seen: dict[object, int] = {}
    found: Findings = []
    for i, value in enumerate(values):
        shown = "(" + ", ".join(map(str, value)) + ")" if isinstance(value, tuple) else value
        if value in seen:
            found.append(
                Finding(
                    f"{path}[{i}]{field}",
                    f"duplicate {what} '{shown}': expected each once, "
                    f"first at {path}[{seen[value]}]{field}",
                )
            )
        else:
            seen[value] = i
    return found


def unknown_one(value: str, known: Iterable[str], path: str, what: str) -> Findings:
    known_sorted = sorted(set(known))
    if value in known_sorted:
        return []
    if not known_sorted:
        return [Finding(path, f"unknown {what} '{value}': the program declares none")]
    close = difflib.get_close_matches(value, known_sorted, n=1, cutoff=0.7)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    choices = ", ".join(known_sorted)
    return [Finding(path, f"unknown {what} '{value}': expected one of: {choices}{hint}")]


def unknown(values: Sequence[str], known: Iterable[str], path: str, what: str) -> Findings:
    known_set = frozenset(known)
    found: Findings = []
    for i, value in enumerate(values):
        found += unknown_one(value, known_set, f"{path}[{i}]", what)
    return found


def exactly_one(path: str, names: tuple[str, str], values: tuple[object, object]) -> Findings:
    given = [n for n, v in zip(names, values, strict=True) if v is not None]
    if len(given) == 1:
        return []
    got = "both" if given else "neither"
    return [Finding(path, f"expected exactly one of {names[0]} and {names[1]}, got {got}")]


def non_increasing(amounts: Sequence[int], path: str) -> Findings:
    return [
        Finding(
            f"{path}[{i}]",
            f"a lower rank pays more than the rank above: expected at most "
            f"{amounts[i - 1]} ({path.rsplit('.', 1)[-1]}[{i - 1}]), got {amounts[i]}",
        )
        for i in range(1, len(amounts))
        if amounts[i] > amounts[i - 1]
    ]


def check_bands(
    bands: Sequence[tuple[int, int | None]], path: str, low: str, high: str
) -> Findings:
    """Bands must be ascending, non-empty, contiguous, and open-ended only at the end.

    Contiguity is required, not only the absence of overlap: a gap would leave volumes that
    belong to no band, and a marginal rebate would have no rate for them.
    """
    found: Findings = []
    for i, (at_least, below) in enumerate(bands):
        here = f"{path}[{i}]"
        if below is not None and below <= at_least:
            found.append(
                Finding(
                    f"{here}.{high}",
                    f"empty band: expected {high} > {low} ({at_least}), got {below}",
                )
            )
        if below is None and i < len(bands) - 1:
            found.append(
                Finding(f"{here}.{high}", f"only the last band may be open-ended: expected {high}")
            )
        if i == 0:
            continue
        prev_at_least, prev_below = bands[i - 1]
        if at_least < prev_at_least:
            found.append(
                Finding(
                    f"{here}.{low}",
                    f"bands out of order: expected {low} >= {prev_at_least} "
                    f"({path.rsplit('.', 1)[-1]}[{i - 1}].{low}), got {at_least}",
                )
            )
        elif prev_below is not None and at_least != prev_below:
            trouble = "overlaps" if at_least < prev_below else "leaves a gap after"
            found.append(
                Finding(
                    f"{here}.{low}",
                    f"{trouble} the previous band: expected {low} == {prev_below} "
                    f"({path.rsplit('.', 1)[-1]}[{i - 1}].{high}), got {at_least}",
                )
            )
    return found


def known_category(category: str, program: Program, path: str) -> Findings:
    """A category must be among the program's, unless the program lists none (any goes)."""
    if not program.categories:
        return []
    return unknown_one(category, program.categories, path, "category")


def known_categories(categories: Sequence[str], program: Program, path: str) -> Findings:
    if not program.categories:
        return []
    return unknown(categories, program.categories, path, "category")


