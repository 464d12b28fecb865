"""The finance API: a read-only HTTP service over the projections and the ledger.

`create_app(settings)` builds the Litestar application (msgspec on the wire, OpenAPI at
``/openapi.json``, errors as ``application/problem+json``); `projections.api.serve` runs it.
One place builds what it talks to (`Wiring`): the connection pool of the read-only role
(``Settings.pg_dsn("reader")``) and the Kafka producer of the commands finance sends, as the
finance principal. Routes are in `projections.api.routes`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from projections.api import keys, problems
from projections.api.metrics import Metrics
from projections.read import Catalog, db
from schemas.settings import Settings

AUTH_CACHE_S = 10.0  # a revoked key keeps working at most this long


@dataclass
class Wiring:
    """What the API talks to, built once from settings (the seam for roles and principals:
    the pool is the read-only role's; `producer` builds the commands producer)."""

    settings: Settings
    pool: asyncpg.Pool | None = None
    catalog: Catalog = field(default_factory=Catalog)
    metrics: Metrics = field(default_factory=Metrics)
    producer: Any = None
    key_cache: dict[str, tuple[float, keys.Principal | None]] = field(default_factory=dict)

    async def start(self, app: object = None) -> None:
        self.pool = await db.pool(self.settings.pg_dsn("reader"))

    async def stop(self, app: object = None) -> None:
        if self.producer is not None:
            await self.producer.stop()
        if self.pool is not None:
            await self.pool.close()

    async def commands_producer(self) -> Any:
        """The producer of finance's commands, started on first use (reads need no Kafka)."""
        if self.producer is None:
            from aiokafka import AIOKafkaProducer

            # As the finance principal, the only one that may write the commands topic.
            producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap,
                                        enable_idempotence=True, request_timeout_ms=10_000,
                                        **self.settings.kafka_auth("finance"))
            await producer.start()
            self.producer = producer
        return self.producer

    async def principal(self, conn: asyncpg.Connection, key: str) -> keys.Principal | None:
        now = time.monotonic()
        cached = self.key_cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await keys.authenticate(conn, key)
        if len(self.key_cache) > 10_000:
            self.key_cache.clear()
        self.key_cache[key] = (now + AUTH_CACHE_S, found)
        return found


def wiring(state: State) -> Wiring:
    found: Wiring = state.wiring
    return found


async def provide_conn(state: State) -> AsyncIterator[asyncpg.Connection]:
    pool = wiring(state).pool
    assert pool is not None
    async with pool.acquire() as conn:
        yield conn


async def provide_principal(request: Request[Any, Any, Any], state: State,
                            conn: asyncpg.Connection) -> keys.Principal:
    header = request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization") or ""
    if not header and auth.lower().startswith("bearer "):
        header = auth[7:].strip()
    if not header:
        raise problems.unauthorized("an API key is needed: send it as X-API-Key (or "
                                    "Authorization: Bearer <key>)")
    found: keys.Principal | None = await wiring(state).principal(conn, header)
    if found is None:
        raise problems.unauthorized("the API key is not valid (unknown, malformed or revoked)")
    return found


async def refuse_nul(request: Request[Any, Any, Any]) -> None:
    """Text with U+0000 cannot reach PostgreSQL (it has no such character): a 400, before
    any handler runs, wherever it hides (path or query)."""
    if "\x00" in request.url.path or any("\x00" in k or any("\x00" in v for v in values)
                                         for k, values in request.query_params.dict().items()):
        raise problems.bad_request("a parameter holds the character U+0000, which no id, date "
                                   "or code may contain")


@get("/health", include_in_schema=True, tags=["operations"])
async def health(state: State) -> Response[dict[str, Any]]:
    """200 while the database answers within 2 s, else 503."""
    pool = wiring(state).pool
    try:
        assert pool is not None
        async with pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)
        return Response({"status": "ok", "checks": {"postgres": "ok"}})
    except Exception as exc:  # noqa: BLE001 - any failure is "not healthy", with its name
        return Response({"status": "failing", "checks": {"postgres": type(exc).__name__}},
                        status_code=503)


@get("/metrics", include_in_schema=True, tags=["operations"], media_type="text/plain")
async def metrics(state: State) -> Response[bytes]:
    """Prometheus text format: requests by route and status, their durations."""
    body, content_type = wiring(state).metrics.render()
    return Response(body, media_type=content_type)


@get("/openapi.json", include_in_schema=False)
async def openapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = request.app.openapi_schema.to_schema()
    return schema


def create_app(settings: Settings) -> Litestar:
    from projections.api import routes

    state = Wiring(settings)
    return Litestar(
        route_handlers=[health, metrics, openapi, *routes.HANDLERS],
        state=State({"wiring": state}),
        on_startup=[state.start],
        on_shutdown=[state.stop],
        dependencies={"conn": Provide(provide_conn), "principal": Provide(provide_principal)},
        exception_handlers={
            problems.ApiError: problems.on_api_error,
            HTTPException: problems.on_http_error,
            Exception: problems.on_unexpected,
        },
        middleware=[state.metrics.middleware],
        before_request=refuse_nul,
        openapi_config=OpenAPIConfig(
            title="Channel incentive ledger: finance API", version="1.0.0",
            description=__doc__, path="/docs",
            components=Components(security_schemes={"ApiKey": SecurityScheme(
                type="apiKey", name="X-API-Key", security_scheme_in="header")}),
            security=[{"ApiKey": []}]),
        debug=False,
    )
