"""CSV upload files for the publisher, validated and reported order by order.

One type per file, named by the caller (``message_type``) or by a ``type`` column. The header
names the columns, in any order (``CSV_LAYOUTS`` lists them per type). Cells are trimmed;
an empty cell is an absent field. Booleans are true/false (also 1/0, yes/no).
``SaleRecorded`` and ``SaleReversed`` take one row per line: consecutive rows with the same
``partner_id`` and ``order_id`` (and ``reversal_id``) form one message, whose order-level
cells must agree on every row. A row without ``event_id`` gets a deterministic id,
``schemas.files.derive_event_id``, from its natural key. JSONL and what both share:
``schemas.files``.
"""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import IO, Any

import msgspec
import msgspec.inspect as mi

from schemas.codec import Limits, decode
from schemas.events import (
    MAX_LINES,
    Envelope,
    RejectCode,
    Rejection,
    ReversalLine,
    SaleLine,
    SaleRecorded,
    SaleReversed,
)
from schemas.files import NATURAL_KEYS, Item, _outgoing, _read_lines, derive_event_id
from schemas.streams import ANY, MESSAGE_TYPES, stream_of

# ---------------------------------------------------------------------------------------
# CSV layouts.


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """The columns of one message type in CSV, derived from its struct so they stay in step.

    ``line_columns`` are per row (one line of an order); the other columns are per message.
    ``group_by`` are the columns whose equal values on consecutive rows make one message.
    """

    type_name: str
    columns: tuple[str, ...]
    required: frozenset[str]
    line_columns: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    whole_numbers: frozenset[str] = field(default_factory=frozenset)
    booleans: frozenset[str] = field(default_factory=frozenset)


def _kinds(fields: tuple[mi.Field, ...]) -> tuple[set[str], set[str]]:
    """Names of the integer and of the boolean fields (also inside Optional/Annotated)."""
    whole, booleans = set(), set()
    for f in fields:
        t = f.type.type if isinstance(f.type, mi.Metadata) else f.type
        members = t.types if isinstance(t, mi.UnionType) else (t,)
        for member in members:
            inner = member.type if isinstance(member, mi.Metadata) else member
            if isinstance(inner, mi.IntType):
                whole.add(f.name)
            elif isinstance(inner, mi.BoolType):
                booleans.add(f.name)
    return whole, booleans


def _layout(
    message_type: type[Envelope],
    line_type: type[msgspec.Struct] | None = None,
    group_by: tuple[str, ...] = (),
) -> CsvLayout:
    info = mi.type_info(message_type)
    assert isinstance(info, mi.StructType)
    own = tuple(f for f in info.fields if f.name != "lines")
    # event_id may be left out where a natural key can stand in for it.
    optional_id = message_type.__name__ in NATURAL_KEYS
    required = {f.name for f in own if f.required and not (optional_id and f.name == "event_id")}
    whole, booleans = _kinds(own)
    line_names: tuple[str, ...] = ()
    if line_type is not None:
        line_info = mi.type_info(line_type)
        assert isinstance(line_info, mi.StructType)
        # A line field named like an order field (SaleLine.currency) is left to the order
        # column: rows of one order must agree on it.
        line_fields = tuple(f for f in line_info.fields if f.name not in {f.name for f in own})
        line_names = tuple(f.name for f in line_fields)
        lines_required = next(f for f in info.fields if f.name == "lines").required
        required |= {f.name for f in line_fields if f.required and lines_required}
        line_whole, line_booleans = _kinds(line_fields)
        whole |= line_whole
        booleans |= line_booleans
    return CsvLayout(
        type_name=message_type.__name__,
        columns=tuple(f.name for f in own) + line_names,
        required=frozenset(required),
        line_columns=line_names,
        group_by=group_by,
        whole_numbers=frozenset(whole),
        booleans=frozenset(booleans),
    )


# The types sent as one row per line, with their line type and grouping columns.
_PER_LINE: dict[type[Envelope], tuple[type[msgspec.Struct], tuple[str, ...]]] = {
    SaleRecorded: (SaleLine, ("partner_id", "order_id")),
    SaleReversed: (ReversalLine, ("partner_id", "order_id", "reversal_id")),
}

CSV_LAYOUTS: Mapping[str, CsvLayout] = MappingProxyType(
    {t.__name__: _layout(t, *_PER_LINE.get(t, (None, ()))) for t in ANY.types}
)


# ---------------------------------------------------------------------------------------
# CSV reading.


def iter_csv(
    source: IO[bytes],
    *,
    now: datetime,
    limits: Limits,
    message_type: str | None = None,
) -> Iterator[Item]:
    """Validate a CSV stream of one message type: ``(line_no, Outgoing | Rejection)``.

    ``line_no`` is the first physical line of the row (of the order's first row, or of
    the row an error is in). A bad header ends the file with one rejection at line 1.
    """
    lines = _TextLines(source, limits.max_message_bytes)
    reader = csv.reader(lines, strict=True)
    rows = _rows(reader, lines)
    header: _Row | None = next(rows, None)
    if header is None:
        return
    if header.problem is not None:
        yield header.line_no, header.problem
        return
    columns = [c.strip() for c in header.cells]
    first = next(rows, None)
    layout = _choose_layout(columns, first, message_type)
    if isinstance(layout, Rejection):
        yield header.line_no, layout
        return
    bad_header = _check_header(columns, layout)
    if bad_header is not None:
        yield header.line_no, bad_header
        return
    if first is None:
        return
    reading = _Reading(layout, columns, now, limits)
    yield from reading.feed(first)
    for row in rows:
        yield from reading.feed(row)
    yield from reading.finish()


@dataclass(slots=True)
class _Row:
    line_no: int
    cells: list[str]
    problem: Rejection | None = None


class _TextLines:
    """Physical lines as text for csv.reader, each at most ``limit`` bytes.

    A line too long or not UTF-8 cannot be handed on as it is: it becomes an empty line
    and its number is noted, so that the row it belonged to is rejected, not misread.
    """

    def __init__(self, source: IO[bytes], limit: int) -> None:
        self._lines = _read_lines(source, limit)
        self.unreadable: dict[int, Rejection] = {}

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line_no, line = next(self._lines)
        if line is None:
            self.unreadable[line_no] = Rejection(
                code=RejectCode.TOO_LARGE, path="$", message="the line is too long"
            )
            return "\n"
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.unreadable[line_no] = Rejection(
                code=RejectCode.INVALID_UTF8,
                path="$",
                message=f"byte 0x{line[exc.start]:02x} at offset {exc.start} of the line is"
                " not valid UTF-8",
            )
            return "\n"


def _rows(reader: Any, lines: _TextLines) -> Iterator[_Row]:
    """Non-empty rows with the number of their first line; unreadable lines as problems."""
    last = 0
    while True:
        try:
            cells: list[str] | None = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            cells = None
            error = Rejection(code=RejectCode.INVALID_VALUE, path="$", message=f"CSV: {exc}")
        start, last = last + 1, reader.line_num
        broken = sorted(n for n in lines.unreadable if n <= last)
        for n in broken:
            yield _Row(n, [], lines.unreadable.pop(n))
        if cells is None:
            yield _Row(start, [], error)
        elif cells and not broken and any(c.strip() for c in cells):
            yield _Row(start, cells)


def _choose_layout(
    columns: list[str], first: _Row | None, message_type: str | None
) -> CsvLayout | Rejection:
    name = message_type
    if name is None and "type" in columns and first is not None and not first.problem:
        cells = first.cells
        index = columns.index("type")
        name = cells[index].strip() if index < len(cells) else None
    if name is None:
        return Rejection(
            code=RejectCode.UNKNOWN_TYPE,
            path="$.type",
            message="say which type the file holds: a `type` column, or the type option",
        )
    layout = CSV_LAYOUTS.get(name)
    if layout is None:
        return Rejection(
            code=RejectCode.UNKNOWN_TYPE,
            path="$.type",
            message=f"unknown type {name!r}; CSV types are {', '.join(CSV_LAYOUTS)}",
        )
    return layout


def _check_header(columns: list[str], layout: CsvLayout) -> Rejection | None:
    known = set(layout.columns) | {"type"}
    for index, name in enumerate(columns):
        if name in columns[:index]:
            return Rejection(
                code=RejectCode.INVALID_VALUE, path=f"$.{name}", message=f"column `{name}` repeats"
            )
        if name not in known:
            return Rejection(
                code=RejectCode.UNKNOWN_FIELD,
                path=f"$.{name}",
                message=f"column `{name}` is not in the {layout.type_name} layout; its columns"
                f" are {', '.join(layout.columns)}",
            )
    for name in layout.columns:
        if name in layout.required and name not in columns:
            return Rejection(
                code=RejectCode.MISSING_FIELD,
                path=f"$.{name}",
                message=f"the {layout.type_name} layout needs a `{name}` column",
            )
    return None


class _Group:
    """The rows of one message being read: consecutive rows with the same key."""

    def __init__(self, key: tuple[str, ...], line_no: int) -> None:
        self.key = key
        self.line_no = line_no
        self.rows: list[tuple[int, dict[str, str]]] = []
        self.failure: tuple[int, Rejection] | None = None

    def fail(self, line_no: int, rejection: Rejection) -> None:
        if self.failure is None:  # the first problem is the one to fix first
            self.failure = (line_no, rejection)


class _Reading:
    """Turns rows into messages for one layout, grouping rows where the layout says so."""

    def __init__(self, layout: CsvLayout, columns: list[str], now: datetime, limits: Limits):
        self.layout = layout
        self.columns = columns
        self.now = now
        self.limits = limits
        self.group: _Group | None = None

    def feed(self, row: _Row) -> Iterator[Item]:
        values = dict(zip(self.columns, (c.strip() for c in row.cells), strict=False))
        unreadable = row.problem or self._misshapen(row)
        problem = unreadable or self._wrong_type(values)
        if not self.layout.group_by:
            yield (row.line_no, problem) if problem else self._build([(row.line_no, values)])
            return
        if unreadable is not None:
            # Which order the row belongs to is unknown (its cells may be shifted), so the
            # open order is held back rather than published perhaps without a line.
            yield from self._hold_back(row.line_no, unreadable.code)
            yield row.line_no, unreadable
            return
        key = tuple(values.get(c, "") for c in self.layout.group_by)
        if self.group is not None and self.group.key != key:
            yield from self.finish()
        if self.group is None:
            self.group = _Group(key, row.line_no)
        self._add(self.group, row.line_no, values, problem)

    def finish(self) -> Iterator[Item]:
        group, self.group = self.group, None
        if group is None:
            return
        yield group.failure if group.failure is not None else self._build(group.rows)

    def _hold_back(self, line_no: int, code: RejectCode) -> Iterator[Item]:
        if self.group is None:
            return
        message = (
            f"not published: line {line_no}, in or right after this {self.layout.type_name},"
            " could not be read"
        )
        self.group.fail(self.group.line_no, Rejection(code=code, path="$", message=message))
        yield from self.finish()

    def _misshapen(self, row: _Row) -> Rejection | None:
        if len(row.cells) == len(self.columns):
            return None
        return Rejection(
            code=RejectCode.INVALID_VALUE,
            path="$",
            message=f"the row has {len(row.cells)} cells; the header has {len(self.columns)}",
        )

    def _wrong_type(self, values: dict[str, str]) -> Rejection | None:
        kind = values.get("type")
        if not kind or kind == self.layout.type_name:
            return None
        return Rejection(
            code=RejectCode.INVALID_VALUE,
            path="$.type",
            message=f"one type per CSV file: this file holds {self.layout.type_name},"
            f" the row says {kind!r}",
        )

    def _add(
        self, group: _Group, line_no: int, values: dict[str, str], problem: Rejection | None
    ) -> None:
        if problem is not None:
            group.fail(line_no, problem)
            return
        if len(group.rows) >= MAX_LINES:
            group.fail(
                line_no,
                Rejection(
                    code=RejectCode.INVALID_VALUE,
                    path="$.lines",
                    message=f"more than {MAX_LINES} lines in one {self.layout.type_name}",
                ),
            )
            return
        if group.rows:
            mismatch = _disagreement(self.layout, group.rows[0], values)
            if mismatch is not None:
                group.fail(line_no, mismatch)
                return
        group.rows.append((line_no, values))

    def _build(self, rows: list[tuple[int, dict[str, str]]]) -> Item:
        """Decode the message of ``rows``; an error inside ``lines[k]`` points at k's row."""
        layout = self.layout
        obj, line_rows = _message_object(layout, rows)
        derive = "event_id" not in obj
        if derive:
            if layout.type_name not in NATURAL_KEYS:
                return rows[0][0], Rejection(
                    code=RejectCode.MISSING_FIELD,
                    path="$.event_id",
                    message=f"{layout.type_name} has no natural key to derive an id from:"
                    " give every row an event_id",
                )
            # A placeholder so the message decodes; the real id needs the decoded values
            # (occurred_at in UTC), so it is put in afterwards.
            obj["event_id"] = str(uuid.UUID(int=0))
        stream = stream_of(MESSAGE_TYPES[layout.type_name])
        result = decode(stream, msgspec.json.encode(obj), now=self.now, limits=self.limits)
        if isinstance(result, Rejection):
            at_line = _LINE_INDEX.match(result.path)
            if at_line and int(at_line[1]) < len(line_rows):
                return line_rows[int(at_line[1])], result
            return rows[0][0], result
        if derive:
            derived = derive_event_id(result)
            assert derived is not None  # the type has a natural key, checked above
            result = msgspec.structs.replace(result, event_id=derived)
        return rows[0][0], _outgoing(result)


_LINE_INDEX = re.compile(r"^\$\.lines\[([0-9]+)\]")


def _message_object(
    layout: CsvLayout, rows: list[tuple[int, dict[str, str]]]
) -> tuple[dict[str, Any], list[int]]:
    """The JSON object for ``rows``, and the line number of each entry of its ``lines``."""
    line_names = set(layout.line_columns)
    obj: dict[str, Any] = {"type": layout.type_name}
    for name, text in rows[0][1].items():
        if name in layout.columns and name not in line_names and text:
            obj[name] = _cell(layout, name, text)
    line_rows: list[int] = []
    if layout.line_columns:
        lines = []
        for line_no, values in rows:
            line = {n: _cell(layout, n, values[n]) for n in layout.line_columns if values.get(n)}
            if line:  # a full reversal's row has no line cells
                lines.append(line)
                line_rows.append(line_no)
        obj["lines"] = lines
    return obj, line_rows


_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_DECIMAL = re.compile(r"^[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n"})


def _cell(layout: CsvLayout, name: str, text: str) -> Any:
    """The JSON value of one cell. What does not parse stays text, so that the decoder
    reports it with the same code and message as in JSON (``wrong_type``, or
    ``fractional_amount`` for 12.5 in an amount column)."""
    if name in layout.whole_numbers:
        if _INTEGER.match(text):
            return int(text)
        if _DECIMAL.match(text):
            return float(text)
    elif name in layout.booleans:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return text


def _disagreement(
    layout: CsvLayout, first: tuple[int, dict[str, str]], values: dict[str, str]
) -> Rejection | None:
    """Order-level cells of a later row of the same order must equal the first row's."""
    first_line, first_values = first
    line_names = set(layout.line_columns)
    for name in layout.columns:
        if name in line_names or values.get(name, "") == first_values.get(name, ""):
            continue
        code = RejectCode.CURRENCY_MISMATCH if name == "currency" else RejectCode.INVALID_VALUE
        return Rejection(
            code=code,
            path=f"$.{name}",
            message=f"{name} {values.get(name, '')!r} differs from {first_values.get(name, '')!r}"
            f" on line {first_line}, the first row of this {layout.type_name}",
        )
    return None
