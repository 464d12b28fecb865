"""Rows of a projection table as Python values, and what every table does with them.

Each projection module folds its input into ``Rows`` (key tuple -> value tuple, in the
table's column order) with a pure function; the same function serves the writer (one
statement per batch) and the rebuild (the fold of the whole ledger). This module holds the
generic parts: comparing stored rows with expected ones, reading a table into ``Rows`` and
replacing a table's content with COPY.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import asyncpg

Key = tuple[Any, ...]
Values = tuple[Any, ...]
Rows = dict[Key, Values]


class Table(NamedTuple):
    """A projection table: its name and its key and value columns, in column order."""

    name: str
    key: tuple[str, ...]
    values: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.key + self.values


class Difference(NamedTuple):
    """A row whose stored values are not what a rebuild gives (None: no such row)."""

    table: str
    key: Key
    stored: Values | None
    expected: Values | None

    def describe(self, table: Table) -> str:
        where = ", ".join(f"{c}={_text(v)}" for c, v in zip(table.key, self.key, strict=True))
        return (f"{self.table} ({where}): stored {_values(table, self.stored)}, "
                f"expected {_values(table, self.expected)}")


def compare(table: Table, stored: Mapping[Key, Values], expected: Mapping[Key, Values]
            ) -> list[Difference]:
    """Every key whose row differs or exists on one side only, in key order."""
    out = []
    for key in sorted(stored.keys() | expected.keys()):
        was, should = stored.get(key), expected.get(key)
        if was != should:
            out.append(Difference(table.name, key, was, should))
    return out


async def read(conn: asyncpg.Connection, table: Table, where: str = "") -> Rows:
    sql = f"SELECT {', '.join(table.columns)} FROM {table.name} {where}"
    width = len(table.key)
    return {tuple(r[:width]): tuple(r[width:]) for r in await conn.fetch(sql)}


async def replace(conn: asyncpg.Connection, table: Table, rows: Rows, where: str = "") -> int:
    """Delete the table's rows (those matching ``where``) and COPY ``rows`` in."""
    await conn.execute(f"DELETE FROM {table.name} {where}")
    if rows:
        await conn.copy_records_to_table(
            table.name, records=[k + v for k, v in sorted(rows.items())],
            columns=list(table.columns))
    return len(rows)


def columns_of(rows: Sequence[Key | Values], width: int) -> list[list[Any]]:
    """Row tuples to one list per column, for an upsert of arrays (unnest)."""
    return [[row[i] for row in rows] for i in range(width)]


def _values(table: Table, values: Values | None) -> str:
    if values is None:
        return "no row"
    return "(" + ", ".join(f"{c}={_text(v)}" for c, v in zip(table.values, values, strict=True)
                           ) + ")"


def _text(value: object) -> str:
    iso = getattr(value, "isoformat", None)
    return str(iso()).replace("+00:00", "Z") if callable(iso) else str(value)
