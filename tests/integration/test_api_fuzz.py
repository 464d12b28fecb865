"""The finance API fuzzed from its own OpenAPI document (schemathesis): every operation, with
generated parameters and bodies, as finance (every route) and as a partner (many a 403),
answers without a server error, and every error is problem+json. Bounded: a fixed number of
examples per operation, so the run stays within the suite's budget."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import httpx
import msgspec
import schemathesis
from api_support import Api, make_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incentives.sample_data import generate
from ledger import program_store
from processors.writer import ledger as ledger_writer
from schemas.codec import Limits, decode
from schemas.program_loader import load_program
from schemas.settings import Settings
from schemas.streams import MESSAGE_TYPES, stream_of

EXAMPLE = Path(__file__).resolve().parents[2] / "programs" / "example-channel-2026.yaml"
EXAMPLES_PER_OPERATION = 25
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


async def _load(settings: Settings) -> None:
    """A quarter of sample traffic, through the ledger stage (no Kafka needed to read)."""
    import asyncpg

    owner = await asyncpg.connect(settings.pg_dsn("owner"))
    try:
        await program_store.publish(owner, load_program(EXAMPLE), published_by="test")
    finally:
        await owner.close()
    conn = await asyncpg.connect(settings.pg_dsn("writer"))
    try:
        programs = await ledger_writer.Programs().refresh(conn)
        messages = [decode(stream_of(MESSAGE_TYPES[r["type"]]), msgspec.json.encode(r), now=NOW,
                           limits=Limits()) for r in generate(partners=6, sales=200)]
        for start in range(0, len(messages), 150):
            async with conn.transaction():
                await ledger_writer.write(conn, messages[start:start + 150],  # type: ignore[arg-type]
                                          programs)
    finally:
        await conn.close()


def _fuzz(base: str, keys: list[str]) -> tuple[list[str], dict[str, int]]:
    """Every operation with generated cases: the failures found (none expected) and the
    requests sent per operation."""
    document = httpx.get(f"{base}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    sent: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), derandomize=True)
        @given(case=operation.as_strategy(), key=st.sampled_from(keys))
        def check(case: schemathesis.Case, key: str) -> None:
            response = case.call(base_url=base, headers={"X-API-Key": key}, timeout=30)
            sent[label] = sent.get(label, 0) + 1  # noqa: B023 - called within this iteration
            where = f"{case.method} {case.formatted_path} {case.query or ''}"
            if response.status_code >= 500:
                failures.append(f"{where}: {response.status_code} {response.text[:300]}")
            elif response.status_code >= 400:
                kind = response.headers.get("content-type", "")
                kind = kind[0] if isinstance(kind, list) and kind else kind
                if kind != "application/problem+json":
                    failures.append(f"{where}: {response.status_code} as {kind!r}")

        check()
    return failures, sent


async def test_the_api_fuzzed_from_its_openapi_document_gives_no_server_error(
    settings: Settings, tmp_path: Path
) -> None:
    await _load(settings)
    with Api(settings, tmp_path / "api.log") as api:
        keys = [make_key(settings, "finance"), make_key(settings, "partner", "P-00001")]
        failures, sent = await asyncio.to_thread(_fuzz, api.base, keys)
        # Every operation of the document was exercised, most of them with many cases.
        assert len(sent) == 16 and sum(sent.values()) > 10 * len(sent), sent
        assert not failures, "\n".join(failures[:20]) + "\n" + api.log()[-3000:]
        assert "Traceback" not in api.log(), api.log()[-3000:]
