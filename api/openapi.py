"""`GET /openapi.json`: an OpenAPI 3.1 description of every route the app serves, derived from its routes.

Every Route of the running app appears (path parameters typed from Starlette's convertors, summary and
description from the endpoint's docstring), so routes added by any module show up without registering
anything. A route that wants its body and answers described decorates its endpoint with `@document(...)`
naming pydantic models; their JSON Schemas go to `components.schemas`. Every 4xx/5xx is problem+json.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.convertors import FloatConvertor, IntegerConvertor, UUIDConvertor
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

F = TypeVar("F", bound=Callable[..., Any])
Answer = type[BaseModel] | tuple[type[BaseModel], ...]

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "agent": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
              "description": "Agent JWT (role agent); the tenant comes from its `tenant` claim."},
    "operator": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                 "description": "Operator JWT (role operator), optionally pinned to one tenant."},
    "api_key": {"type": "http", "scheme": "bearer",
                "description": "Public API key `crm_sk_…` (also accepted as `X-API-Key`), bound to one tenant."},
}
# The errors every documented route can answer with, beyond those it lists itself.
COMMON_ERRORS = {400: "Malformed JSON", 401: "Missing, invalid or expired credentials",
                 403: "Wrong role or missing scope", 413: "Body too large", 422: "Invalid body",
                 429: "Rate limited (Retry-After and RateLimit headers)"}
PROBLEM_SCHEMA = {"type": "object", "required": ["type", "title", "status"],
                  "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                                 "status": {"type": "integer"}, "detail": {"type": "string"},
                                 "instance": {"type": "string"}},
                  "additionalProperties": True}


@dataclass(frozen=True)
class OperationDoc:
    """What `@document` attaches to an endpoint: body model, answers by status, credential kind, extra errors."""

    request: type[BaseModel] | None = None
    responses: dict[int, Answer] = field(default_factory=dict)
    auth: str | None = None  # a SECURITY_SCHEMES key
    errors: dict[int, str] = field(default_factory=dict)


def document(*, request: type[BaseModel] | None = None, responses: dict[int, Answer] | None = None,
             auth: str | None = None, errors: dict[int, str] | None = None) -> Callable[[F], F]:
    """Describe an endpoint's JSON body, answers (a model, or a tuple of alternatives) and credentials."""
    if auth is not None and auth not in SECURITY_SCHEMES:
        raise ValueError(f"auth must be one of {', '.join(SECURITY_SCHEMES)}")

    def mark(endpoint: F) -> F:
        endpoint.__openapi__ = OperationDoc(request, dict(responses or {}), auth, dict(errors or {}))  # type: ignore[attr-defined]
        return endpoint
    return mark


def _walk(routes: list[BaseRoute], prefix: str = "",
          convertors: dict[str, Any] | None = None) -> Iterator[tuple[str, Route, dict[str, Any]]]:
    """(full path, route, path convertors including those of enclosing mounts) for every Route."""
    for route in routes:
        if isinstance(route, Route):
            if not route.include_in_schema:  # e.g. the console's HTML pages
                continue
            yield prefix + route.path_format, route, (convertors or {}) | route.param_convertors
        elif isinstance(route, Mount):
            mounted = {k: v for k, v in route.param_convertors.items() if k != "path"}
            yield from _walk(route.routes, prefix + route.path_format.removesuffix("/{path}"),
                             (convertors or {}) | mounted)


def _parameter(name: str, convertor: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if isinstance(convertor, UUIDConvertor):
        schema = {"type": "string", "format": "uuid"}
    elif isinstance(convertor, IntegerConvertor):
        schema = {"type": "integer", "minimum": 0}
    elif isinstance(convertor, FloatConvertor):
        schema = {"type": "number", "minimum": 0}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _models(answer: Answer) -> tuple[type[BaseModel], ...]:
    return answer if isinstance(answer, tuple) else (answer,)


def _answer(answer: Answer, refs: dict[Any, Any]) -> dict[str, Any]:
    models = _models(answer)
    schemas = [refs[(model, "serialization")] for model in models]
    doc = models[0].__doc__
    return {"description": doc.strip().splitlines()[0] if doc else "OK",
            "content": {"application/json": {"schema": schemas[0] if len(schemas) == 1 else {"oneOf": schemas}}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _operation(route: Route, path: str, convertors: dict[str, Any], method: str,
               refs: dict[Any, Any]) -> dict[str, Any]:
    endpoint = route.endpoint
    doc = inspect.getdoc(endpoint) or ""
    summary, _, description = doc.partition("\n\n")
    operation: dict[str, Any] = {
        "operationId": re.sub(r"[^A-Za-z0-9]+", "_", f"{method} {path}").strip("_"),
        "summary": " ".join(summary.split()) or f"{method.upper()} {path}",
    }
    if description.strip():
        operation["description"] = description.strip()
    if convertors:
        operation["parameters"] = [_parameter(n, c) for n, c in convertors.items()]
    meta: OperationDoc | None = getattr(endpoint, "__openapi__", None)
    if meta is None:
        operation["responses"] = {"200": {"description": "OK"}, "default": _problem("Error")}
        return operation
    if meta.request is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": refs[(meta.request, "validation")]}}}
    responses: dict[str, Any] = {str(status): _answer(answer, refs) for status, answer in meta.responses.items()}
    errors = dict(COMMON_ERRORS) | meta.errors
    if meta.auth is None:
        errors.pop(401), errors.pop(403)
    else:
        operation["security"] = [{meta.auth: []}]
    if meta.request is None:
        errors.pop(400), errors.pop(413), errors.pop(422)
    responses |= {str(status): _problem(text) for status, text in errors.items()}
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def build_spec(routes: list[BaseRoute], title: str = "crm-sor", version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI document for `routes`."""
    found = list(_walk(routes))
    models: set[tuple[type[BaseModel], JsonSchemaMode]] = set()
    for _, route, _ in found:
        meta: OperationDoc | None = getattr(route.endpoint, "__openapi__", None)
        if meta is not None:
            if meta.request is not None:
                models.add((meta.request, "validation"))
            models |= {(model, "serialization") for answer in meta.responses.values() for model in _models(answer)}
    ordered = sorted(models, key=lambda item: (item[0].__name__, item[1]))
    refs, defs = models_json_schema(ordered, ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for path, route, convertors in found:
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            paths.setdefault(path, {})[method.lower()] = _operation(route, path, convertors, method.lower(), refs)
    schemas = dict(defs.get("$defs", {}))
    schemas["Problem"] = PROBLEM_SCHEMA
    return {"openapi": "3.1.0", "info": {"title": title, "version": version},
            "paths": dict(sorted(paths.items())),
            "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES}}


async def openapi_json(request: Request) -> JSONResponse:
    """This document: every route of the API."""
    spec = getattr(request.app.state, "openapi", None)
    if spec is None:
        spec = request.app.state.openapi = build_spec(list(request.app.routes))
    return JSONResponse(spec)


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
