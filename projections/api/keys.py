"""API keys: made once, shown once, stored hashed (``api_keys``, migration 0014).

A key reads ``ik_<key_id>_<secret>``: ``key_id`` (12 characters) finds the row, and the
SHA-256 of ``secret`` (32 random bytes, base32) must match the stored hash, compared in
constant time. The secret is random enough that a plain hash suffices (no password
stretching is needed for 256 bits). Roles: ``finance`` (reads everything, sends payouts
and adjustments as commands), ``auditor`` (reads everything, sends nothing) and
``partner`` (its own balances, statements and tier only).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import string
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    import asyncpg

_ALPHABET = string.ascii_lowercase + string.digits


class Role(enum.StrEnum):
    FINANCE = "finance"
    AUDITOR = "auditor"
    PARTNER = "partner"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    role: Role
    partner_id: str | None
    label: str


class Created(msgspec.Struct, frozen=True, kw_only=True):
    key: str  # shown once
    principal: Principal


class KeyError_(ValueError):
    pass


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def split(key: str) -> tuple[str, str] | None:
    parts = key.strip().split("_")
    if len(parts) != 3 or parts[0] != "ik" or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1], parts[2]


async def create(conn: asyncpg.Connection, role: str, partner_id: str | None = None,
                 label: str = "") -> Created:
    try:
        chosen = Role(role)
    except ValueError:
        raise KeyError_(f"unknown role {role!r}: expected finance, auditor or partner") from None
    if (chosen is Role.PARTNER) != (partner_id is not None):
        raise KeyError_("a partner key needs --partner, and only a partner key takes one")
    if partner_id is not None and not await conn.fetchval(
            "SELECT EXISTS (SELECT FROM partner_state WHERE partner_id = $1)", partner_id):
        raise KeyError_(f"unknown partner {partner_id!r}: the ledger has no such partner")
    key_id = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    secret = base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=").lower()
    await conn.execute(
        "INSERT INTO api_keys (key_id, secret_hash, role, partner_id, label)"
        " VALUES ($1, $2, $3, $4, $5)", key_id, _hash(secret), chosen.value, partner_id, label)
    return Created(key=f"ik_{key_id}_{secret}", principal=Principal(
        key_id=key_id, role=chosen, partner_id=partner_id, label=label))


async def authenticate(conn: asyncpg.Connection, key: str) -> Principal | None:
    """The principal of a valid, unrevoked key, else None."""
    parts = split(key)
    if parts is None:
        return None
    row = await conn.fetchrow(
        "SELECT secret_hash, role, partner_id, label FROM api_keys"
        " WHERE key_id = $1 AND revoked_at IS NULL", parts[0])
    if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), _hash(parts[1])):
        return None
    return Principal(key_id=parts[0], role=Role(row["role"]), partner_id=row["partner_id"],
                     label=row["label"])


async def revoke(conn: asyncpg.Connection, key_id: str) -> bool:
    status: str = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL",
        key_id)
    return status.endswith(" 1")


async def listed(conn: asyncpg.Connection) -> list[dict[str, object]]:
    rows = await conn.fetch("SELECT key_id, role, partner_id, label, created_at, revoked_at"
                            " FROM api_keys ORDER BY created_at, key_id")
    return [dict(r) for r in rows]
