"""`incentives projections check | rebuild`: every read model against the ledger.

Exit codes, as for `audit verify`: 0 the projections agree with the ledger (check) or were
rebuilt (rebuild), 1 check found differences, 2 the command could not run (database
unreachable, ...).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import asyncpg

import projections
from incentives.cli_ledger import _run
from processors.engine import CompiledProgram
from processors.outbox.projection_feed import partner_facts
from processors.outbox.refusals import stored_refusals
from processors.writer.ledger import Programs, stored_states
from projections.facts import PartnerFacts, Refusal
from schemas.settings import Settings

# Differences printed in full; the count says how many more there are.
SHOWN_MAX = 50


class StoredFacts:
    """The engine's facts of every stored partner state and every stored refusal: what
    ``projections.diff`` and ``projections.rebuild`` need beside the ledger."""

    def __init__(self, programs: Sequence[CompiledProgram]) -> None:
        self.programs = programs

    async def facts(self, conn: asyncpg.Connection) -> list[PartnerFacts]:
        return [partner_facts(s, self.programs, None) for s in await stored_states(conn)]

    async def refusals(self, conn: asyncpg.Connection) -> list[Refusal]:
        return [Refusal(**r) for r in await stored_refusals(conn)]  # type: ignore[arg-type]


async def fact_source(conn: asyncpg.Connection) -> StoredFacts:
    return StoredFacts(await Programs().refresh(conn))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("projections", help="check or rebuild the read models finance reads")
    actions = p.add_subparsers(dest="projections_action", required=True)

    a = actions.add_parser("check", help="compare every projection with a rebuild from the "
                           "ledger; list every difference and exit 1 on any")
    a.set_defaults(handler=_check)

    a = actions.add_parser("rebuild", help="recompute every projection from the ledger, in "
                           "one transaction that locks them; list what it repaired")
    a.set_defaults(handler=_rebuild)


def _check(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        report = await projections.diff(conn, await fact_source(conn))
        _print_differences(report, "DIFFERENCE")
        rows = _rows(report.rows)
        if report.ok:
            print(f"projections agree with the ledger: {rows}")
            return 0
        print(f"projections differ from the ledger: {len(report.differences):,} rows differ "
              f"(a rebuild has {rows}); `incentives projections rebuild` repairs them")
        return 1

    return _run(settings, "auditor", work)


def _rebuild(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        rebuilt = await projections.rebuild(conn, await fact_source(conn))
        _print_differences(rebuilt.repaired, "repaired")
        print(f"projections rebuilt from the ledger: {_rows(rebuilt.rows)}; "
              f"{len(rebuilt.repaired.differences):,} rows differed")
        return 0

    return _run(settings, "writer", work)


def _print_differences(report: projections.Report, label: str) -> None:
    lines = report.lines()
    for line in lines[:SHOWN_MAX]:
        print(f"{label}: {line}")
    if len(lines) > SHOWN_MAX:
        print(f"... and {len(lines) - SHOWN_MAX:,} more")


def _rows(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in counts.items())
