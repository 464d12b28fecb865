"""`incentives`: the one command line of the system. Settings are read here, once."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from incentives import cli_finance, cli_ingest, cli_ledger, cli_programs, cli_projections
from schemas.settings import Settings, SettingsError, load_settings

Handler = Callable[[Settings, argparse.Namespace], int]


def _stack(settings: Settings, args: argparse.Namespace) -> int:
    import stack

    if args.action == "up":
        lines = stack.up(settings)
    elif args.action == "down":
        lines = stack.down(settings)
    elif args.action == "status":
        lines = stack.status(settings)
    elif args.action == "reset":
        lines = [stack.reset(settings, args.service)]
    elif args.action == "env-file":
        from stack.secrets import write_env_file

        if not args.service:
            raise stack.StackError("env-file needs the path to write, e.g. .env")
        names = write_env_file(Path(args.service))
        lines = [f"wrote {len(names)} passwords to {args.service} (mode 0600): {', '.join(names)}"]
    else:
        for name, path in stack.logs(settings).items():
            print(f"==> {name}: {path}")
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            print("\n".join(text[-args.lines :]))
        return 0
    print("\n".join(lines))
    return 0


def _smoke(settings: Settings, args: argparse.Namespace) -> int:
    """Publish N messages, consume them with a worker killed and restarted midway, verify."""
    import signal

    import stack
    from incentives import smoke
    from stack.kafka import ensure_topics

    print("\n".join(stack.up(settings)))
    run_id = uuid.uuid4().hex[:8]
    # Names the ACLs of the stack already cover (stack.acls: the smoke topics, the
    # worker's groups).
    stream = f"smoke-{run_id}"
    topic, group = settings.topic(stream), f"{settings.consumer_group}-smoke-{run_id}"
    asyncio.run(ensure_topics(settings, [stream]))
    started = time.monotonic()
    asyncio.run(smoke.publish(settings, topic, args.messages))
    print(f"published {args.messages} messages to {topic}")
    log = f"{settings.stack_dir}/smoke-worker.log"
    worker = smoke.start_worker(settings, topic, group, log)
    dsn = settings.pg_dsn("auditor")
    seen = asyncio.run(smoke.wait_for_rows(dsn, topic, args.messages // 3, 120))
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    print(f"worker killed with SIGKILL after {seen} rows; restarting")
    worker = smoke.start_worker(settings, topic, group, log)
    try:
        asyncio.run(smoke.wait_for_rows(dsn, topic, args.messages, 180))
        time.sleep(1.0)  # Anything written twice would show up now.
        rows, distinct = asyncio.run(smoke.delivered(dsn, topic))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    elapsed = time.monotonic() - started
    ok = rows == distinct == args.messages
    print(
        f"{rows} rows, {distinct} distinct, {args.messages} published in {elapsed:.1f}s: "
        + ("exactly once" if ok else "MISMATCH")
    )
    return 0 if ok else 1


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from incentives import demo

    return demo.run(settings, partners=args.partners, sales=args.sales)


def _init(settings: Settings, args: argparse.Namespace) -> int:
    """Bring an external database's schema, the Kafka topics and their ACLs up to date:
    the migrations as the migration owner (INCENTIVES_PG_OWNER_DSN), the topics and ACLs
    as the Kafka administrator (INCENTIVES_KAFKA_ADMIN_USER and _PASSWORD)."""
    import asyncpg

    from ledger.migrate import migrate
    from stack.acls import ensure_acls
    from stack.kafka import STREAMS, ensure_topics

    async def run() -> list[int]:
        conn = await asyncpg.connect(settings.pg_dsn("owner"))
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    applied = asyncio.run(run())
    asyncio.run(ensure_topics(settings, STREAMS))
    added = asyncio.run(ensure_acls(settings))
    print(
        f"migrations applied: {applied or 'none (up to date)'}; topics ensured: {STREAMS};"
        f" ACLs added: {len(added) or 'none (up to date)'}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="incentives", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cli_programs.register(sub)
    cli_ledger.register(sub)
    cli_ingest.register(sub)
    cli_projections.register(sub)
    cli_finance.register(sub)

    p = sub.add_parser("stack", help="the local Kafka and PostgreSQL")
    p.add_argument("action", choices=["up", "down", "status", "logs", "reset", "env-file"])
    p.add_argument("service", nargs="?", default="",
                   help="for reset: kafka or postgres; for env-file: the .env to write for"
                        " docker-compose.yml")
    p.add_argument("--lines", type=int, default=40, help="for logs: lines per service")
    p.set_defaults(handler=_stack)

    p = sub.add_parser("init", help="apply migrations and create topics (external services)")
    p.set_defaults(handler=_init)

    p = sub.add_parser("demo", help="the whole system on the local stack")
    p.add_argument("--partners", type=int, default=40)
    p.add_argument("--sales", type=int, default=3_000)
    p.set_defaults(handler=_demo)

    p = sub.add_parser("smoke", help="exactly-once smoke flow through Kafka and PostgreSQL")
    p.add_argument("--messages", type=int, default=10_000)
    p.set_defaults(handler=_smoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        handler: Handler = args.handler
        return handler(settings, args)
    except SettingsError as exc:
        print(f"incentives: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from ledger.migrate import MigrationError
        from stack import StackError

        if isinstance(exc, StackError | MigrationError):
            print(f"incentives: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
