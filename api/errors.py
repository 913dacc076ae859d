"""RFC 9457 problem details: every 4xx/5xx answer is `application/problem+json` with a stable `type`.

Handlers raise `Problem`; anything unexpected becomes a 500 problem without a traceback or any detail that
might echo customer content.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)

TYPE_BASE = "https://crm-sor.dev/problems/"


class Problem(Exception):
    """An error answer. `type_` is a short stable slug (`invalid-body`, `rate-limited`, …)."""

    def __init__(self, status: int, type_: str, title: str, detail: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(title)
        self.status, self.type_, self.title, self.detail = status, type_, title, detail
        self.headers = headers or {}
        self.extra = extra


class ProblemResponse(JSONResponse):
    media_type = "application/problem+json"


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    body: dict[str, Any] = {"type": TYPE_BASE + problem.type_, "title": problem.title, "status": problem.status}
    if problem.detail:
        body["detail"] = problem.detail
    if instance:
        body["instance"] = instance
    body.update(problem.extra)
    return ProblemResponse(body, status_code=problem.status, headers=problem.headers)


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc, request.url.path)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem_response(Problem(exc.status_code, slug, str(exc.detail)), request.url.path)


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    # Only locations and messages: pydantic's `input` would echo the submitted (customer) values.
    errors = [{"loc": list(error["loc"]), "msg": error["msg"]} for error in exc.errors(include_input=False)]
    return problem_response(Problem(422, "invalid-body", "The request body is not valid.", errors=errors),
                            request.url.path)


# How long a client should wait before retrying while the database is unreachable (a restart takes seconds).
DATABASE_RETRY_AFTER_SECONDS = 5


async def handle_database_unavailable(request: Request, exc: Exception) -> Response:
    """The database is down, restarting or out of connections: a 503 to retry, not a 500. Nothing was
    accepted (the transaction never committed), so the client's retry is what keeps the write."""
    log.warning("database unavailable (%s) on %s %s", type(exc).__name__, request.method, request.url.path)
    problem = Problem(503, "database-unavailable", "The service's database is briefly unavailable.",
                      "Nothing was stored; retry the same request after Retry-After seconds.",
                      headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
                      retry_after=DATABASE_RETRY_AFTER_SECONDS)
    return problem_response(problem, request.url.path)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return problem_response(Problem(500, "internal", "Internal error."), request.url.path)


EXCEPTION_HANDLERS = {
    Problem: handle_problem,
    HTTPException: handle_http_exception,
    ValidationError: handle_validation_error,
    # Connection-level failures only (refused, reset, restart, pool timeout); a bad statement stays a 500 bug.
    OperationalError: handle_database_unavailable,
    InterfaceError: handle_database_unavailable,
    PoolTimeoutError: handle_database_unavailable,
    Exception: handle_unexpected,
}


# Deeper than any body our routes accept; JSON nested further is refused before anything walks it.
MAX_JSON_DEPTH = 64


async def read_json(request: Request, max_bytes: int = 1_048_576) -> Any:
    """The body as JSON, or a 4xx problem: too large, not UTF-8, not JSON, or nested deeper than MAX_JSON_DEPTH.

    A body over the limit is refused as soon as the limit is passed; the rest is discarded by
    api.body_limit before the answer goes out, so the client receives the 413 rather than a reset.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise Problem(413, "body-too-large", f"The body exceeds {max_bytes} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise Problem(413, "body-too-large", f"The body exceeds {max_bytes} bytes.")
        chunks.append(chunk)
    try:
        value = json.loads(b"".join(chunks), parse_constant=_refuse_constant)
    except RecursionError:
        # The C scanner gives up around 1,000 levels; that is a malicious body, not a server error.
        raise Problem(400, "malformed-json", "The body is nested too deeply.") from None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
        raise Problem(400, "malformed-json", "The body is not valid JSON.") from None
    problem = _unstorable(value)
    if problem is not None:
        raise problem
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN / Infinity: Python's json accepts them, RFC 8259 does not


def _unstorable(value: Any) -> Problem | None:
    """Walks the value without recursion (a deep body must not exhaust the stack)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            return Problem(400, "malformed-json", "The body is nested too deeply.",
                           f"At most {MAX_JSON_DEPTH} levels of arrays and objects.")
        if isinstance(item, str):
            if not _storable_text(item):
                # Valid JSON can still carry lone surrogates ("\ud800") and NUL, which neither UTF-8 (a CRM
                # request) nor PostgreSQL text can hold: refuse them here instead of failing later with a 500.
                return Problem(422, "invalid-body", "The body contains text that cannot be stored.",
                               "Strings must be valid Unicode without NUL characters.")
        elif isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
    return None


def _storable_text(text: str) -> bool:
    return "\x00" not in text and (text.isascii() or _utf8(text))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True
