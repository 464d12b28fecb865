"""The read side's connections: every one read-only.

The finance API and the query commands connect here, and only here, as the read-only role
(``Settings.pg_dsn("reader")``, which can write nothing: migrations 0012-0014). Besides,
every session is opened with ``default_transaction_read_only``, so a query of the read
side cannot write even through a role that could.
"""

from __future__ import annotations

import asyncpg

READ_ONLY = {"default_transaction_read_only": "on", "application_name": "incentives-read"}


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings=READ_ONLY)


async def _keep(conn: asyncpg.Connection) -> None:
    """Nothing to reset on release: read-only queries leave no session state (no SET, no
    LISTEN, no open transaction: the pool checks that last itself). asyncpg's default
    reset is one more round trip per request, which was half the cost of a balance."""


async def pool(dsn: str, *, min_size: int = 4, max_size: int = 10) -> asyncpg.Pool:
    created = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                        server_settings=READ_ONLY, reset=_keep)
    assert created is not None
    return created
