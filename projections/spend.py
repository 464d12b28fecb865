"""Program spend per partner: ``partner_spend``, summed over partners at read time.

One row per (partner, program, version, asset): what the program's expense account paid the
partner (``awarded``, from accruals), what came back to it (``returned``: clawbacks,
reversals), what the program's penalty account received from the partner (``penalties``),
and the budget cost of non-cash awards in the program currency (``budget_cost``, the
``budget_cost`` input of their records). A program's spend against its budget is, as the
engine counts it (``engine.spend_of``): the sum over partners of ``awarded - returned`` in
the program currency plus every ``budget_cost``. Points issued by a program are the
``awarded`` of its ``PTS:<program>`` asset.

The rows are the partner's own, so program spend is never one row that every writer
updates (the engine's budget table ``program_spend`` is that, and `check` compares the two).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ledger.core import Record
from projections.rows import Rows, Table, columns_of

if TYPE_CHECKING:
    import asyncpg

TABLE = Table(
    "partner_spend",
    key=("partner_id", "program_id", "program_version", "asset"),
    values=("awarded", "returned", "penalties", "budget_cost", "records"),
)


def _program_of(account: str) -> tuple[str, str] | None:
    """("northwind", "expense") for "program:northwind:expense", else None."""
    if not account.startswith("program:"):
        return None
    _, program_id, kind = account.split(":")
    return program_id, kind


def fold(records: Iterable[Record], into: Rows | None = None) -> Rows:
    rows: Rows = {} if into is None else into
    for r in records:
        touched: set[tuple[str, str]] = set()
        for p in r.postings:
            program = _program_of(p.account)
            if program is None:
                continue
            key = (r.partner_id, program[0], r.program_version or 0, p.asset)
            awarded, returned, penalties, cost, count = rows.get(key, (0, 0, 0, 0, 0))
            if program[1] == "penalty":
                penalties += p.amount
            elif p.amount < 0:
                awarded -= p.amount
            else:
                returned += p.amount
            rows[key] = (awarded, returned, penalties, cost, count)
            touched.add((program[0], p.asset))
        cost = r.explanation.inputs.get("budget_cost")
        if (isinstance(cost, int) and not isinstance(cost, bool) and r.program_id is not None
                and r.program_version is not None):
            asset = next((p.asset for p in r.postings
                          if p.account == f"program:{r.program_id}:expense"), "")
            key = (r.partner_id, r.program_id, r.program_version, asset)
            values = rows.get(key, (0, 0, 0, 0, 0))
            rows[key] = values[:3] + (values[3] + cost, values[4])
            touched.add((r.program_id, asset))
        for program_id, asset in touched:
            key = (r.partner_id, program_id, r.program_version or 0, asset)
            values = rows[key]
            rows[key] = values[:4] + (values[4] + 1,)
    return rows


_ADD = ", ".join(f"{c} = s.{c} + EXCLUDED.{c}" for c in TABLE.values)
_UPSERT = f"""
INSERT INTO partner_spend AS s ({', '.join(TABLE.columns)})
SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::bigint[],
                     $6::bigint[], $7::bigint[], $8::bigint[], $9::integer[])
ON CONFLICT (partner_id, program_id, program_version, asset) DO UPDATE SET {_ADD}
"""


async def apply(conn: asyncpg.Connection, records: Iterable[Record]) -> int:
    rows = fold(records)
    if rows:
        ordered = [k + v for k, v in sorted(rows.items())]
        await conn.execute(_UPSERT, *columns_of(ordered, len(TABLE.columns)))
    return len(rows)
