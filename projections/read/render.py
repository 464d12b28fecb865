"""The read side's answers as rows: CSV (minor units, and the formatted amount beside each)
and tables for people (formatted amounts only). Shared by the API's ``text/csv`` and the
command line, so both show the same figures."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from projections.read.money import format_amount
from projections.read.types import (
    Figures,
    Leaderboard,
    PartnerBalances,
    PartnerPage,
    PartnerTiers,
    RecordPage,
    RefusalPage,
    SpendReport,
    Statement,
    TeamStandings,
    TierHistory,
)

Cells = list[Any]
Rows = tuple[list[str], list[Cells]]
MONEY = ("pending", "available", "total", "earned", "released", "paid", "redeemed", "expired",
         "clawed_back", "penalties", "adjusted", "reversed")
TABLE_MONEY = ("pending", "available", "total", "earned", "paid", "redeemed", "expired",
               "clawed_back")


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | dict):
        return msgspec.json.encode(value).decode()
    return str(value)


def to_csv(rows: Rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(rows[0])
    writer.writerows([_text(c) for c in row] for row in rows[1])
    return out.getvalue()


def to_table(rows: Rows) -> str:
    headers, body = rows
    cells = [[_text(c) for c in row] for row in body]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(_numeric(r[i]) for r in cells) and bool(cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def _numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[:4].isupper() and " " in text)


def _money_cells(f: Figures, asset: str, names: Iterable[str], formatted_too: bool) -> Cells:
    out: Cells = []
    for name in names:
        value = getattr(f, name)
        out += [value, format_amount(value, asset)] if formatted_too else [
            format_amount(value, asset)]
    return out


def _money_headers(names: Iterable[str], formatted_too: bool) -> list[str]:
    out: list[str] = []
    for name in names:
        out += [name, f"{name}_formatted"] if formatted_too else [name]
    return out


def balances_rows(b: PartnerBalances, table: bool = False) -> Rows:
    names = TABLE_MONEY if table else MONEY
    headers = ["partner_id", "asset"] + _money_headers(names, not table)
    return headers, [[b.partner_id, a.asset] + _money_cells(a.figures, a.asset, names, not table)
                     for a in b.balances]


def statement_rows(s: Statement, table: bool = False) -> Rows:
    """Opening and closing rows per asset, one row per line and asset between them."""
    headers = ["row", "occurred_at", "seq", "kind", "asset", "total", "pending", "available",
               "summary", "program_id", "rule_id", "record_id", "source_event_ids"]
    if not table:
        headers.insert(6, "total_formatted")
    rows: list[Cells] = []

    def add(kind: str, at: object, seq: object, what: str, asset: str, total: int, pending: int,
            available: int, summary: str, program: object = None, rule: object = None,
            record: object = None, sources: object = None) -> None:
        money = [format_amount(total, asset)] if table else [total, format_amount(total, asset)]
        tail = ([format_amount(pending, asset), format_amount(available, asset)] if table
                else [pending, available])
        rows.append([kind, at, seq, what, asset, *money, *tail, summary, program, rule, record,
                     sources])

    for a in s.assets:
        o = a.opening
        add("opening", s.start, None, "", a.asset, o.total, o.pending, o.available,
            "opening balance")
    for ln in s.lines:
        for m in ln.movements:
            add("line", ln.occurred_at, ln.seq, ln.kind, m.asset, m.total, m.pending,
                m.available, ln.summary, ln.program_id, ln.rule_id, ln.record_id,
                " ".join(str(e) for e in ln.source_event_ids))
    for a in s.assets:
        c = a.closing
        add("closing", s.end, None, "", a.asset, c.total, c.pending, c.available,
            "closing balance")
    return headers, rows


def records_rows(p: RecordPage, table: bool = False) -> Rows:
    """One row per line and asset it moved; a line that moves nothing (a tier change) has
    one row without an asset."""
    headers = ["occurred_at", "seq", "kind", "asset", "total", "summary", "formula", "record_id"]
    rows: list[Cells] = []
    for ln in p.records:
        for m in ln.movements:
            total = format_amount(m.total, m.asset) if table else m.total
            rows.append([ln.occurred_at, ln.seq, ln.kind, m.asset, total, ln.summary,
                         ln.formula, ln.record_id])
        if not ln.movements:
            rows.append([ln.occurred_at, ln.seq, ln.kind, None, None, ln.summary, ln.formula,
                         ln.record_id])
    return headers, rows


def tiers_rows(t: PartnerTiers, table: bool = False) -> Rows:
    headers = ["program_id", "tier", "tier_name", "since", "next_tier", "criterion", "required",
               "actual", "gap"]
    rows: list[Cells] = []
    for s in t.tiers:
        base = [s.program_id, s.tier, s.tier_name, s.since, s.next_tier]
        if not s.criteria:
            rows.append(base + [None, None, None, None])
        for c in s.criteria:
            rows.append(base + [c.name, c.required, c.actual, c.gap])
    return headers, rows


def history_rows(h: TierHistory, table: bool = False) -> Rows:
    return (["program_id", "occurred_at", "from_tier", "to_tier", "summary"],
            [[c.program_id, c.occurred_at, c.from_tier, c.to_tier, c.summary]
             for c in h.changes])


def _metric_value(value: int, metric: str, currency: str, table: bool) -> Cells:
    if metric == "new_customers":
        return [value]
    return [format_amount(value, currency)] if table else [value, format_amount(value, currency)]


def board_rows(b: Leaderboard, table: bool = False) -> Rows:
    value = ["value"] if table or b.metric == "new_customers" else ["value", "value_formatted"]
    headers = ["rank", "partner_id", "team", *value, "reached_at"]
    return headers, [[e.rank, e.partner_id, e.team,
                      *_metric_value(e.value, b.metric, b.currency, table), e.reached_at]
                     for e in b.entries]


def teams_rows(t: TeamStandings, table: bool = False) -> Rows:
    money = t.metric != "new_customers"
    headers = ["rank", "team", "members", "value", "average"]
    cells = [[s.rank, s.team, s.members,
              format_amount(s.value, t.currency) if table and money else s.value,
              format_amount(s.average, t.currency) if table and money else s.average]
             for s in t.teams]
    return headers, cells


def spend_rows(r: SpendReport, table: bool = False) -> Rows:
    headers = ["program_id", "version", "currency", "budget", "spent", "remaining", "used_pct",
               "points_issued", "points_redeemed", "points_expired", "points_outstanding"]
    rows: list[Cells] = []
    for p in r.programs:
        def m(value: int | None, p: Any = p) -> Any:
            return None if value is None else format_amount(value, p.currency) if table else value
        used = None if p.used_bp is None else f"{p.used_bp / 100:.2f}"
        rows.append([p.program_id, p.program_version, p.currency, m(p.budget), m(p.spent),
                     m(p.remaining), used, p.points_issued, p.points_redeemed,
                     p.points_expired, p.points_outstanding])
    return headers, rows


def refusals_rows(r: RefusalPage, table: bool = False) -> Rows:
    return (["occurred_at", "partner_id", "event_type", "code", "path", "message", "event_id"],
            [[x.occurred_at, x.partner_id, x.event_type, x.code, x.path, x.message, x.event_id]
             for x in r.refusals])


def partners_rows(p: PartnerPage, table: bool = False) -> Rows:
    return (["partner_id", "kind", "region", "team", "status", "joined_on"],
            [[x.partner_id, x.kind, x.region, x.team, x.status, x.joined_on]
             for x in p.partners])


RENDERERS: dict[type, Callable[..., Rows]] = {
    PartnerBalances: balances_rows, Statement: statement_rows, RecordPage: records_rows,
    PartnerTiers: tiers_rows, TierHistory: history_rows, Leaderboard: board_rows,
    TeamStandings: teams_rows, SpendReport: spend_rows, RefusalPage: refusals_rows,
    PartnerPage: partners_rows,
}


def rows_of(answer: object, table: bool = False) -> Rows:
    return RENDERERS[type(answer)](answer, table)
