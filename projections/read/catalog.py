"""The published program versions as the read side needs them: currency, budget and tiers.

Loaded from ``program_versions`` (ledger.program_store) and kept until a version is
published (the count and newest publication time are checked on each use, one cheap query).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ledger import program_store
from schemas.programs import Program

if TYPE_CHECKING:
    import asyncpg


class Catalog:
    def __init__(self) -> None:
        self.programs: dict[tuple[str, int], Program] = {}
        self._seen: tuple[int, dt.datetime | None] = (-1, None)

    async def refresh(self, conn: asyncpg.Connection) -> Catalog:
        marker = await conn.fetchrow(
            "SELECT count(*) AS n, max(published_at) AS at FROM program_versions")
        seen = (int(marker["n"]), marker["at"])
        if seen != self._seen:
            stored = await program_store.fetch_all(conn)
            self.programs = {(s.program_id, s.version): s.load().program for s in stored}
            self._seen = seen
        return self

    def newest(self) -> dict[str, Program]:
        """Per program id, its highest version."""
        out: dict[str, Program] = {}
        for (pid, _version), program in sorted(self.programs.items()):
            out[pid] = program
        return out

    def tier_name(self, program_id: str, tier: str) -> str | None:
        for (pid, _), program in sorted(self.programs.items(), reverse=True):
            if pid == program_id:
                for t in program.tiers:
                    if t.id == tier:
                        return t.name
        return None

    def entry_tier(self, program_id: str, on: dt.date) -> tuple[int, str] | None:
        """The version in force on ``on`` (or the earliest) and its entry tier."""
        versions = sorted((v, p) for (pid, v), p in self.programs.items() if pid == program_id)
        if not versions:
            return None
        chosen = versions[0]
        for version, program in versions:
            if program.effective_from <= on:
                chosen = (version, program)
        program = chosen[1]
        return (chosen[0], program.tiers[0].id) if program.tiers else None
