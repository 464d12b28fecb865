"""The API's Prometheus metrics: requests by route template, method and status, and their
durations, in a registry of its own (served at ``/metrics``)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

ASGIApp = Any


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("incentives_api_requests_total", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)
        self.duration = Histogram(
            "incentives_api_request_duration_seconds", "From request to response", ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def measured(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started, status = time.perf_counter(), [500]

            async def sending(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                # The route's template, not the path: one series per route, not per partner.
                route = str(scope.get("path_template") or "unmatched")
                self.requests.labels(route, scope["method"], str(status[0])).inc()
                self.duration.labels(route).observe(time.perf_counter() - started)

        return measured
