"""Shared fixtures. Pure tests need none of these; integration tests get the real stack.

The stack is started once per test session (or reused if it already runs). If it cannot
start, every test that needs it fails with the stack's own error: nothing is skipped.

The harness itself works as the PostgreSQL superuser (it creates a database per test) and
as the Kafka administrator (topics and ACLs per test); what the tests run, the worker and
the commands, connects as its own role and principal, as in production.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from schemas.settings import LOCAL_PG_ROLES, Settings, load_settings

OWNER = LOCAL_PG_ROLES["owner"]
# One template per test session, so that sessions running side by side (and migrations
# added meanwhile) do not disturb each other.
TEMPLATE_DB = f"incentives_test_template_{os.getpid()}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
    # The long fault run (`./dev.sh faults`) runs only when a -m expression names it.
    if "long_run" not in (config.getoption("markexpr") or ""):
        long = [item for item in items if item.get_closest_marker("long_run")]
        if long:
            config.hook.pytest_deselected(items=long)
            items[:] = [item for item in items if item not in long]


@pytest.fixture(scope="session")
def stack_settings() -> Iterator[Settings]:
    import asyncio

    import stack

    settings = load_settings()
    stack.up(settings)
    asyncio.run(_make_template(settings))
    yield settings
    asyncio.run(_drop_template(settings))


async def _drop_template(settings: Settings) -> None:
    import asyncpg

    from stack.postgres import admin_dsn

    admin = await asyncpg.connect(admin_dsn(settings, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
    finally:
        await admin.close()


async def _make_template(settings: Settings) -> None:
    """A database migrated by the migration owner, as `stack up` and `incentives init` do,
    that each test's database is copied from (fast and clean)."""
    import asyncpg

    from ledger.migrate import migrate
    from stack.postgres import admin_dsn

    admin = await asyncpg.connect(admin_dsn(settings, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}" OWNER {OWNER}')
    finally:
        await admin.close()
    owner = msgspec.structs.replace(settings, pg_database=TEMPLATE_DB).pg_dsn("owner")
    conn = await asyncpg.connect(owner)
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture
async def settings(stack_settings: Settings) -> AsyncIterator[Settings]:
    """Settings for one test: its own database (from the template) and its own topics."""
    import asyncpg

    from stack.acls import delete_acls, ensure_acls
    from stack.kafka import STREAMS, delete_topics, ensure_topics
    from stack.postgres import admin_dsn

    tag = uuid.uuid4().hex[:10]
    database = f"t_{tag}"
    admin = await asyncpg.connect(admin_dsn(stack_settings, "postgres"))
    try:
        await admin.execute(
            f'CREATE DATABASE "{database}" TEMPLATE "{TEMPLATE_DB}" OWNER {OWNER}'
        )
    finally:
        await admin.close()
    test_settings = msgspec.structs.replace(
        stack_settings,
        pg_database=database,
        topic_prefix=f"t{tag}.",
        consumer_group=f"g{tag}",
    )
    await ensure_topics(test_settings, STREAMS)
    # The test's own topics and group get the ACLs the stack's have.
    acls = await ensure_acls(test_settings)
    try:
        yield test_settings
    finally:
        # A new connection: the fault suite restarts PostgreSQL during a test.
        admin = await asyncpg.connect(admin_dsn(stack_settings, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
        # Every topic of the test goes too: a broker holding thousands of leftover
        # partitions runs out of file handles.
        await delete_topics(test_settings, prefix=test_settings.topic_prefix)
        await delete_acls(test_settings, acls)


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
