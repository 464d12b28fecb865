"""`incentives api` (the finance API) and `incentives api-keys create | list | revoke`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import asyncpg

from processors.worker.telemetry import JsonFormatter
from schemas.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("api", help="serve the finance API (127.0.0.1:19500 by default; "
                       "INCENTIVES_API_HOST, INCENTIVES_API_PORT, 0 picks a free port)")
    p.set_defaults(handler=_api)

    p = sub.add_parser("api-keys", help="make, list and revoke the finance API's keys")
    actions = p.add_subparsers(dest="keys_action", required=True)
    a = actions.add_parser("create", help="make a key; it is shown once, only its hash is kept")
    a.add_argument("--role", required=True, choices=["finance", "auditor", "partner"])
    a.add_argument("--partner", help="the partner a partner key reads (partner role only)")
    a.add_argument("--label", default="", help="who or what the key is for")
    a.set_defaults(handler=_create)
    a = actions.add_parser("list", help="every key: id, role, partner, label, when made, revoked")
    a.set_defaults(handler=_list)
    a = actions.add_parser("revoke", help="revoke a key by its id (the part after ik_)")
    a.add_argument("key_id")
    a.set_defaults(handler=_revoke)


def _api(settings: Settings, args: argparse.Namespace) -> int:
    from projections.api.serve import serve

    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        serve(settings)
    except OSError as exc:
        print(f"incentives: cannot listen on {settings.api_host}:{settings.api_port}: {exc}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _keys(settings: Settings, work: object) -> int:
    from projections.api.keys import KeyError_

    async def main() -> int:
        conn = await asyncpg.connect(settings.pg_dsn("owner"))
        try:
            return await work(conn)  # type: ignore[operator, no-any-return]
        finally:
            await conn.close()

    try:
        return asyncio.run(main())
    except KeyError_ as exc:
        print(f"incentives: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"incentives: cannot use the ledger database: {exc}", file=sys.stderr)
        return 2


def _create(settings: Settings, args: argparse.Namespace) -> int:
    from projections.api import keys

    async def work(conn: asyncpg.Connection) -> int:
        made = await keys.create(conn, args.role, args.partner, args.label)
        p = made.principal
        print(made.key)
        scope = f" of partner {p.partner_id}" if p.partner_id else ""
        print(f"api key {p.key_id}: role {p.role}{scope}; shown once, store it now (only its "
              "hash is kept)", file=sys.stderr)
        return 0

    return _keys(settings, work)


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from projections.api import keys

    async def work(conn: asyncpg.Connection) -> int:
        for k in await keys.listed(conn):
            state = f"revoked {k['revoked_at']:%Y-%m-%d}" if k["revoked_at"] else "active"
            print(f"{k['key_id']}\t{k['role']}\t{k['partner_id'] or '-'}\t{state}\t"
                  f"{k['created_at']:%Y-%m-%d}\t{k['label']}")
        return 0

    return _keys(settings, work)


def _revoke(settings: Settings, args: argparse.Namespace) -> int:
    from projections.api import keys

    async def work(conn: asyncpg.Connection) -> int:
        if not await keys.revoke(conn, args.key_id):
            print(f"incentives: no active key {args.key_id!r}", file=sys.stderr)
            return 1
        print(f"api key {args.key_id} revoked")
        return 0

    return _keys(settings, work)
