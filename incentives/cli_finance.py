"""Finance's questions on the command line: `incentives balances | tier | statement |
leaderboard | teams | spend | refusals`, and the finance API: `incentives api` and
`incentives api-keys create`.

Every query reads through the read side's read-only connection (projections/read/db.py)
and prints a table with formatted money (`EUR 791,820.04`), or with ``--format csv`` the
same rows with minor units and the formatted amount beside them, or with ``--format json``
the typed answer the API returns. An unknown partner is an error (exit 1); a database that
cannot be reached exits 2. ``--as-of`` takes a date (the end of that day, UTC) or a
date-time with a zone (projections/asof.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec

from projections import read
from projections.asof import AsOfError, Span, parse_as_of, parse_period, span
from projections.read import db, render
from schemas.settings import Settings

Query = Callable[[asyncpg.Connection], Awaitable[object]]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _query(sub, "balances", "a partner's balances per asset, now or as of a date")
    p.add_argument("--partner", required=True)
    p.add_argument("--as-of", help="a date (the end of that day, UTC) or a date-time with zone")
    p.set_defaults(handler=_balances)

    p = _query(sub, "tier", "a partner's tier per program and the gap to the next tier; with "
               "--as-of, the tier held then; with --history, every change")
    p.add_argument("--partner", required=True)
    p.add_argument("--as-of")
    p.add_argument("--history", action="store_true")
    p.set_defaults(handler=_tier)

    p = _query(sub, "statement", "a partner's statement: opening and closing balance per asset "
               "and every line with its explanation and source event")
    p.add_argument("--partner", required=True)
    p.add_argument("--period", help="a month (2026-01), quarter (2026-Q1) or year (2026)")
    p.add_argument("--from", dest="start", help="instead of --period: from this date or moment")
    p.add_argument("--to", dest="end", help="... to the end of this date (or this moment)")
    p.set_defaults(handler=_statement)

    p = _query(sub, "leaderboard", "partners ranked by a metric over a period")
    _board_args(p)
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(handler=_leaderboard)

    p = _query(sub, "teams", "team standings: the members' metric summed over a period")
    _board_args(p)
    p.set_defaults(handler=_teams)

    p = _query(sub, "spend", "program spend against budget; points issued and redeemed")
    p.add_argument("--program")
    p.set_defaults(handler=_spend)

    p = _query(sub, "refusals", "commands the rules refused, with the reason")
    p.add_argument("--partner")
    p.add_argument("--code")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(handler=_refusals)

    from incentives import cli_api

    cli_api.register(sub)


def _query(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
           ) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=text, description=text)
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    return p


def _board_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--period", required=True, help="2026-01, 2026-Q1 or 2026")
    p.add_argument("--metric", choices=read.METRICS, default="net_sales")
    p.add_argument("--currency", default="EUR")


def run_query(settings: Settings, args: argparse.Namespace, query: Query) -> int:
    """Run one read query and print its answer in the format asked for."""
    async def main() -> object:
        conn = await db.connect(settings.pg_dsn("reader"))
        try:
            return await query(conn)
        finally:
            await conn.close()

    try:
        answer = asyncio.run(main())
    except (read.UnknownPartner, AsOfError, read.CursorError) as exc:
        print(f"incentives: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"incentives: cannot use the ledger database: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    if args.format == "json":
        print(msgspec.json.format(msgspec.json.encode(answer)).decode())
    elif args.format == "csv":
        sys.stdout.write(render.to_csv(render.rows_of(answer)))
    else:
        print(_title(answer))
        print(render.to_table(render.rows_of(answer, table=True)))
    return 0


def _title(answer: object) -> str:
    if isinstance(answer, read.types.PartnerBalances):
        when = f"as of {answer.as_of}" if answer.as_of else "now"
        return f"balances of partner {answer.partner_id} {when}:"
    if isinstance(answer, read.types.Statement):
        return (f"statement of partner {answer.partner_id}, {answer.period} "
                f"({render._text(answer.start)} to {render._text(answer.end)}, end excluded):")
    if isinstance(answer, read.types.PartnerTiers):
        when = f"as of {answer.as_of}" if answer.as_of else "now"
        return f"tiers of partner {answer.partner_id} {when}:"
    if isinstance(answer, read.types.Leaderboard | read.types.TeamStandings):
        return f"{answer.metric} {answer.currency} over {answer.period}:".replace("  ", " ")
    if isinstance(answer, read.types.SpendReport):
        return ("program spend against budget (currency awards net of clawbacks, plus the "
                "cost of non-cash awards), and the program's points:")
    if isinstance(answer, read.types.RefusalPage):
        return "refused commands (nothing was posted for them):"
    return ""



def _balances(settings: Settings, args: argparse.Namespace) -> int:
    async def query(conn: asyncpg.Connection) -> object:
        return await read.balances(conn, args.partner, *_bound(args.as_of))

    return run_query(settings, args, query)


def _bound(text: str | None) -> tuple[dt.datetime | None, str | None]:
    return (None if text is None else parse_as_of(text)), text


def _tier(settings: Settings, args: argparse.Namespace) -> int:
    async def query(conn: asyncpg.Connection) -> object:
        if args.history:
            return await read.tier_history(conn, args.partner)
        catalog = await read.Catalog().refresh(conn)
        before = None if args.as_of is None else parse_as_of(args.as_of)
        return await read.tiers(conn, args.partner, before, catalog, args.as_of)

    return run_query(settings, args, query)


def statement_span(period: str | None, start: str | None, end: str | None) -> Span:
    if period is not None and (start or end):
        raise AsOfError("give either --period or --from/--to, not both")
    if period is not None:
        return parse_period(period)
    if start is None or end is None:
        raise AsOfError("a statement needs --period (2026-01) or both --from and --to")
    return span(start, end)


def _statement(settings: Settings, args: argparse.Namespace) -> int:
    async def query(conn: asyncpg.Connection) -> object:
        return await read.statement(conn, args.partner,
                                    statement_span(args.period, args.start, args.end))

    return run_query(settings, args, query)


def _leaderboard(settings: Settings, args: argparse.Namespace) -> int:
    async def query(conn: asyncpg.Connection) -> object:
        return await read.leaderboard(conn, parse_period(args.period), args.metric,
                                      args.currency, limit=max(1, min(args.limit, 1000)))

    return run_query(settings, args, query)


def _teams(settings: Settings, args: argparse.Namespace) -> int:
    async def query(conn: asyncpg.Connection) -> object:
        return await read.teams(conn, parse_period(args.period), args.metric, args.currency)

    return run_query(settings, args, query)


def _spend(settings: Settings, args: argparse.Namespace) -> int:
    async def query(conn: asyncpg.Connection) -> object:
        return await read.spend(conn, await read.Catalog().refresh(conn), args.program)

    return run_query(settings, args, query)


def _refusals(settings: Settings, args: argparse.Namespace) -> int:
    async def query(conn: asyncpg.Connection) -> object:
        if args.partner is not None and await read.partner(conn, args.partner) is None:
            raise read.UnknownPartner(args.partner)
        return await read.refusals(conn, partner_id=args.partner, code=args.code,
                                   limit=max(1, min(args.limit, 1000)))

    return run_query(settings, args, query)
