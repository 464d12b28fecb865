"""Load program documents (YAML, or TOML) with errors that point at the line of the bad value.

The pipeline is: bytes -> YAML node tree (PyYAML's compose keeps a line and column on every
node) -> plain Python -> ``msgspec.convert`` into ``schemas.programs.Program`` -> semantic
checks (``schemas.program_checks``). Every error, from the YAML parser, from msgspec or from
the checks, carries a path like ``$.rules[2].bands[1].rate_bp``; walking that path down the
node tree finds the line and column to report, as in::

    programs/x.yaml:42:7: $.rules[2].bands[1].rate_bp: Expected `int`, got `float`

Nothing in a document is ever evaluated: scalars are built by PyYAML's safe constructor
only, with a resolver narrowed to YAML 1.2's core schema (see ``_StrictResolver``).
"""

import datetime as dt
import difflib
import hashlib
import re
import tomllib
from pathlib import Path
from typing import Final, Literal

import msgspec
import yaml
from msgspec import inspect as mi
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from schemas.program_check_parts import Finding
from schemas.program_checks import check_program
from schemas.programs import RULE_KINDS, Program

Format = Literal["yaml", "toml"]

# Bounds on what a document may make the loader do; real programs are a few hundred lines.
TEXT_BYTES_MAX: Final = 1 << 20
_VALUES_MAX: Final = 100_000  # Also stops alias bombs ("billion laughs").
_DEPTH_MAX: Final = 32  # Also stops recursive aliases.


def content_sha256(text: bytes) -> str:
    """The content hash a program is stored under: sha256 of its exact source bytes.

    The hash is over the text, not over the decoded document, so that the bytes an auditor
    retrieves for a ledger record are exactly the bytes that were published, comments and all.
    """
    return hashlib.sha256(text).hexdigest()


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    line: int | None  # 1-based; None when the format keeps no positions (TOML).
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}" if self.column is None else f":{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}"


class ProgramError(Exception):
    """A program document that cannot be used, with every problem found in it."""

    def __init__(self, problems: list[Problem]) -> None:
        assert problems, "a ProgramError needs at least one problem"
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class LoadedProgram(msgspec.Struct, frozen=True, kw_only=True):
    program: Program
    source: str
    text: bytes  # Exactly what was read, for storing next to the hash.
    sha256: str


# ------------------------------------------------------------------------------ YAML side


class _StrictResolver(BaseResolver):
    """YAML 1.2 core-schema scalars instead of PyYAML's YAML 1.1 defaults.

    YAML 1.1 reads ``NO`` (Norway's region code) and ``off`` as booleans and ``010`` as
    octal 8, silently. Here only true/false are booleans, and integers are plain decimals
    (underscores allowed for readability: ``1_000_000``), so such values stay text and a
    wrong type is reported instead of guessed.
    """


_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_IMPLICIT: Final = (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9_]*)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    (
        "tag:yaml.org,2002:timestamp",
        r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)"
        r"[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)$",
        "0123456789",
    ),
    (_MERGE_TAG, r"^(?:<<)$", "<"),
)
for _tag, _pattern, _first in _IMPLICIT:
    _StrictResolver.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
# An empty plain scalar is null; it has no first character to index the resolver by.
_StrictResolver.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])


class _Loader(Reader, Scanner, Parser, Composer, SafeConstructor, _StrictResolver):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        _StrictResolver.__init__(self)


class _NodeError(Exception):
    def __init__(self, node: Node, path: str, message: str) -> None:
        super().__init__(message)
        self.node, self.path, self.message = node, path, message


class _Builder:
    """Turns a node tree into plain Python, refusing what YAML allows but a program must not."""

    def __init__(self, loader: _Loader) -> None:
        self._loader = loader
        self._values = 0

    def build(self, node: Node, path: str, depth: int = 0) -> object:
        self._values += 1
        if self._values > _VALUES_MAX or depth > _DEPTH_MAX:
            limit = f"{_VALUES_MAX} values" if depth <= _DEPTH_MAX else f"{_DEPTH_MAX} levels"
            raise _NodeError(node, path, f"document too large: expected at most {limit}")
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            self._expect_tag(node, "tag:yaml.org,2002:seq", path)
            return [self.build(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            # The safe constructor knows only plain YAML types; anything else (such as
            # python/object tags) is refused here rather than constructed.
            raise _NodeError(
                node, path, f"unsupported tag {node.tag}: expected plain YAML"
            ) from None

    def _mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, object]:
        self._expect_tag(node, "tag:yaml.org,2002:map", path)
        out: dict[str, object] = {}
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                raise _NodeError(
                    key_node,
                    path,
                    "merge keys (<<) are not supported: expected the keys written out",
                )
            key = self.build(key_node, path, depth + 1)
            if not isinstance(key, str):
                raise _NodeError(key_node, path, f"expected a text key, got `{key!r}`")
            if key in out:
                raise _NodeError(
                    key_node,
                    f"{path}.{key}",
                    f"duplicate key `{key}`: expected each key once, first at line {lines[key]}",
                )
            lines[key] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, f"{path}.{key}", depth + 1)
        return out

    @staticmethod
    def _expect_tag(node: Node, tag: str, path: str) -> None:
        if node.tag != tag:
            raise _NodeError(node, path, f"unsupported tag {node.tag}: expected plain YAML")


def _yaml_to_python(text: str, source: str) -> tuple[object, Node]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ProgramError([_problem(source, 1, 1, "$", "empty document: expected a program")])
        return _Builder(loader).build(node, "$"), node
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = f"invalid YAML: {error.problem or error.context}"
        context = error.context_mark
        if error.problem and error.context and context is not None and context is not mark:
            where = f"line {context.line + 1}, column {context.column + 1}"
            message = f"{message} ({error.context} at {where})"
        line, column = (None, None) if mark is None else (mark.line + 1, mark.column + 1)
        raise ProgramError([_problem(source, line, column, "$", message)]) from None
    except _NodeError as error:
        mark = error.node.start_mark
        problem = _problem(source, mark.line + 1, mark.column + 1, error.path, error.message)
        raise ProgramError([problem]) from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level, before our depth bound applies.
        message = f"document too large: expected at most {_DEPTH_MAX} levels"
        raise ProgramError([_problem(source, None, None, "$", message)]) from None
    finally:
        loader.dispose()


def _problem(source: str, line: int | None, column: int | None, path: str, message: str) -> Problem:
    return Problem(source=source, line=line, column=column, path=path, message=message)


# ------------------------------------------------------------------ paths back to lines

_TOKEN: Final = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_AT_PATH: Final = re.compile(r"^(?P<message>.*) - at `(?P<path>\$[^`]*)`$", re.S)
_UNKNOWN_FIELD: Final = re.compile(r"^Object contains unknown field `(?P<field>[^`]*)`$")


def _tokens(path: str) -> list[str | int]:
    """``$.rules[2].rate_bp`` -> ``["rules", 2, "rate_bp"]``; stops at anything else."""
    tokens: list[str | int] = []
    position = 1  # After the "$".
    while match := _TOKEN.match(path, position):
        field, index = match.groups()
        tokens.append(field if field is not None else int(index))
        position = match.end()
    return tokens


def _locate(root: Node, tokens: list[str | int], key: bool = False) -> Node:
    """The node at ``tokens``, or the deepest one on the way when the path leaves the text.

    A path can end at a value the document leaves to its default (a semantic check about
    ``min_team_value`` when it was not written): the enclosing mapping is then the best
    place to point at. With ``key``, the last field's key node is returned instead of its
    value, which is where an unknown or duplicate key is.
    """
    node = root
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        if isinstance(token, int) and isinstance(node, SequenceNode):
            if token >= len(node.value):
                return node
            node = node.value[token]
        elif isinstance(token, str) and isinstance(node, MappingNode):
            pairs = [
                (k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == token
            ]
            if not pairs:
                return node
            node = pairs[0][0] if key and last else pairs[0][1]
        else:
            return node
    return node


def _type_at(tokens: list[str | int], data: object) -> mi.Type | None:
    """The msgspec type expected at a path, following tagged unions by the data's tag."""
    current: mi.Type = mi.type_info(Program)
    for token in tokens:
        current = _unwrap(current, data)
        if isinstance(token, str) and isinstance(current, mi.StructType):
            fields = {f.encode_name: f for f in current.fields}
            if token not in fields:
                return None
            current = fields[token].type
            data = data.get(token) if isinstance(data, dict) else None
        elif isinstance(token, int) and isinstance(current, (mi.VarTupleType, mi.ListType)):
            current = current.item_type
            data = data[token] if isinstance(data, list) and token < len(data) else None
        else:
            return None
    return _unwrap(current, data)


def _unwrap(kind: mi.Type, data: object) -> mi.Type:
    while True:
        if isinstance(kind, mi.Metadata):
            kind = kind.type
            continue
        if not isinstance(kind, mi.UnionType):
            return kind
        options = [t for t in kind.types if not isinstance(t, mi.NoneType)]
        tagged = [
            t
            for t in options
            if isinstance(t, mi.StructType)
            and t.tag_field is not None
            and isinstance(data, dict)
            and data.get(t.tag_field) == t.tag
        ]
        if len(options) == 1 or tagged:
            kind = (tagged or options)[0]
            continue
        return kind


def _expected_one_of(given: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(given, choices, n=1, cutoff=0.7)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return f"expected one of: {', '.join(sorted(choices))}{hint}"


def _explain(message: str, path: str, data: object) -> tuple[str, str, bool]:
    """msgspec's message made specific: (path, message, whether it is about a key)."""
    tokens = _tokens(path)
    unknown = _UNKNOWN_FIELD.match(message)
    if unknown:
        field = unknown["field"]
        struct = _type_at(tokens, data)
        names = [f.encode_name for f in struct.fields] if isinstance(struct, mi.StructType) else []
        if isinstance(struct, mi.StructType) and struct.tag_field is not None:
            names.append(struct.tag_field)
        return f"{path}.{field}", f"unknown field `{field}`: {_expected_one_of(field, names)}", True
    if message.startswith("Invalid value ") and tokens and tokens[-1] == "kind":
        value = message.removeprefix("Invalid value ")
        kinds = list(RULE_KINDS)
        return (
            path,
            f"unknown rule kind {value}: {_expected_one_of(value.strip(chr(39)), kinds)}",
            False,
        )
    if message.startswith("Invalid enum value "):
        kind = _type_at(tokens, data)
        if isinstance(kind, mi.EnumType):
            values = [str(member.value) for member in kind.cls]
            given = message.removeprefix("Invalid enum value ").strip("'")
            return path, f"{message}: {_expected_one_of(given, values)}", False
    return path, message, False


# ---------------------------------------------------------------------------- the API


def parse_program(text: bytes, source: str, fmt: Format = "yaml") -> LoadedProgram:
    """Decode, validate and check one program document; raise ProgramError listing problems.

    ``source`` names the document in messages (usually its path).
    """
    if len(text) > TEXT_BYTES_MAX:
        message = f"document too large: expected at most {TEXT_BYTES_MAX} bytes, got {len(text)}"
        raise ProgramError([_problem(source, None, None, "$", message)])
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as error:
        line = text[: error.start].count(b"\n") + 1
        message = f"expected UTF-8 text, got byte 0x{text[error.start]:02x}"
        raise ProgramError([_problem(source, line, None, "$", message)]) from None
    data, root = (
        _toml_to_python(decoded, source) if fmt == "toml" else _yaml_to_python(decoded, source)
    )
    program = _convert(data, root, source)
    findings = check_program(program)
    if findings:
        raise ProgramError(sorted((_finding(f, root, source) for f in findings), key=_position))
    return LoadedProgram(program=program, source=source, text=text, sha256=content_sha256(text))


def load_program(path: str | Path) -> LoadedProgram:
    """Load a ``.yaml``/``.yml`` or ``.toml`` program file."""
    path = Path(path)
    fmt: Format = "toml" if path.suffix == ".toml" else "yaml"
    return parse_program(path.read_bytes(), str(path), fmt)


def _convert(data: object, root: Node | None, source: str) -> Program:
    try:
        return msgspec.convert(data, Program)
    except msgspec.ValidationError as error:
        match = _AT_PATH.match(str(error))
        message, path = (match["message"], match["path"]) if match else (str(error), "$")
        path, message, key = _explain(message, path, data)
        line, column = _line_of(root, path, key)
        if message.endswith("got `str`") and root is not None:
            # Say what was read as text: ``010`` or ``1,5`` look like numbers to a reader.
            node = _locate(root, _tokens(path))
            if isinstance(node, ScalarNode):
                message = f"{message} ({node.value!r})"
        raise ProgramError([_problem(source, line, column, path, message)]) from None


def _line_of(root: Node | None, path: str, key: bool = False) -> tuple[int | None, int | None]:
    if root is None:
        return None, None
    mark = _locate(root, _tokens(path), key).start_mark
    return mark.line + 1, mark.column + 1


def _finding(finding: Finding, root: Node | None, source: str) -> Problem:
    line, column = _line_of(root, finding.path)
    return _problem(source, line, column, finding.path, finding.message)


def _position(problem: Problem) -> tuple[int, int]:
    return (problem.line or 0, problem.column or 0)


def _toml_to_python(text: str, source: str) -> tuple[object, None]:
    # tomllib keeps no positions, so TOML problems name the path but no line; the decode
    # error itself does carry one, in its message.
    try:
        return tomllib.loads(text), None
    except tomllib.TOMLDecodeError as error:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(error))
        line, column = (int(found[1]), int(found[2])) if found else (None, None)
        message = f"invalid TOML: {str(error).split(' (at line')[0]}"
        raise ProgramError([_problem(source, line, column, "$", message)]) from None


def dump_program(program: Program) -> str:
    """The program as YAML, defaults left out; parsing it gives back an equal Program."""
    data = msgspec.to_builtins(program, builtin_types=(dt.date,))
    return yaml.safe_dump(_lists(data), sort_keys=False, allow_unicode=True, width=100)


def _lists(value: object) -> object:
    # safe_dump has no representer for tuples, which is how the frozen types hold lists.
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value
