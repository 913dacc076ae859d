"""HubSpot CRM v3 batch endpoints for the sandbox: `batch/read`, `batch/update` and `batch/upsert`.

Wire facts (developers.hubspot.com API reference, "Create or update a batch of objects by unique property
values", "error handling"; ../shared/reference HubSpot §1.5):
- at most 100 inputs per call, else 400 VALIDATION_ERROR for the whole call;
- upsert inputs are `{"idProperty", "id", "properties", "objectWriteTraceId"}`; `idProperty` must name a
  property with `hasUniqueValue` (or `email` for contacts), else the whole call is refused;
- results are the records with `new` (created by this call) and their `objectWriteTraceId`;
- with an `objectWriteTraceId` on every input, a call where some inputs fail answers **207 Multi-Status**: the
  good inputs are written, each failed one has an entry in `errors` whose `context.objectWriteTraceId` names it
  (`context` maps names to lists of strings, as in HubSpot's StandardError). Without trace ids one bad input
  fails the whole call with its error and nothing is written;
- `batch/read` answers found records, and 207 with an OBJECT_NOT_FOUND error listing the missing ids.
- records written by `batch/update` and `batch/upsert` reach the search index as late as single writes do
  (sandboxes/hubspot_search.py: SearchIndex); reads by id or unique property see them at once.
The exact text of HubSpot's messages is not reproduced; categories and shapes are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandboxes import hubspot_schema as schema
from sandboxes.common import iso_ms
from sandboxes.hubspot_wire import HsRecord, conflict, error, public, validate

if TYPE_CHECKING:
    from sandboxes.hubspot import HubSpotState

MAX_INPUTS = 100


def _batch_error(problem: Response, trace_id: str | None) -> dict[str, Any]:
    """A single-record error answer turned into one entry of a batch's `errors`."""
    body = json.loads(bytes(problem.body))
    entry = {"status": "error", "category": body.get("category", "VALIDATION_ERROR"), "message": body["message"],
             "context": {"objectWriteTraceId": [trace_id]} if trace_id is not None else {}}
    if body.get("error"):
        entry["subCategory"] = body["error"]
    return entry


def _answer(state: HubSpotState, results: list[dict[str, Any]], errors: list[dict[str, Any]]) -> JSONResponse:
    stamp = iso_ms(state.now())
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}
    if errors:
        body |= {"numErrors": len(errors), "errors": errors}
    return JSONResponse(body, status_code=207 if errors else 200)


def _unique(object_type: str, name: str) -> bool:
    return name in schema.UNIQUE_PROPERTIES or (object_type == "contacts" and name == "email")


def _inputs(body: Any) -> list[dict[str, Any]] | Response:
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not inputs:
        return error(400, "VALIDATION_ERROR", "Invalid input JSON: inputs must be a non-empty list")
    if len(inputs) > MAX_INPUTS:
        return error(400, "VALIDATION_ERROR", f"inputs: size must be between 1 and {MAX_INPUTS}")
    return inputs


def _duplicates(inputs: list[dict[str, Any]]) -> Response | None:
    ids = [str(item.get("id", "")).lower() for item in inputs]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        return error(400, "VALIDATION_ERROR", f"Duplicate IDs found in batch input: {repeated}")
    return None


def _apply(state: HubSpotState, inputs: list[dict[str, Any]],
           write: Callable[[dict[str, Any]], tuple[HsRecord, bool] | Response]) -> Response:
    """Run `write` for every input: 207 with per-input errors when every input carries a trace id, else one bad
    input fails the call (inputs are checked before anything is written, so nothing is)."""
    traced = all(item.get("objectWriteTraceId") is not None for item in inputs)
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    if not traced:
        for item in inputs:
            problem = write(item | {"_dry_run": True})
            if isinstance(problem, Response):
                return problem
    for item in inputs:
        trace = item.get("objectWriteTraceId")
        outcome = write(item)
        if isinstance(outcome, Response):
            errors.append(_batch_error(outcome, None if trace is None else str(trace)))
            continue
        record, new = outcome
        result = public(record, None) | {"new": new}
        if trace is not None:
            result["objectWriteTraceId"] = str(trace)
        results.append(result)
    return _answer(state, results, errors)


def _update(state: HubSpotState, record: HsRecord, props: dict[str, Any]) -> None:
    before = dict(record.properties)
    state.update(record, props)
    state.search_index.written(record.object_type, record.id, before)


def batch_handlers(state: HubSpotState) -> dict[str, Callable[[Request, str], Any]]:
    """The three batch handlers, keyed by their last path segment; each takes (request, object_type)."""

    async def read(request: Request, object_type: str) -> Response:
        body = await request.json()
        inputs = _inputs(body)
        if isinstance(inputs, Response):
            return inputs
        id_property = body.get("idProperty")
        if id_property is not None and id_property != "hs_object_id" and not _unique(object_type, id_property):
            return error(400, "VALIDATION_ERROR", f"{id_property} is not a unique identifier property")
        wanted = list(body.get("properties") or []) or None
        found, missing = [], []
        for item in inputs:
            value = str(item.get("id", ""))
            record = state.find(object_type, value, None if id_property in (None, "hs_object_id") else id_property,
                                False)
            if record is None:
                missing.append(value)
            else:
                found.append(public(record, wanted))
        errors = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                   "message": f"Could not get some {object_type} objects, they may be deleted or not exist.",
                   "context": {"ids": missing}}] if missing else []
        return _answer(state, found, errors)

    async def update(request: Request, object_type: str) -> Response:
        inputs = _inputs(await request.json())
        if isinstance(inputs, Response):
            return inputs
        if problem := _duplicates(inputs):
            return problem

        def write(item: dict[str, Any]) -> tuple[HsRecord, bool] | Response:
            record = state.find(object_type, str(item.get("id", "")), item.get("idProperty"), False)
            if record is None:
                return error(404, "OBJECT_NOT_FOUND", "resource not found")
            props = item.get("properties") or {}
            problem = (validate(object_type, props, creating=False, state=state)
                       or conflict(state, object_type, props, record.id))
            if problem is not None or item.get("_dry_run"):
                return problem or (record, False)
            _update(state, record, props)
            return record, False

        return _apply(state, inputs, write)

    async def upsert(request: Request, object_type: str) -> Response:
        inputs = _inputs(await request.json())
        if isinstance(inputs, Response):
            return inputs
        if problem := _duplicates(inputs):
            return problem
        for item in inputs:
            name = item.get("idProperty")
            if not name or not item.get("id"):
                return error(400, "VALIDATION_ERROR", "Each input needs an idProperty and an id")
            if not _unique(object_type, str(name)):
                return error(400, "VALIDATION_ERROR", f"{name} is not a unique identifier property")

        def write(item: dict[str, Any]) -> tuple[HsRecord, bool] | Response:
            name, value = str(item["idProperty"]), str(item["id"])
            props = dict(item.get("properties") or {}) | {name: value}
            record = state.find(object_type, value, name, False)
            own = record.id if record is not None else None
            problem = (validate(object_type, props, creating=record is None, state=state)
                       or conflict(state, object_type, props, own))
            if problem is not None or item.get("_dry_run"):
                return problem or (record or HsRecord("", object_type, {}, "", ""), record is None)
            if record is not None:
                _update(state, record, props)
                return record, False
            created = state.add(object_type, props)
            state.search_index.written(object_type, created.id, None)  # batch writes lag in search like single ones
            return created, True

        return _apply(state, inputs, write)

    return {"read": read, "update": update, "upsert": upsert}
