"""`incentives audit verify | checkpoint | replay` and `incentives balance`: the ledger's own
commands.

`audit checkpoint` takes a checkpoint and publishes every checkpoint not yet on the
``checkpoints`` topic (exit 1 if Kafka cannot take it; the next run catches up), and with
``--export FILE`` appends it to FILE; `audit verify --against topic|FILE` also checks the
stored checkpoints against those copies (see audit.anchors).

Exit codes of `audit verify` and `audit replay`: 0 the ledger verifies (or replays
identically), 1 at least one finding (or difference), 2 the audit could not run (database
unreachable, ...), so a script never mistakes "could not look" for "clean".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiokafka.errors import KafkaError

from audit import anchors
from audit.anchors import AnchorError
from ledger import store
from ledger.checkpoint import CheckpointAnchor, anchor_of
from ledger.verify import Finding, VerifyReport
from schemas.settings import PgRole, Settings, SettingsError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="verify the ledger's chains and checkpoints")
    actions = p.add_subparsers(dest="audit_action", required=True)

    a = actions.add_parser("verify", help="recompute every hash and check every chain and "
                           "checkpoint; exit 1 on any finding")
    a.add_argument("--progress", action="store_true",
                   help="print records verified and records/s on stderr as it goes")
    a.add_argument("--chunk", type=int, default=store.CHUNK_DEFAULT,
                   help="records per page read from PostgreSQL")
    a.add_argument("--against", metavar="FILE|topic", default=None,
                   help="also check the checkpoints against their copies held outside the "
                        "database: the checkpoints topic (the word topic), or a FILE that "
                        "`audit checkpoint --export` wrote")
    a.set_defaults(handler=_verify)

    a = actions.add_parser("checkpoint", help="pin every chain head in a new checkpoint, "
                           "and publish it to the checkpoints topic")
    a.add_argument("--export", metavar="FILE", type=Path, default=None,
                   help="also append the new checkpoint to FILE (one JSON line), for the "
                        "auditor to keep outside the database")
    a.set_defaults(handler=_checkpoint)

    a = actions.add_parser("replay", help="rebuild the ledger from the stored inputs with the "
                           "same engine and compare, record by record; exit 1 on a difference")
    a.set_defaults(handler=_replay)

    p = sub.add_parser("balance", help="a partner's balances per account and asset")
    p.add_argument("--partner", required=True, help="partner id")
    p.add_argument("--as-of", type=_aware_datetime, default=None, metavar="ISO-DATETIME",
                   help="count records that occurred at or before this moment "
                        "(with a time zone, e.g. 2026-03-31T23:59:59Z); default: all")
    p.set_defaults(handler=_balance)


def _aware_datetime(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from exc
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone; write e.g. {text}Z or {text}+01:00")
    return moment


def _run(
    settings: Settings, role: PgRole, work: Callable[[asyncpg.Connection], Awaitable[int]]
) -> int:
    """Run `work` on one connection as `role`; a database that cannot be reached exits 2."""
    async def main() -> int:
        conn = await asyncpg.connect(settings.pg_dsn(role))
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(main())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, SettingsError) as exc:
        print(f"incentives: cannot use the ledger database: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"incentives: cannot read the checkpoints topic: {exc!r}", file=sys.stderr)
        return 2
    except (store.StoreError, AnchorError) as exc:
        print(f"incentives: {exc}", file=sys.stderr)
        return 1


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    started = time.monotonic()

    def progress(records: int, partners: int) -> None:
        elapsed = max(time.monotonic() - started, 1e-9)
        print(f"verified {records:,} records, {partners:,} partners, "
              f"{records / elapsed:,.0f} records/s", file=sys.stderr, flush=True)

    async def work(conn: asyncpg.Connection) -> int:
        anchors = await _anchors(settings, args.against)
        if args.against is not None and not anchors:
            print(f"incentives: {args.against} holds no checkpoint to verify against",
                  file=sys.stderr)
            return 1
        with _cyclic_gc_paused():
            report = await store.verify_ledger(conn, chunk=args.chunk,
                                               progress=progress if args.progress else None,
                                               anchors=anchors)
        for finding in report.findings:
            print(_finding_line(finding))
        print(_summary(report, time.monotonic() - started, args.against))
        return 0 if report.ok else 1

    return _run(settings, "auditor", work)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """The audit allocates millions of short-lived, acyclic objects (records, postings,
    explanations); CPython's cyclic collector would traverse them again and again for
    nothing, which measured a quarter of the audit's time. Reference counting still frees
    every page; this is a process-level choice, hence here and not in the store."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _finding_line(f: Finding) -> str:
    where = "ledger" if f.partner_id is None else f"partner {f.partner_id}"
    if f.seq is not None:
        where += f" seq {f.seq}"
    if f.record_id is not None:
        where += f" record {f.record_id}"
    if f.checkpoint_seq is not None:
        where += f" checkpoint {f.checkpoint_seq}"
    return (f"FINDING {f.code.value}: {where}: {f.message}; expected {f.expected}; "
            f"found {f.found}")


async def _anchors(settings: Settings, against: str | None) -> list[CheckpointAnchor]:
    if against is None:
        return []
    if against == "topic":
        return await anchors.read_topic(settings)
    return anchors.read_file(Path(against))


def _summary(report: VerifyReport, elapsed_s: float, against: str | None = None) -> str:
    rate = report.records / elapsed_s if elapsed_s > 0 else 0.0
    verdict = "OK" if report.ok else f"{len(report.findings)} finding(s)"
    held = "" if against is None else (
        f" and {report.anchors:,} held outside the database ({against})")
    return (f"verified {report.records:,} records of {report.partners:,} partners against "
            f"{report.checkpoints:,} checkpoint(s){held} in {elapsed_s:.1f}s "
            f"({rate:,.0f} records/s): {verdict}")


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from audit.replay import replay

    started = time.monotonic()

    async def work(conn: asyncpg.Connection) -> int:
        with _cyclic_gc_paused():
            report = await replay(conn)
        for line in report.shown:
            print(f"DIFFERENCE {line}")
        if report.differences > len(report.shown):
            print(f"... and {report.differences - len(report.shown)} more differences")
        verdict = "identical" if report.ok else f"{report.differences} difference(s)"
        print(f"replayed {report.inputs:,} inputs into {report.replayed:,} records in "
              f"{time.monotonic() - started:.1f}s; the ledger holds {report.stored:,}: {verdict}")
        return 0 if report.ok else 1

    return _run(settings, "auditor", work)


def _checkpoint(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        cp = await store.take_checkpoint(conn, datetime.now(UTC))
        print(f"checkpoint {cp.checkpoint_seq} at {cp.taken_at.isoformat()} over "
              f"{cp.partner_count:,} partner chains: root {cp.root.hex()}")
        if args.export is not None:
            anchors.append_file(args.export, [anchor_of(cp)])
            print(f"appended to {args.export}")
        topic = settings.topic(anchors.CHECKPOINTS)
        try:
            sent = await anchors.publish(settings, await store.load_checkpoints(conn))
        except Exception as exc:  # Kafka away: the checkpoint stands, its copy waits
            print(f"incentives: checkpoint {cp.checkpoint_seq} is not yet on {topic}: {exc!r};"
                  " the next `audit checkpoint` publishes it", file=sys.stderr)
            return 1
        print(f"published to {topic}: checkpoint(s) {', '.join(map(str, sent)) or 'none new'}")
        return 0

    return _run(settings, "auditor", work)


def _balance(settings: Settings, args: argparse.Namespace) -> int:
    async def work(conn: asyncpg.Connection) -> int:
        totals = await store.balances(conn, partner_id=args.partner, as_of=args.as_of)
        when = args.as_of.isoformat() if args.as_of else "now"
        print(f"balances of partner {args.partner} as of {when} (minor units, points or "
              "award units; shared accounts show this partner's share):")
        if not totals:
            print("  (no balances)")
        own = f"partner:{args.partner}:"
        # The partner's own accounts first, then its share of program and system accounts.
        for (account, asset), amount in sorted(
            totals.items(), key=lambda item: (not item[0][0].startswith(own), item[0])
        ):
            print(f"  {account:<40} {asset:<24} {amount:>20}")
        return 0

    return _run(settings, "reader", work)
