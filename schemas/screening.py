"""Checks the codec makes around decoding that the types cannot express.

- ``too_deep`` measures how deep arrays and objects nest in raw JSON *before* any
  decoder sees it: msgspec (like every recursive parser) raises ``RecursionError`` on input
  nested a few thousand levels deep, so 2 KB of ``[`` would otherwise escape the codec.
- ``control_character`` finds a control character in any string field of a decoded
  message. Such characters cannot be stored (PostgreSQL's ``text`` and ``jsonb`` refuse
  U+0000) or shown safely (``\\x1b[31m`` rewrites a terminal; U+0085 is a line break to
  some tools). They are checked here, when a message is received, and not in the types'
  ``__post_init__``: stored inputs accepted before this rule must still decode for a
  replay.

Pure and dependency-free like the rest of ``schemas``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from itertools import accumulate

import msgspec

from schemas.events import TEXT_PATTERN, RejectCode, Rejection

# One step of depth per opening bracket, back one per closing bracket; other bytes none.
_DEPTH_STEP = [0] * 256
_DEPTH_STEP[ord("[")] = _DEPTH_STEP[ord("{")] = 1
_DEPTH_STEP[ord("]")] = _DEPTH_STEP[ord("}")] = -1
_NOT_BRACKETS = bytes(b for b in range(256) if not _DEPTH_STEP[b])
# A JSON string literal (brackets inside strings do not nest), written as an unrolled loop
# so that a long string costs one linear pass and no backtracking.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)

# C0 and C1 controls and DEL. Free text (reasons, descriptions) may hold tab and line breaks.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def depth_beyond(raw: bytes, limit: int) -> int | None:
    """How deep arrays and objects nest in ``raw`` (an object holding an array is 2) if
    that is more than ``limit``, else None.

    Exact for valid JSON; for broken JSON (an unterminated string) it may count brackets
    that a parser would read as text, which only makes the bound stricter. A message with
    no more opening brackets than ``limit`` is not scanned at all.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return None
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)
    return depth if depth > limit else None


def too_deep(raw: bytes, max_depth: int) -> Rejection | None:
    depth = depth_beyond(raw, max_depth)
    if depth is None:
        return None
    return Rejection(
        code=RejectCode.TOO_DEEP,
        path="$",
        message=f"arrays and objects nest {depth} levels deep; at most {max_depth} are accepted",
    )


def may_hold_controls(raw: bytes) -> bool:
    """False when no string decoded from ``raw`` can hold a control character, which is
    most messages: JSON forbids raw C0 controls in strings, so one needs an escape (a
    backslash), or is DEL or a C1 control (UTF-8 0xC2 0x80-0x9F) written raw."""
    return b"\\" in raw or b"\x7f" in raw or b"\xc2" in raw


def control_character(message: msgspec.Struct, at: str = "$") -> Rejection | None:
    """The first string field of ``message`` (or of a struct in one of its tuples) that
    holds a control character, as a ``control_character`` rejection naming its path."""
    free_text = _free_text_fields(type(message))
    for name in message.__struct_fields__:
        value = getattr(message, name)
        if isinstance(value, str):
            pattern = _CONTROL_IN_TEXT if name in free_text else _CONTROL
            found = pattern.search(value)
            if found is not None:
                return _rejection(f"{at}.{name}", value, found.start(), name in free_text)
        elif isinstance(value, tuple):
            for index, item in enumerate(value):
                if isinstance(item, msgspec.Struct):
                    rejection = control_character(item, f"{at}.{name}[{index}]")
                    if rejection is not None:
                        return rejection
    return None


def escape_controls(text: str) -> str:
    """``text`` with every control character written as ``\\uXXXX``: for words about a bad
    message (a field name in an error, a partner id in a listing), which are stored and
    shown and so must hold none themselves."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def safe_rejection(rejection: Rejection) -> Rejection:
    """``rejection`` with control characters of its path and message escaped."""
    path, message = escape_controls(rejection.path), escape_controls(rejection.message)
    if path == rejection.path and message == rejection.message:
        return rejection
    return Rejection(code=rejection.code, path=path, message=message)


def _rejection(path: str, value: str, index: int, free_text: bool) -> Rejection:
    char = value[index]
    name = unicodedata.name(char, "") or _CONTROL_NAMES.get(char, "a control character")
    allowed = " (tab and line breaks are allowed in free text)" if free_text else ""
    return Rejection(
        code=RejectCode.CONTROL_CHARACTER,
        path=path,
        message=f"control character U+{ord(char):04X} ({name.lower()}) at position {index}:"
        f" control characters cannot be stored or shown safely{allowed}",
    )


# unicodedata has no names for most controls; these are the ones producers send by mistake.
_CONTROL_NAMES = {
    "\x00": "NULL",
    "\x07": "BELL",
    "\x08": "BACKSPACE",
    "\t": "TAB",
    "\n": "LINE FEED",
    "\r": "CARRIAGE RETURN",
    "\x1b": "ESCAPE",
    "\x7f": "DELETE",
    "\x85": "NEXT LINE",
    "\x9b": "CONTROL SEQUENCE INTRODUCER",
}


@cache
def _free_text_fields(cls: type[msgspec.Struct]) -> frozenset[str]:
    """The fields of ``cls`` typed as free text (``schemas.events.Text``), where line
    breaks are allowed; found from the type itself so that new fields need no list."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    names = set()
    for field in info.fields:
        kind = field.type
        types = kind.types if isinstance(kind, msgspec.inspect.UnionType) else (kind,)
        for t in types:
            if isinstance(t, msgspec.inspect.Metadata):
                t = t.type
            if isinstance(t, msgspec.inspect.StrType) and t.pattern == TEXT_PATTERN:
                names.add(field.name)
    return frozenset(names)
