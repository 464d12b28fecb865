"""Published program versions: idempotent, immutable, and the exact text retrievable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from ingest_support import admin, env_for

from ledger import program_store
from schemas.program_loader import load_program, parse_program
from schemas.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = env_for(settings)
    return subprocess.run(
        [sys.executable, "-m", "incentives.cli", "programs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_publish_twice_is_a_no_op_and_show_returns_the_exact_bytes(
    settings: Settings,
) -> None:
    first = _cli(settings, "publish", str(EXAMPLE), "--by", "finance-ops")
    again = _cli(settings, "publish", str(EXAMPLE), "--by", "finance-ops")
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert "northwind-emea version 1: published" in first.stdout
    assert "northwind-emea version 1: unchanged" in again.stdout

    shown = _cli(settings, "show", "northwind-emea")
    assert shown.returncode == 0
    header, _, body = shown.stdout.partition("\n")
    assert body.encode() == EXAMPLE.read_bytes()
    assert load_program(EXAMPLE).sha256 in header and "by finance-ops" in header


async def test_same_version_with_other_text_is_refused(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    try:
        await program_store.publish(conn, load_program(EXAMPLE), published_by="a")
        changed = EXAMPLE.read_bytes().replace(b"name: Northwind", b"name: Southwind")
        with pytest.raises(program_store.ProgramStoreError, match="publish it as version 2"):
            await program_store.publish(
                conn, parse_program(changed, "edited.yaml"), published_by="b"
            )
        assert (await program_store.fetch(conn, "northwind-emea")).source_text == (
            EXAMPLE.read_bytes()
        )
    finally:
        await conn.close()


async def test_tampered_text_is_detected_on_read(settings: Settings) -> None:
    conn = await asyncpg.connect(admin(settings))
    try:
        await program_store.publish(conn, load_program(EXAMPLE), published_by="a")
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute("UPDATE program_versions SET published_by = 'x'")
        await conn.execute("ALTER TABLE program_versions DISABLE TRIGGER USER")
        await conn.execute(
            "UPDATE program_versions SET source_text = convert_to(replace("
            "convert_from(source_text, 'UTF8'), 'Northwind', 'Southwind'), 'UTF8')"
        )
        with pytest.raises(program_store.ProgramStoreError, match="tampered"):
            await program_store.fetch(conn, "northwind-emea", 1)
    finally:
        await conn.close()


def test_validate_reports_the_line_of_a_bad_value(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = EXAMPLE.read_text()
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith("version:"))
    bad.write_text(text.replace("version: 1", "version: 0", 1))
    result = _cli(settings, "validate", str(bad))
    assert result.returncode == 1
    assert f"{bad}:{line}:10: $.version:" in result.stderr
