"""`incentives worker | publish | schemas export | deadletters | reconcile`: the event contract's
commands. Settings arrive from ``incentives.cli``, which reads them once.

Exit codes: 0 done; 1 the command ran and found a problem (a rejected line, an unaccounted
message, a failed batch); 2 it could not run (unreachable database or broker, bad input).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError

from schemas.settings import PgRole, Settings, SettingsError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", help="run a ledger worker: Kafka's source topics into the ledger")
    p.set_defaults(handler=_worker)

    p = sub.add_parser("publish", help="validate and publish a JSONL or CSV file to Kafka")
    p.add_argument("file", help="the file, or - for standard input")
    p.add_argument("--format", choices=["jsonl", "csv"], default=None,
                   help="default: csv for a .csv file, else jsonl")
    p.add_argument("--type", dest="message_type", default=None,
                   help="for CSV without a type column: the message type of every row")
    p.set_defaults(handler=_publish)

    p = sub.add_parser("schemas", help="the JSON Schemas of every event and command")
    actions = p.add_subparsers(dest="schemas_action", required=True)
    a = actions.add_parser("export", help="write <Type>.json per message type and index.json")
    a.add_argument("directory")
    a.set_defaults(handler=_export)

    p = sub.add_parser("deadletters", help="summarise and list dead letters, from PostgreSQL")
    p.add_argument("--code", default=None, help="only this reason code (e.g. unknown_field)")
    p.add_argument("--limit", type=_positive, default=20, help="newest N listed (default 20)")
    p.set_defaults(handler=_deadletters)

    p = sub.add_parser("reconcile", help="account for every message on the source topics")
    p.set_defaults(handler=_reconcile)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from processors.worker.app import WorkerError, run_worker
    from processors.worker.telemetry import RecordTally
    from processors.writer import ledger as ledger_writer

    tally = RecordTally()  # the ledger records each batch appended, for the metrics
    try:
        return run_worker(
            settings, apply_accepted=ledger_writer.hook(on_appended=tally.add), tally=tally
        )
    except (WorkerError, OSError, asyncpg.PostgresError, KafkaError) as exc:
        print(f"incentives worker: {exc}", file=sys.stderr)
        return 2


def _publish(settings: Settings, args: argparse.Namespace) -> int:
    from incentives.publisher import PublishError, publish_file

    try:
        summary = asyncio.run(
            publish_file(args.file, settings, fmt=args.format, message_type=args.message_type)
        )
    except (PublishError, SettingsError) as exc:
        print(f"incentives publish: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: {summary}")
    return 1 if summary.rejected else 0


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from schemas.jsonschema import export

    written = export(args.directory)
    print(f"wrote {len(written)} files to {args.directory}")
    return 0


def _on_db(
    settings: Settings, role: PgRole, work: Callable[[asyncpg.Connection], Awaitable[Any]]
) -> Any:
    async def main() -> Any:
        conn = await asyncpg.connect(settings.pg_dsn(role))
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


def _deadletters(settings: Settings, args: argparse.Namespace) -> int:
    from processors.outbox import deadletters

    async def work(conn: asyncpg.Connection) -> tuple[list[Any], list[Any]]:
        return await deadletters.summary(conn), await deadletters.latest(
            conn, args.code, args.limit
        )

    try:
        summary, latest = _on_db(settings, "reader", work)
    except (OSError, asyncpg.PostgresError, SettingsError) as exc:
        print(f"incentives deadletters: {exc}", file=sys.stderr)
        return 2
    total = sum(r["count"] for r in summary)
    print(f"{total} dead letters" + (":" if total else ""))
    for r in summary:
        waiting = f", {r['unpublished']} not yet on the topic" if r["unpublished"] else ""
        print(f"  {r['code']:<24} {r['count']:>8}{waiting}")
    if latest:
        which = f" with code {args.code}" if args.code else ""
        print(f"newest {len(latest)}{which}:")
    for r in latest:
        who = f" partner {r['partner_id']}" if r["partner_id"] else ""
        event = f" event {r['event_id']}" if r["event_id"] else ""
        size = "no value" if r["raw"] is None else f"{len(r['raw'])} bytes"
        print(
            f"  {r['received_at']:%Y-%m-%d %H:%M:%S} {r['topic']}/{r['partition']}"
            f"@{r['kafka_offset']}{who}{event} ({size})\n"
            f"      {r['code']}: {r['path']}: {r['message']}"
        )
    return 0


def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from audit import reconcile
    from processors.worker.app import SOURCE_STREAMS
    from processors.worker.kafka_offsets import end_offsets

    topics = [settings.topic(s) for s in SOURCE_STREAMS]
    try:
        ends = asyncio.run(end_offsets(settings, topics, "auditor"))

        async def work(conn: asyncpg.Connection) -> list[reconcile.TopicCount]:
            return await reconcile.count(conn, settings.consumer_group, topics, ends)

        counts = _on_db(settings, "auditor", work)
    except (OSError, asyncpg.PostgresError, KafkaError, SettingsError) as exc:
        print(f"incentives reconcile: {exc}", file=sys.stderr)
        return 2
    lines, ok = reconcile.render(counts)
    print("\n".join(lines))
    return 0 if ok else 1
