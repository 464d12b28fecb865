"""Running the API: uvicorn on ``api_host:api_port``; port 0 picks a free port, and the
address is logged as ``finance API on http://HOST:PORT``."""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

from projections.api.app import create_app
from schemas.settings import Settings

log = logging.getLogger("projections.api")


def bind(settings: Settings) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.api_host, settings.api_port))
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings) -> None:
    sock = bind(settings)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False,
                            lifespan="on")
    server = uvicorn.Server(config)
    log.info("finance API on http://%s:%d (OpenAPI at /openapi.json)", host, port)
    asyncio.run(server.serve(sockets=[sock]))
