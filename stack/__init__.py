"""The local stack: Apache Kafka and PostgreSQL run from this machine's own binaries."""

from __future__ import annotations

import shutil
from pathlib import Path

from schemas.settings import Settings

from . import kafka, postgres
from .common import StackError

__all__ = ["StackError", "down", "logs", "reset", "status", "up"]


def up(settings: Settings) -> list[str]:
    return [postgres.up(settings), kafka.up(settings)]


def down(settings: Settings) -> list[str]:
    return [kafka.down(settings), postgres.down(settings)]


def status(settings: Settings) -> list[str]:
    return [kafka.status(settings), postgres.status(settings)]


def logs(settings: Settings) -> dict[str, Path]:
    return {"kafka": kafka.KafkaPaths(settings).log, "postgres": postgres.PgPaths(settings).log}


def reset(settings: Settings, which: str) -> str:
    """Delete a stopped service's data (the jars stay cached)."""
    if which == "kafka":
        kafka.down(settings)
        shutil.rmtree(kafka.KafkaPaths(settings).data, ignore_errors=True)
    elif which == "postgres":
        postgres.down(settings)
        shutil.rmtree(postgres.PgPaths(settings).data, ignore_errors=True)
    else:
        raise StackError(f"unknown service {which!r}: expected kafka or postgres")
    return f"{which} data removed"
