"""The worker's operations endpoint, served from its own event loop.

``GET /metrics`` serves ``processors.worker.telemetry.Telemetry`` in Prometheus' text format;
``GET /health`` answers JSON ``{"status": "ok" | "failing", "checks": {...}, ...}`` with
HTTP 200 or 503. A background task refreshes the consumer lag every ``LAG_REFRESH_S``.

Nothing here runs on the batch path. The health probe and the lag refresh use a pool of
their own (at most two connections) and a Kafka consumer of their own (no group), so a slow
probe can never hold up a batch, and a stuck batch cannot hide from the probe.

The socket is bound by ``bind`` before faust starts, so that a port already in use stops
the worker at once with a message naming the setting, rather than as a crash inside faust;
the server starts serving on it once the app has started, after logging is configured, so
that the line naming the address ("metrics and health on http://...") is logged like any
other. Port 0 lets the system pick a free port; that line says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Collection
from typing import Any, Protocol

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, ProcessCollector

from processors.intake import consumer_positions as positions
from processors.worker.telemetry import Health, Telemetry, decide
from schemas.settings import Settings

log = logging.getLogger(__name__)

# How often the consumer lag is refreshed, and how long one refresh may take.
LAG_REFRESH_S = 5.0
LAG_TIMEOUT_S = 10.0
# How long /health waits for PostgreSQL before calling it unreachable.
POSTGRES_TIMEOUT_S = 2.0
# How long a stopping worker lets a request in flight finish.
SHUTDOWN_TIMEOUT_S = 2.0


class Probes(Protocol):
    """What /health asks the running worker; tests inject their own."""

    async def postgres(self) -> None:
        """Return when PostgreSQL answers a query; raise when it does not."""

    def consumer_state(self) -> str:
        """The faust consumer's state: "running" when it is consuming."""


async def check_health(
    telemetry: Telemetry, probes: Probes, *, postgres_timeout_s: float = POSTGRES_TIMEOUT_S
) -> Health:
    """Run the probes and decide; a probe that fails or hangs makes the check fail."""
    error: str | None = None
    try:
        await asyncio.wait_for(probes.postgres(), timeout=postgres_timeout_s)
    except TimeoutError:
        error = f"PostgreSQL did not answer within {postgres_timeout_s:g}s"
    except Exception as exc:  # whatever went wrong, the answer is "failing", never a 500
        error = f"PostgreSQL unreachable: {exc!r}"
    return decide(telemetry.health_inputs(error, probes.consumer_state()))


def web_app(
    telemetry: Telemetry, probes: Probes, *, postgres_timeout_s: float = POSTGRES_TIMEOUT_S
) -> web.Application:
    """The HTTP routes: ``/metrics`` and ``/health``."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=telemetry.exposition(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )

    async def health(request: web.Request) -> web.Response:
        verdict = await check_health(telemetry, probes, postgres_timeout_s=postgres_timeout_s)
        return web.json_response(verdict.to_json(), status=verdict.http_status)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket for the endpoint; OSError names the setting to change."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise OSError(f"cannot listen for metrics on {host}:{port}: {exc}") from exc
    try:
        # A restarted worker may take its port back while old connections linger.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(
            f"cannot listen for metrics on {host}:{port}: {exc.strerror or exc}; every worker"
            " on a machine needs its own INCENTIVES_METRICS_PORT (0 picks a free one)"
        ) from exc
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Operations:
    """The endpoint and the lag refresh of one worker: started with its faust app, stopped
    before its shutdown (``attach``)."""

    def __init__(
        self, settings: Settings, telemetry: Telemetry, topics: Collection[str], sock: socket.socket
    ) -> None:
        self.telemetry = telemetry
        self._settings = settings
        self._topics = frozenset(topics)
        self._sock = sock
        self._app: Any = None
        self._db = _Database(settings.pg_dsn("writer"))
        self._kafka = EndOffsets(settings.bootstrap, settings.kafka_auth("worker"))
        self._runner: web.AppRunner | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._lag_known = True
        self._stopped = False
        # CPU, memory and open files of the process, beside the worker's own figures.
        ProcessCollector(registry=telemetry.registry)

    def attach(self, app: Any) -> None:
        """Start with the faust ``app`` (as one of its tasks) and stop before it shuts down."""
        self._app = app

        async def start_operations() -> None:
            await self.start()

        async def stop_operations(sender: Any, **_: Any) -> None:
            await self.stop()

        app.task(start_operations)
        app.on_before_shutdown.connect(stop_operations)

    async def start(self) -> None:
        if self._stopped:
            return
        runner = web.AppRunner(
            web_app(self.telemetry, self), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        self._runner = runner
        self._refresher = asyncio.create_task(self._refresh_lag_forever())
        url = url_of(self._sock)
        log.info("metrics and health on %s", url, extra={"url": url})

    async def stop(self) -> None:
        self._stopped = True
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._runner is not None:
            await self._runner.cleanup()
        self._sock.close()
        await self._kafka.close()
        await self._db.close()

    # Probes -------------------------------------------------------------------------------

    async def postgres(self) -> None:
        await self._db.ping()

    def consumer_state(self) -> str:
        try:
            return str(self._app.consumer.state)
        except Exception as exc:  # faust raises its own errors before the consumer exists
            return f"unknown ({exc!r})"

    # Lag ----------------------------------------------------------------------------------

    async def _refresh_lag_forever(self) -> None:
        while True:
            await self.refresh_lag()
            await asyncio.sleep(LAG_REFRESH_S)

    async def refresh_lag(self) -> None:
        """Lag of the assigned partitions: Kafka's end offsets minus PostgreSQL's positions.
        A failure is logged once until the lag is known again, not every few seconds."""
        assigned = self._assigned()
        try:
            lags = await asyncio.wait_for(self._lags(assigned), timeout=LAG_TIMEOUT_S)
        except Exception as exc:
            if self._lag_known:
                log.warning("consumer lag unknown: %r; retrying every %gs", exc, LAG_REFRESH_S)
            self._lag_known = False
            await self._kafka.close()  # a fresh client next time
            self.telemetry.lag_refreshed(len(assigned), None)
            return
        if not self._lag_known:
            log.info("consumer lag known again")
        self._lag_known = True
        self.telemetry.lag_refreshed(len(assigned), lags)

    def _assigned(self) -> list[tuple[str, int]]:
        try:
            tps = self._app.consumer.assignment()
        except Exception:  # not started yet, or stopping: nothing is assigned
            return []
        return sorted((tp.topic, tp.partition) for tp in tps if tp.topic in self._topics)

    async def _lags(self, assigned: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not assigned:
            return {}
        ends = await self._kafka.end_offsets(assigned)
        stored = await self._db.positions(self._settings.consumer_group, assigned)
        return {tp: max(0, ends[tp] - stored.get(tp, 0)) for tp in assigned}


class _Database:
    """A small pool for the probes, created on first use (PostgreSQL may be down then)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._lock = asyncio.Lock()
        self._pool: Any = None

    async def _get(self) -> Any:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(self._dsn, min_size=0, max_size=2)
            return self._pool

    async def ping(self) -> None:
        pool = await self._get()
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def positions(self, group: str, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        pool = await self._get()
        async with pool.acquire() as conn:
            return await positions.load(conn, group, tps)

    async def close(self) -> None:
        async with self._lock:
            if self._pool is not None:
                await self._pool.close()
            self._pool = None


class EndOffsets:
    """Kafka's end offsets from one consumer without a group, kept open between refreshes
    (``processors.worker.kafka_offsets.end_offsets`` opens an admin client and a consumer per call,
    which is fine for a command, wasteful every few seconds)."""

    def __init__(self, bootstrap: str, auth: dict[str, Any]) -> None:
        self._bootstrap = bootstrap
        self._auth = auth
        self._consumer: AIOKafkaConsumer | None = None

    async def end_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, enable_auto_commit=False, **self._auth
            )
            try:
                await consumer.start()
            except BaseException:  # also cancelled by the refresh's timeout: no leak
                await consumer.stop()
                raise
            self._consumer = consumer
        found = await self._consumer.end_offsets([TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): int(offset) for tp, offset in found.items()}

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
