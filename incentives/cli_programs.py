"""`incentives programs validate | show | diff | publish`: program documents and versions."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import getpass
import sys
from pathlib import Path

import asyncpg

from ledger import program_store
from schemas.program_loader import ProgramError, load_program
from schemas.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("programs", help="validate, show, diff and publish program versions")
    actions = p.add_subparsers(dest="programs_action", required=True)

    a = actions.add_parser("validate", help="check program files; every problem with its line")
    a.add_argument("files", nargs="+", type=Path)
    a.set_defaults(handler=_validate)

    a = actions.add_parser("publish", help="store program files as published versions")
    a.add_argument("files", nargs="+", type=Path)
    a.add_argument("--by", default=getpass.getuser(), help="who publishes (recorded)")
    a.set_defaults(handler=_publish)

    a = actions.add_parser("show", help="print a published version's exact text "
                           "(PROGRAM_ID, PROGRAM_ID@VERSION or PROGRAM_ID --version N)")
    a.add_argument("program_id", metavar="PROGRAM_ID[@VERSION]")
    a.add_argument("--version", type=int)
    a.set_defaults(handler=_show)

    a = actions.add_parser("diff", help="diff two versions: a FILE or PROGRAM_ID@VERSION each")
    a.add_argument("old")
    a.add_argument("new")
    a.set_defaults(handler=_diff)

    a = actions.add_parser("list", help="every published version")
    a.set_defaults(handler=_list)


def _validate(settings: Settings, args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            loaded = load_program(path)
        except ProgramError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        p = loaded.program
        print(
            f"{path}: ok: {p.program_id} version {p.version}, {len(p.rules)} rules, "
            f"sha256 {loaded.sha256}"
        )
    return 1 if failed else 0


def _publish(settings: Settings, args: argparse.Namespace) -> int:
    try:
        loaded = [load_program(path) for path in args.files]
    except ProgramError as exc:
        print(exc, file=sys.stderr)
        return 1

    async def run() -> int:
        # Program versions are deployed like migrations, by the owner: no process that
        # runs all the time (the workers, the API) may change the rules.
        conn = await asyncpg.connect(settings.pg_dsn("owner"))
        try:
            for item in loaded:
                outcome = await program_store.publish(conn, item, published_by=args.by)
                p = item.program
                print(f"{p.program_id} version {p.version}: {outcome} (sha256 {item.sha256})")
        except program_store.ProgramStoreError as exc:
            print(f"incentives: {exc}", file=sys.stderr)
            return 1
        finally:
            await conn.close()
        return 0

    return asyncio.run(run())


async def _fetch(
    settings: Settings, program_id: str, version: int | None
) -> program_store.StoredProgram:
    conn = await asyncpg.connect(settings.pg_dsn("reader"))
    try:
        return await program_store.fetch(conn, program_id, version)
    finally:
        await conn.close()


def _show(settings: Settings, args: argparse.Namespace) -> int:
    program_id, version = args.program_id, args.version
    if "@" in program_id:  # PROGRAM_ID@VERSION, as `programs diff` takes it
        program_id, _, text = program_id.partition("@")
        if not text.isdigit() or (version is not None and version != int(text)):
            print(f"incentives: {args.program_id!r}: expected PROGRAM_ID@VERSION with a "
                  "whole version number (and no other --version)", file=sys.stderr)
            return 1
        version = int(text)
    try:
        stored = asyncio.run(_fetch(settings, program_id, version))
    except program_store.ProgramStoreError as exc:
        print(f"incentives: {exc}", file=sys.stderr)
        return 1
    print(
        f"# {stored.program_id} version {stored.version}, sha256 {stored.content_sha256}, "
        f"published {stored.published_at:%Y-%m-%d %H:%M:%S%z} by {stored.published_by}"
    )
    sys.stdout.write(stored.source_text.decode("utf-8"))
    return 0


def _text_of(settings: Settings, ref: str) -> tuple[str, str]:
    """(label, text) of a file path, or of PROGRAM_ID@VERSION from the database."""
    if "@" in ref and not Path(ref).exists():
        program_id, _, version = ref.partition("@")
        stored = asyncio.run(_fetch(settings, program_id, int(version)))
        return ref, stored.source_text.decode("utf-8")
    return ref, Path(ref).read_text(encoding="utf-8")


def _diff(settings: Settings, args: argparse.Namespace) -> int:
    try:
        (old_label, old), (new_label, new) = (
            _text_of(settings, args.old),
            _text_of(settings, args.new),
        )
    except (program_store.ProgramStoreError, OSError, ValueError) as exc:
        print(f"incentives: {exc}", file=sys.stderr)
        return 1
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), old_label, new_label
    )
    sys.stdout.writelines(lines)
    return 0


def _list(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> list[program_store.StoredProgram]:
        conn = await asyncpg.connect(settings.pg_dsn("reader"))
        try:
            return await program_store.fetch_all(conn)
        finally:
            await conn.close()

    for s in asyncio.run(run()):
        until = s.effective_to.isoformat() if s.effective_to else "open"
        print(f"{s.program_id}\tv{s.version}\t{s.effective_from}..{until}\t{s.content_sha256}")
    return 0
