"""Errors as ``application/problem+json`` (RFC 9457): every error the API answers with, from
a bad date to an unknown partner to an unexpected failure, is one of these."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    instance: str = ""
    errors: list[dict[str, object]] = []


class ApiError(Exception):
    """An expected failure with its HTTP status, title and detail."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, "Unauthorized", detail)


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "Forbidden", detail)


def not_found(detail: str) -> ApiError:
    return ApiError(404, "Not Found", detail)


def bad_request(detail: str) -> ApiError:
    return ApiError(400, "Bad Request", detail)


def respond(request: Request[Any, Any, Any], problem: Problem,
            headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(content=msgspec.json.encode(problem), status_code=problem.status,
                    media_type=PROBLEM, headers=headers)


def on_api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if exc.status == 401 else None
    return respond(request, Problem(title=exc.title, status=exc.status, detail=exc.detail,
                                    instance=request.url.path), headers)


def on_http_error(request: Request[Any, Any, Any], exc: HTTPException
                  ) -> Response[bytes]:
    errors: list[dict[str, object]] = []
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        errors = [dict(e) if isinstance(e, dict) else {"message": str(e)} for e in exc.extra]
    title = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(
        exc.status_code, "Error")
    return respond(request, Problem(title=title, status=exc.status_code, detail=exc.detail,
                                    instance=request.url.path, errors=errors), exc.headers)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("request %s %s failed", request.method, request.url.path)
    return respond(request, Problem(title="Internal Server Error", status=500,
                                    detail="the request failed; the server log has the cause",
                                    instance=request.url.path))
