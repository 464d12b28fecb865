"""The read side's figures: the finance API's balance lookups and statement rendering.

There is no finance API yet, so nothing is measured and the table says so; no number is
made up. The change that builds the API fills in ``measure_read_side``: it gets the run's
``Scratch`` (its own databases and child processes, cleaned up afterwards), the mode's
sizes, and returns the figures below. The target (p99 under 10 ms at an offered 1,000
requests/s, at 100,000 partners and a few million records) is already in the table.

A sketch of what it should do: make a database (``scratch.database``), fill it
(``benchmarks.ledger_fill.fill`` with ``ReadSideSizes.partners`` and ``.records``, then
rebuild the projections), start ``incentives api`` with ``scratch.spawn``, create an API
key, then offer balance lookups of random partners at ``lookup_rate_per_s`` for
``lookup_seconds`` (a bounded loop on loopback) and time each response; and render the
statement of the busiest partner a few times.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.scratch import Scratch

NOT_MEASURED = "not measured: no finance API yet"

# The keys measure_read_side returns (bench-results.json keys), with the table's labels.
FIGURES = {
    "read.balance_lookups_per_s": ("balance lookups", "/s"),
    "read.balance_lookup_p50_ms": ("balance lookup p50", "ms"),
    "read.balance_lookup_p99_ms": ("balance lookup p99", "ms"),
    "read.statement_render_ms": ("statement of the busiest partner", "ms"),
}


@dataclass(frozen=True, slots=True)
class ReadSideSizes:
    partners: int
    records: int
    lookup_rate_per_s: float
    lookup_seconds: float


FULL = ReadSideSizes(partners=100_000, records=3_000_000, lookup_rate_per_s=1_000,
                     lookup_seconds=30)
QUICK = ReadSideSizes(partners=10_000, records=100_000, lookup_rate_per_s=500, lookup_seconds=5)


async def measure_read_side(scratch: Scratch, sizes: ReadSideSizes) -> dict[str, float] | None:
    """The figures of ``FIGURES`` by key, or None while there is no finance API."""
    return None
