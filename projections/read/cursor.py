"""Opaque cursors for keyset pagination: the key of the last item of a page, as URL-safe
text. A cursor is only read back by the query that made it; a tampered one is an error
(`CursorError`), never a crash."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import msgspec

_ENCODER = msgspec.json.Encoder()


class CursorError(ValueError):
    pass


def encode(*key: Any) -> str:
    values = [v.isoformat() if isinstance(v, dt.datetime) else v for v in key]
    return base64.urlsafe_b64encode(_ENCODER.encode(values)).decode().rstrip("=")


def decode(cursor: str, *types: type) -> tuple[Any, ...]:
    """The key a cursor names, each part converted to the given type."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = msgspec.json.decode(raw)
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError("wrong shape")
        return tuple(_convert(v, t) for v, t in zip(values, types, strict=True))
    except (ValueError, TypeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CursorError(f"cursor {cursor[:40]!r} is not one this list gave out ({exc})"
                          ) from None


def _convert(value: Any, kind: type) -> Any:
    if kind is dt.datetime:
        moment = dt.datetime.fromisoformat(value)
        if moment.utcoffset() is None:
            raise ValueError("a cursor time without a zone")
        return moment
    return msgspec.convert(value, kind)
