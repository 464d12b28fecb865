"""Running the API: uvicorn on ``api_host:api_port``; port 0 picks a free port, and the
address is logged as ``finance API on http://HOST:PORT``."""

from __future__ import annotations

import logging
import socket

import uvicorn

from projections.api.app import create_app
from schemas.settings import Settings

log = logging.getLogger("projections.api")


def bind(settings: Settings) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: a response written in two parts (head, body) must
    # not wait for the client's delayed acknowledgement (Nagle), which capped a keep-alive
    # connection near 25 requests/s.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((settings.api_host, settings.api_port))
    sock.set_inheritable(True)
    # Listening before the address is logged: a client that reads the log and connects at
    # once waits in the backlog until the server accepts, instead of being refused.
    sock.listen(2048)
    return sock


def serve(settings: Settings) -> None:
    sock = bind(settings)
    host, port = sock.getsockname()[:2]
    # httptools and uvloop (dependencies) are uvicorn's fast parser and event loop.
    config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False,
                            lifespan="on", http="httptools", loop="uvloop")
    server = uvicorn.Server(config)
    log.info("finance API on http://%s:%d (OpenAPI at /openapi.json)", host, port)
    server.run(sockets=[sock])
