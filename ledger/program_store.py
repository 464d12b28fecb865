"""Published program versions in PostgreSQL, each with the exact text behind it.

Publishing is idempotent: the same program id, version and text again is a no-op. The same
id and version with another text is refused: a published version never changes, a change is
a new version. The text's sha256 (schemas.program_loader.content_sha256) is stored and
re-checked on every read, so a record's (program_id, program_version) leads to bytes that
provably are what was published.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Literal

import asyncpg
import msgspec

from ledger.store import budgets
from schemas.program_loader import LoadedProgram, parse_program


class ProgramStoreError(Exception):
    """A publish or read that cannot be done; the message says which program and why."""


class StoredProgram(msgspec.Struct, frozen=True, kw_only=True):
    program_id: str
    version: int
    content_sha256: str
    source_name: str
    source_text: bytes
    effective_from: dt.date
    effective_to: dt.date | None
    published_at: dt.datetime
    published_by: str

    def load(self) -> LoadedProgram:
        fmt: Literal["yaml", "toml"] = "toml" if self.source_name.endswith(".toml") else "yaml"
        return parse_program(self.source_text, self.source_name, fmt)


async def publish(
    conn: asyncpg.Connection, loaded: LoadedProgram, *, published_by: str
) -> Literal["published", "unchanged"]:
    program = loaded.program
    async with conn.transaction():
        existing = await conn.fetchrow(
            "SELECT content_sha256 FROM program_versions WHERE program_id = $1 AND version = $2",
            program.program_id,
            program.version,
        )
        if existing is not None:
            if existing["content_sha256"] == loaded.sha256:
                return "unchanged"
            raise ProgramStoreError(
                f"{program.program_id} version {program.version} is already published with "
                f"sha256 {existing['content_sha256']}; {loaded.source} has sha256 "
                f"{loaded.sha256}. A published version never changes: publish it as version "
                f"{await _next_version(conn, program.program_id)}."
            )
        await conn.execute(
            """INSERT INTO program_versions (program_id, version, content_sha256, source_name,
                   source_text, effective_from, effective_to, published_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            program.program_id,
            program.version,
            loaded.sha256,
            loaded.source,
            loaded.text,
            program.effective_from,
            program.effective_to,
            published_by,
        )
        await budgets.ensure(conn, [(program.program_id, program.version)])
    return "published"


async def earliest_effective_from(conn: asyncpg.Connection) -> tuple[str, dt.date] | None:
    """The program version that takes effect first, as (program id, effective_from)."""
    row = await conn.fetchrow(
        "SELECT program_id, effective_from FROM program_versions"
        " ORDER BY effective_from, program_id LIMIT 1"
    )
    return None if row is None else (row["program_id"], row["effective_from"])


async def _next_version(conn: asyncpg.Connection, program_id: str) -> int:
    latest = await conn.fetchval(
        "SELECT max(version) FROM program_versions WHERE program_id = $1", program_id
    )
    return int(latest or 0) + 1


async def fetch(
    conn: asyncpg.Connection, program_id: str, version: int | None = None
) -> StoredProgram:
    """One version (the newest if `version` is None), its hash re-checked."""
    row = await conn.fetchrow(
        """SELECT * FROM program_versions WHERE program_id = $1
              AND ($2::int IS NULL OR version = $2)
           ORDER BY version DESC LIMIT 1""",
        program_id,
        version,
    )
    if row is None:
        which = "any version" if version is None else f"version {version}"
        raise ProgramStoreError(f"no published program {program_id!r} with {which}")
    return _checked(row)


async def fetch_all(conn: asyncpg.Connection) -> list[StoredProgram]:
    rows = await conn.fetch("SELECT * FROM program_versions ORDER BY program_id, version")
    return [_checked(row) for row in rows]


def _checked(row: asyncpg.Record) -> StoredProgram:
    stored = StoredProgram(**dict(row))
    actual = hashlib.sha256(stored.source_text).hexdigest()
    if actual != stored.content_sha256:
        raise ProgramStoreError(
            f"{stored.program_id} version {stored.version}: stored text has sha256 {actual}, "
            f"but it was published as {stored.content_sha256}: the table was tampered with"
        )
    return stored
