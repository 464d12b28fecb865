"""Ordered, versioned, recorded schema migrations.

Each file `ledger/migrations/NNNN_name.sql` is one version. `migrate` applies the missing
ones in order, each in its own transaction together with its row in `schema_migrations`
(version, name, sha256 of the file), under an advisory lock so two processes starting at
once do not race. Re-running is harmless. A file whose text changed after it was applied
is an error: history is fixed, changes go in a new version.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# An arbitrary, fixed key for pg_advisory_xact_lock: "incentives migrations".
_LOCK_KEY = 7_340_211


class MigrationError(Exception):
    """The database's recorded migrations disagree with the files."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(folder: Path = MIGRATIONS) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{folder}: two migration files share a version: {versions}")
    return found


async def migrate(conn: asyncpg.Connection, folder: Path = MIGRATIONS) -> list[int]:
    """Apply the missing migrations; return the versions applied now."""
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    applied_now: list[int] = []
    for migration in discover(folder):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            row = await conn.fetchrow(
                "SELECT checksum FROM schema_migrations WHERE version = $1", migration.version
            )
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it "
                        "was applied; add a new migration instead of editing an applied one"
                    )
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied_now.append(migration.version)
    return applied_now
