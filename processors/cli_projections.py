"""`incentives projections check | rebuild`: the read models against the ledger.

Exit codes, as for `audit verify`: 0 the projections agree with the ledger (check) or were
rebuilt (rebuild), 1 check found differences, 2 the command could not run (database
unreachable, ...).
"""

from __future__ import annotations

import argparse
from datetime import datetime

import asyncpg

import projections
from processors.cli_ledger import _run
from projections.tiers import Tier
from schemas.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("projections", help="check or rebuild the balance and tier projections")
    actions = p.add_subparsers(dest="projections_action", required=True)

    a = actions.add_parser("check", help="compare the projections with a rebuild from the "
                           "ledger; list every difference and exit 1 on any")
    a.set_defaults(handler=_check)

    a = actions.add_parser("rebuild", help="recompute the projections from the ledger, in "
                           "one transaction that locks them; list what it repaired")
    a.set_defaults(handler=_rebuild)


def _check(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        report = await projections.diff(conn)
        for line in _difference_lines(report):
            print(line)
        if report.ok:
            print(f"projections agree with the ledger: {report.balances:,} balances, "
                  f"{report.tiers:,} tiers")
            return 0
        print(f"projections differ from the ledger: {len(report.balance_differences):,} of "
              f"{report.balances:,} balances, {len(report.tier_differences):,} of "
              f"{report.tiers:,} tiers; `incentives projections rebuild` repairs them")
        return 1

    return _run(settings, "reader", work)


def _rebuild(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        rebuilt = await projections.rebuild(conn)
        for line in _difference_lines(rebuilt.repaired):
            print(f"repaired: {line}")
        print(f"projections rebuilt from the ledger: {rebuilt.balance_rows:,} balance rows, "
              f"{rebuilt.tier_rows:,} tiers; {len(rebuilt.repaired.balance_differences):,} "
              f"balances and {len(rebuilt.repaired.tier_differences):,} tiers differed")
        return 0

    return _run(settings, "writer", work)


def _difference_lines(report: projections.Report) -> list[str]:
    lines = [
        f"DIFFERENCE balance {d.account} {d.asset}: stored {d.stored}, expected {d.expected}"
        for d in report.balance_differences
    ]
    lines += [
        f"DIFFERENCE tier of partner {d.partner_id} in program {d.program_id}: "
        f"stored {_tier(d.stored)}, expected {_tier(d.expected)}"
        for d in report.tier_differences
    ]
    return lines


def _tier(tier: Tier | None) -> str:
    return "none" if tier is None else f"{tier.tier} since {_iso(tier.since)}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
