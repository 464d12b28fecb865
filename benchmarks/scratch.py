"""What one benchmark run owns on the local stack, and its clean-up.

Every database, topic and consumer group of a run carries the run's process id in its name
(``bench_<pid>_<name>``, ``bench<pid>-<name>.``), so the run never touches a developer's
data, and a later run can tell the leftovers of a run that was killed (its process is gone)
from those of one still running: it drops the former when it starts. At the end, whether
the run succeeded or not, every child process is stopped (SIGTERM, then SIGKILL), every
database dropped and every topic deleted.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Mapping
from pathlib import Path

import asyncpg
import msgspec

from ledger.migrate import migrate
from schemas.settings import LOCAL_PG_ROLES, PROJECT_ROOT, Settings
from stack.acls import Binding, admin_client, delete_acls, ensure_acls
from stack.common import pid_alive
from stack.kafka import STREAMS, delete_topics, ensure_topics
from stack.postgres import admin_dsn

_DATABASE = re.compile(r"^bench_(\d+)_")
_TOPIC = re.compile(r"^bench(\d+)-")
STOP_TIMEOUT_S = 60.0


class BenchError(Exception):
    """A phase could not be measured; the message says what happened and where to look."""


class Scratch:
    """The databases, topics and processes of one run (``async with``)."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings = settings
        self.folder = folder
        self.pid = os.getpid()
        self._databases: list[str] = []
        self._acls: list[Binding] = []
        self._template: str | None = None
        self.children: list[subprocess.Popen[bytes]] = []

    async def __aenter__(self) -> Scratch:
        self.folder.mkdir(parents=True, exist_ok=True)
        await drop_leftovers(self.settings)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- names

    def database_name(self, name: str) -> str:
        return f"bench_{self.pid}_{name}"

    def prefix(self, name: str) -> str:
        return f"bench{self.pid}-{name}."

    # -- databases and topics

    async def database(self, name: str) -> Settings:
        """A fresh migrated database; settings that point at it (and at no topics yet)."""
        database = self.database_name(name)
        template = await self._migrated_template()
        await _admin(
            self.settings, f'CREATE DATABASE "{database}" TEMPLATE "{template}" OWNER {OWNER}'
        )
        self._databases.append(database)
        return msgspec.structs.replace(self.settings, pg_database=database)

    async def drop(self, settings: Settings) -> None:
        name = settings.pg_database
        await _admin(self.settings, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if settings.pg_database in self._databases:
            self._databases.remove(settings.pg_database)

    async def topics(self, settings: Settings, name: str) -> Settings:
        """``settings`` with topics of their own (created, empty) and a consumer group."""
        with_topics = msgspec.structs.replace(
            settings, topic_prefix=self.prefix(name), consumer_group=f"bench{self.pid}-{name}"
        )
        await ensure_topics(with_topics, STREAMS)
        # The run's own topics and group get the ACLs the stack's have.
        self._acls.extend(await ensure_acls(with_topics))
        return with_topics

    async def _migrated_template(self) -> str:
        if self._template is None:
            template = self.database_name("template")
            await _admin(self.settings, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
            await _admin(self.settings, f'CREATE DATABASE "{template}" OWNER {OWNER}')
            self._databases.append(template)
            owner = msgspec.structs.replace(self.settings, pg_database=template)
            conn = await asyncpg.connect(owner.pg_dsn("owner"))
            try:
                await migrate(conn)
            finally:
                await conn.close()
            self._template = template
        return self._template

    # -- processes

    def spawn(self, args: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """``python args`` with its output in ``log``, stopped at the latest by ``close``."""
        with open(log, "ab") as out:
            child = subprocess.Popen(
                [sys.executable, *args], cwd=PROJECT_ROOT, env=dict(env), stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.children.append(child)
        return child

    async def command(self, settings: Settings, args: list[str], timeout_s: float,
                      ) -> tuple[int, str, str]:
        """``python args`` to its end, pointed at ``settings``; (status, stdout, stderr).
        Killed when it takes longer than ``timeout_s`` (status -9) or the run is cancelled."""
        child = await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=PROJECT_ROOT, env=self.env(settings),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(child.communicate(), timeout_s)
        except TimeoutError:
            out, err = b"", f"killed after {timeout_s:.0f} s".encode()
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        assert child.returncode is not None
        return child.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def env(self, settings: Settings, **extra: str) -> dict[str, str]:
        """The environment that points a child process at ``settings``' database and topics."""
        env = dict(os.environ)
        env.update(
            INCENTIVES_PG_DATABASE=settings.pg_database,
            # Each process connects as its own role with the stack's passwords.
            INCENTIVES_SECRETS_FILE=str(settings.secrets_path),
            INCENTIVES_KAFKA_BOOTSTRAP=settings.bootstrap,
            INCENTIVES_TOPIC_PREFIX=settings.topic_prefix,
            INCENTIVES_CONSUMER_GROUP=settings.consumer_group,
            # faust's data folder goes into the run's folder, not into the stack's.
            INCENTIVES_STACK_DIR=str(self.folder),
            INCENTIVES_METRICS_PORT="0",
        )
        env.update(extra)
        return env

    def stop_children(self) -> None:
        for child in self.children:
            stop(child)
        self.children.clear()

    async def close(self) -> None:
        """Stop, drop and delete everything of the run. A step that fails (the broker went
        away) is reported and the others still run; the next run drops what is left."""
        self.stop_children()
        for database in list(reversed(self._databases)):
            await _try(f"drop database {database}", _admin(
                self.settings, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        self._databases.clear()
        await _try("delete the run's topics",
                   delete_topics(self.settings, prefix=f"bench{self.pid}-"))
        await _try("delete the run's ACLs", delete_acls(self.settings, self._acls))
        self._acls.clear()


OWNER = LOCAL_PG_ROLES["owner"]


def stop(child: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM, then SIGKILL after ``timeout_s``; the exit status."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)
    return child.returncode


async def _try(what: str, step: Awaitable[object]) -> None:
    try:
        await step
    except Exception as exc:  # clean-up goes on; the next run removes the rest
        print(f"bench: could not {what}: {exc!r}", file=sys.stderr)


async def _admin(settings: Settings, sql: str) -> None:
    conn = await asyncpg.connect(admin_dsn(settings, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def drop_leftovers(settings: Settings) -> list[str]:
    """Drop the databases and topics of earlier runs whose process is gone."""
    conn = await asyncpg.connect(admin_dsn(settings, "postgres"))
    try:
        names = [r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")]
        dead = [n for n in names if (m := _DATABASE.match(n)) and not pid_alive(int(m[1]))]
        # Templates last: a copy made from one must go first.
        for name in sorted(dead, key=lambda n: n.endswith("_template")):
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
    admin = admin_client(settings)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics()
                  if (m := _TOPIC.match(t)) and not pid_alive(int(m[1]))]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()
    return dead + topics

