"""Who may connect to the local PostgreSQL, and as whom.

- `pg_hba.conf` is the stack's own: scram-sha-256 for every user, on the socket and on
  loopback; no `trust`. The socket is the server user's alone (`unix_socket_permissions`
  0700, in a folder of mode 0700).
- The superuser `postgres` has a password (initdb's `--pwfile`), used by `stack up` to
  create the roles and the database, and by the test harness to create databases; by no
  process at run time.
- The login roles `incentives_owner` (owns the schema, runs the migrations),
  `incentives_writer` (the workers), `incentives_reader` (the queries) and
  `incentives_auditor` get their passwords as SCRAM verifiers, so the server never sees a
  password in the clear; their privileges are granted by migration 0012.

A cluster made before passwords (trust everywhere) is secured in place: its superuser gets
a password in single-user mode while the server is stopped, the stack's `pg_hba.conf`
replaces the old one, and the database's objects pass to the migration owner. The same
offline reset repairs a cluster whose superuser password the secrets file no longer holds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.settings import LOCAL_PG_ROLES

from .common import StackError
from .secrets import SUPERUSER, scram_sha256_verifier

if TYPE_CHECKING:
    import asyncpg

HBA_MARKER = "# incentives: every connection authenticates with scram-sha-256"
HBA = f"""{HBA_MARKER}
# Written by `incentives stack up` on every start; edits are overwritten.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""
# Server options of every start: only the server user may use the socket, and new
# passwords are stored as SCRAM verifiers.
SERVER_OPTIONS = "-c unix_socket_permissions=0700 -c password_encryption=scram-sha-256"
OWNER = LOCAL_PG_ROLES["owner"]


def hba_is_ours(data: Path) -> bool:
    try:
        return (data / "pg_hba.conf").read_text().startswith(HBA_MARKER)
    except OSError:
        return False


def set_superuser_password_offline(postgres: Path, data: Path, as_server_user: list[str],
                                   password: str) -> None:  # fmt: skip
    """Give the superuser a password in single-user mode (the server must be stopped):
    the way in when no password works, as initdb would have done."""
    statement = f"ALTER ROLE {SUPERUSER} PASSWORD {literal(scram_sha256_verifier(password))};\n"
    proc = subprocess.run(
        [*as_server_user, str(postgres), "--single", "-D", str(data), "postgres"],
        input=statement.encode(), capture_output=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0 or b"ERROR" in proc.stdout + proc.stderr:
        raise StackError(
            f"could not set the superuser's password in single-user mode (exit {proc.returncode}):"
            f" {(proc.stdout + proc.stderr).decode(errors='replace').strip()}"
        )


def literal(text: str) -> str:
    """A SQL string literal (for the utility statements that take no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def identifier(name: str) -> str:
    """A SQL identifier, quoted: any name, even one with a double quote, is one name."""
    return '"' + name.replace('"', '""') + '"'


# The group role of migration 0002, created here so that the owner needs no CREATEROLE.
LEGACY_GROUP = "incentives_app"


async def provision_roles(conn: asyncpg.Connection, passwords: dict[str, str]) -> None:
    """Create the login roles, or bring their password in line with the secrets file."""
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", LEGACY_GROUP):
        await conn.execute(f"CREATE ROLE {identifier(LEGACY_GROUP)} NOLOGIN")
    for name in LOCAL_PG_ROLES.values():
        verifier = literal(scram_sha256_verifier(passwords[name]))
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name)
        verb = "ALTER" if exists else "CREATE"
        await conn.execute(
            f"{verb} ROLE {identifier(name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
            f" NOREPLICATION NOBYPASSRLS PASSWORD {verifier}"
        )


async def provision_database(conn: asyncpg.Connection, database: str) -> None:
    """The database, owned by the migration owner (so are the objects of an older one)."""
    owner = await conn.fetchval(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", database
    )
    if owner is None:
        await conn.execute(f"CREATE DATABASE {identifier(database)} OWNER {identifier(OWNER)}")
    elif owner != OWNER:
        await conn.execute(f"ALTER DATABASE {identifier(database)} OWNER TO {identifier(OWNER)}")


# Tables, views and free-standing sequences of the schema, then its functions, that someone
# other than the owner holds (a database migrated as the superuser, before roles existed).
# A sequence owned by a column follows its table.
TRANSFER_OWNERSHIP = f"""
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
               AND c.relowner <> '{OWNER}'::regrole
               AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                               AND d.objid = c.oid AND d.deptype = 'a')
             ORDER BY c.relkind DESC
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO {OWNER}',
                       CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                      WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
                       r.name);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'public' AND p.proowner <> '{OWNER}'::regrole
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO {OWNER}', r.name);
    END LOOP;
END;
$$;
"""


async def transfer_ownership(conn: asyncpg.Connection) -> None:
    await conn.execute(TRANSFER_OWNERSHIP)
