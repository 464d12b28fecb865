"""The finance API's routes. Every read answers JSON (msgspec) or, with ``format=csv`` or
``Accept: text/csv``, CSV with minor units and formatted amounts side by side. Lists are
paged by an opaque ``cursor`` (the ``next_cursor`` of the previous page). ``as_of`` takes a
date (the end of that day, UTC) or a date-time with a zone (projections/asof.py).

Who may read what: ``finance`` and ``auditor`` keys read everything; a ``partner`` key
reads only its own partner's balances, tiers, statements and records (another partner's
is 403, program-wide figures too). Only ``finance`` sends commands.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import asyncpg
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import Parameter

from projections import read
from projections.api import problems
from projections.api.app import wiring
from projections.api.commands import Accepted, send_command
from projections.api.keys import Principal, Role
from projections.asof import AsOfError, Span, parse_as_of, parse_from, parse_period, span
from projections.read import render, types
from schemas.commands import Command

Format = Literal["json", "csv"]
Limit = Annotated[int, Parameter(ge=1, le=1000, description="items per page")]
Cursor = Annotated[str | None, Parameter(description="next_cursor of the previous page",
                                         max_length=400)]
AsOf = Annotated[str | None, Parameter(
    description="a date (2026-01-31: the end of that day, UTC) or a date-time with a zone "
                "(2026-01-31T23:59:59Z, 2026-01-31T23:59:59+01:00); default: now",
    max_length=64)]
PartnerId = Annotated[str, Parameter(max_length=128, description="partner id")]
Metric = Literal["net_sales", "units", "new_customers"]
Currency = Annotated[str, Parameter(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
PeriodText = Annotated[str, Parameter(
    description="a month (2026-01), a quarter (2026-Q1) or a year (2026)", max_length=16)]


def _own(principal: Principal, partner_id: str) -> None:
    if principal.role is Role.PARTNER and principal.partner_id != partner_id:
        raise problems.forbidden(f"this key reads partner {principal.partner_id} only, not "
                                 f"{partner_id}")


def _program_wide(principal: Principal) -> None:
    if principal.role is Role.PARTNER:
        raise problems.forbidden("a partner key reads its own partner's figures only")


def _bound(as_of: str | None) -> dt.datetime | None:
    try:
        return None if as_of is None else parse_as_of(as_of)
    except AsOfError as exc:
        raise problems.bad_request(str(exc)) from None


def _period(text: str) -> Span:
    try:
        return parse_period(text)
    except AsOfError as exc:
        raise problems.bad_request(str(exc)) from None


def _answer(request: Request[Any, Any, Any], answer: Any, fmt: Format | None) -> Response[Any]:
    wants_csv = fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))
    if wants_csv:
        return Response(render.to_csv(render.rows_of(answer)),
                        media_type="text/csv; charset=utf-8")
    return Response(answer)


async def _read(call: Any) -> Any:
    """Run a read; the read side's expected failures become 404 and 400 problems."""
    try:
        return await call
    except read.UnknownPartner as exc:
        raise problems.not_found(str(exc)) from None
    except (read.CursorError, AsOfError) as exc:
        raise problems.bad_request(str(exc)) from None


@get("/partners", tags=["partners"])
async def list_partners(request: Request[Any, Any, Any], conn: asyncpg.Connection,
                        principal: Principal, team: str | None = None, cursor: Cursor = None,
                        limit: Limit = 100, format: Format | None = None
                        ) -> Response[types.PartnerPage]:
    """Every partner the ledger knows, by id, with its profile."""
    _program_wide(principal)
    return _answer(request, await _read(read.partners(conn, team=team, after=cursor,
                                                      limit=limit)), format)


@get("/partners/{partner_id:str}", tags=["partners"])
async def get_partner(conn: asyncpg.Connection, principal: Principal, partner_id: PartnerId
                      ) -> types.Partner:
    """One partner's profile."""
    _own(principal, partner_id)
    found = await read.partner(conn, partner_id)
    if found is None:
        raise problems.not_found(f"unknown partner {partner_id!r}: the ledger has no such "
                                 "partner")
    return found


@get("/partners/{partner_id:str}/balances", tags=["partners"])
async def get_balances(request: Request[Any, Any, Any], conn: asyncpg.Connection,
                       principal: Principal, partner_id: PartnerId, as_of: AsOf = None,
                       format: Format | None = None) -> Response[types.PartnerBalances]:
    """Balances per asset (pending, available, total) and lifetime movements by kind."""
    _own(principal, partner_id)
    return _answer(request, await _read(read.balances(conn, partner_id, _bound(as_of),
                                                      as_of)), format)


@get("/partners/{partner_id:str}/tiers", tags=["partners"])
async def get_tiers(request: Request[Any, Any, Any], state: State, conn: asyncpg.Connection,
                    principal: Principal, partner_id: PartnerId, as_of: AsOf = None,
                    format: Format | None = None) -> Response[types.PartnerTiers]:
    """The tier per program: now with the gap to the next tier per criterion, or as of a
    moment (from the tier history)."""
    _own(principal, partner_id)
    catalog = await wiring(state).catalog.refresh(conn)
    return _answer(request, await _read(read.tiers(conn, partner_id, _bound(as_of), catalog,
                                                   as_of)), format)


@get("/partners/{partner_id:str}/tiers/history", tags=["partners"])
async def get_tier_history(request: Request[Any, Any, Any], conn: asyncpg.Connection,
                           principal: Principal, partner_id: PartnerId,
                           program: str | None = None, format: Format | None = None
                           ) -> Response[types.TierHistory]:
    """Every tier change, oldest first, with the record that made it."""
    _own(principal, partner_id)
    return _answer(request, await _read(read.tier_history(conn, partner_id, program)), format)


@get("/partners/{partner_id:str}/statement", tags=["partners"])
async def get_statement(
    request: Request[Any, Any, Any], conn: asyncpg.Connection, principal: Principal,
    partner_id: PartnerId,
    period: Annotated[str | None, Parameter(description="2026-01, 2026-Q1 or 2026",
                                            max_length=16)] = None,
    start: Annotated[str | None, Parameter(query="from", max_length=64,
                                           description="instead of period: from")] = None,
    end: Annotated[str | None, Parameter(query="to", max_length=64,
                                         description="... to (as of)")] = None,
    cursor: Cursor = None, limit: Annotated[int, Parameter(ge=1, le=10_000)] = 1000,
    format: Format | None = None,
) -> Response[types.Statement]:
    """Opening and closing balance per asset over a period (or from/to), and every line
    with its explanation and source events; the lines of an asset add up to closing minus
    opening. Lines are paged (``limit``, ``cursor``); the balances are the whole span's."""
    _own(principal, partner_id)
    try:
        if period is not None and (start or end):
            raise AsOfError("give either period or from/to, not both")
        if period is None and (start is None or end is None):
            raise AsOfError("a statement needs period (2026-01) or both from and to")
        covered = parse_period(period) if period is not None else span(start or "", end or "")
    except AsOfError as exc:
        raise problems.bad_request(str(exc)) from None
    return _answer(request, await _read(read.statement(conn, partner_id, covered, after=cursor,
                                                       limit=limit)), format)


@get("/partners/{partner_id:str}/records", tags=["partners"])
async def get_records(
    request: Request[Any, Any, Any], conn: asyncpg.Connection, principal: Principal,
    partner_id: PartnerId,
    start: Annotated[str | None, Parameter(query="from", max_length=64)] = None,
    end: Annotated[str | None, Parameter(query="to", max_length=64)] = None,
    cursor: Cursor = None, limit: Limit = 100, format: Format | None = None,
) -> Response[types.RecordPage]:
    """The partner's ledger records with their explanations, by event time."""
    _own(principal, partner_id)
    return _answer(request, await _read(read.records(conn, partner_id, _from(start), _bound(end),
                                                     after=cursor, limit=limit)), format)


@get("/leaderboards/{metric:str}", tags=["programs"])
async def get_leaderboard(request: Request[Any, Any, Any], conn: asyncpg.Connection,
                          principal: Principal, metric: Metric, period: PeriodText,
                          currency: Currency = "EUR", cursor: Cursor = None, limit: Limit = 100,
                          format: Format | None = None) -> Response[types.Leaderboard]:
    """Partners ranked by a metric over a month, quarter or year."""
    _program_wide(principal)
    return _answer(request, await _read(read.leaderboard(conn, _period(period), metric,
                                                         currency, after=cursor, limit=limit)),
                   format)


@get("/teams", tags=["programs"])
async def get_teams(request: Request[Any, Any, Any], conn: asyncpg.Connection,
                    principal: Principal, period: PeriodText, metric: Metric = "net_sales",
                    currency: Currency = "EUR", format: Format | None = None
                    ) -> Response[types.TeamStandings]:
    """Team standings: the members' metric summed over the period."""
    _program_wide(principal)
    return _answer(request, await _read(read.teams(conn, _period(period), metric, currency)),
                   format)


@get("/programs/spend", tags=["programs"])
async def get_spend(request: Request[Any, Any, Any], state: State, conn: asyncpg.Connection,
                    principal: Principal, program: str | None = None,
                    format: Format | None = None) -> Response[types.SpendReport]:
    """Program spend against budget per version, and points issued and redeemed."""
    _program_wide(principal)
    catalog = await wiring(state).catalog.refresh(conn)
    return _answer(request, await _read(read.spend(conn, catalog, program)), format)


@get("/refusals", tags=["operations"])
async def get_refusals(
    request: Request[Any, Any, Any], conn: asyncpg.Connection, principal: Principal,
    partner: str | None = None, code: str | None = None,
    start: Annotated[str | None, Parameter(query="from", max_length=64)] = None,
    end: Annotated[str | None, Parameter(query="to", max_length=64)] = None,
    cursor: Cursor = None, limit: Limit = 100, format: Format | None = None,
) -> Response[types.RefusalPage]:
    """Commands the rules refused (nothing was posted for them), with the reason."""
    _program_wide(principal)
    return _answer(request, await _read(read.refusals(
        conn, partner_id=partner, code=code, start=_from(start), end=_bound(end), after=cursor,
        limit=limit)), format)


def _from(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        return parse_from(text)
    except AsOfError as exc:
        raise problems.bad_request(str(exc)) from None


@get("/dead-letters", tags=["operations"])
async def get_dead_letters(conn: asyncpg.Connection, principal: Principal
                           ) -> types.DeadLetterSummary:
    """Rejected messages per topic and reason code."""
    _program_wide(principal)
    return await read.dead_letters(conn)


@get("/reconciliation", tags=["operations"])
async def get_reconciliation(state: State, conn: asyncpg.Connection, principal: Principal
                             ) -> types.Reconciliation:
    """Per source partition: consumed = applied + duplicates + dead-lettered + parked, and
    the newest event time applied (how fresh the figures are)."""
    _program_wide(principal)
    return await read.reconciliation(conn, wiring(state).settings.consumer_group)


@post("/commands", tags=["commands"], status_code=202)
async def post_command(state: State, principal: Principal, data: Command) -> Accepted:
    """Send a command (a payout, a redemption, an adjustment, a claim decision, a period
    close) to the commands topic. 202: accepted for processing; the ledger applies it in
    order with the partner's events, and a refusal shows in ``/refusals``."""
    if principal.role is not Role.FINANCE:
        raise problems.forbidden("only a finance key sends commands")
    return await send_command(wiring(state), principal, data)


HANDLERS = [list_partners, get_partner, get_balances, get_tiers, get_tier_history,
            get_statement, get_records, get_leaderboard, get_teams, get_spend, get_refusals,
            get_dead_letters, get_reconciliation, post_command]
