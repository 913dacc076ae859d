"""Salesforce sObject Collections for the sandbox: update by Id and upsert by an external id, up to 200 records.

Wire facts (Salesforce REST API Developer Guide, "Update Records Using sObject Collections" and "Upsert Records
Using sObject Collections", API v46.0+; request shape as in
../shared/provider-specs/salesforce/postman-salesforce-apis/composite/sobject_collections_update.json):
- `PATCH /services/data/vXX.X/composite/sobjects` with `{"allOrNone": bool, "records": [...]}`, each record with
  `attributes.type` and `id`;
- `PATCH /services/data/vXX.X/composite/sobjects/{SObject}/{ExternalIdField}`: records only of that type, each
  holding the external id field and no `Id`;
- at most 200 records; a malformed request answers 400 with the usual error array, nothing written;
- a well-formed one answers 200 with one result per record, in order: `{"id", "success", "errors", "created"}`
  (`created` on upsert only), errors as `{"statusCode", "message", "fields"}`;
- `allOrNone` (default false): true rolls every record back when one fails; the others then report
  ALL_OR_NONE_OPERATION_ROLLED_BACK.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandboxes import salesforce_schema as schema
from sandboxes.salesforce_wire import errors

if TYPE_CHECKING:
    from sandboxes.salesforce import SalesforceState

MAX_RECORDS = 200
CheckFields = Callable[[str, dict[str, Any], bool], Response | None]


def _item_errors(problem: Response) -> list[dict[str, Any]]:
    """An error answer for one record, as the entries of its result's `errors`."""
    return [{"statusCode": e["errorCode"], "message": e["message"], "fields": e.get("fields") or []}
            for e in json.loads(bytes(problem.body))]


def _records(body: Any, sobject: str | None) -> list[dict[str, Any]] | Response:
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list) or not records:
        return errors(400, "JSON_PARSER_ERROR", "records: a non-empty list of sObjects is required")
    if len(records) > MAX_RECORDS:
        return errors(400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {MAX_RECORDS} "
                                                "records into this call")
    for record in records:
        kind = (record.get("attributes") or {}).get("type") if isinstance(record, dict) else None
        if not kind:
            return errors(400, "INVALID_TYPE", "Each record needs attributes.type")
        if sobject is not None and schema.canonical_sobject(str(kind)) != sobject:
            return errors(400, "INVALID_TYPE", f"Records of type {kind} cannot be upserted into {sobject}")
    return records


def _run(state: SalesforceState, records: list[dict[str, Any]], all_or_none: bool,
         write: Callable[[dict[str, Any], bool], dict[str, Any]]) -> Response:
    """`write(record, dry_run)` answers one result; with allOrNone every record is checked before any is written."""
    if all_or_none:
        checked = [write(record, True) for record in records]
        if not all(result["success"] for result in checked):
            rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because "
                      "not all records were valid and the request was using AllOrNone header", "fields": []}
            return JSONResponse([r if not r["success"] else {"id": None, "success": False, "errors": [rolled]}
                                 for r in checked])
    return JSONResponse([write(record, False) for record in records])


def collection_handlers(state: SalesforceState, check_fields: CheckFields) -> tuple[Callable[..., Any], ...]:
    """(update, upsert) endpoints; `check_fields(sobject, values, creating)` is the sandbox's field validation."""

    def failed(problem: Response) -> dict[str, Any]:
        return {"id": None, "success": False, "errors": _item_errors(problem)}

    async def update(request: Request) -> Response:
        body = await request.json()
        records = _records(body, None)
        if isinstance(records, Response):
            return records

        def write(record: dict[str, Any], dry_run: bool) -> dict[str, Any]:
            sobject = schema.canonical_sobject(str(record["attributes"]["type"])) or ""
            row = state.records.get(sobject, {}).get(schema.full_id(str(record.get("id") or "")) or "")
            if row is None or row["IsDeleted"]:
                return failed(errors(404, "ENTITY_IS_DELETED" if row else "INVALID_CROSS_REFERENCE_KEY",
                                     "invalid cross reference id"))
            values = {k: v for k, v in record.items() if k not in ("attributes", "id")}
            problem = check_fields(sobject, {k: v for k, v in values.items() if k != schema.EXTERNAL_ID_FIELD}, False)
            if problem is not None:
                return failed(problem)
            if not dry_run:
                row.update(values)
                state.touch(sobject, row)
            return {"id": row["Id"], "success": True, "errors": []}

        return _run(state, records, bool(body.get("allOrNone", False)), write)

    async def upsert(request: Request) -> Response:
        sobject = schema.canonical_sobject(str(request.path_params["sobject"]))
        name = request.path_params["field"]
        if sobject is None:
            return errors(404, "NOT_FOUND", "The requested resource does not exist")
        if "x" not in schema.fields_of(sobject).get(name, ("", ""))[1]:
            return errors(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {name}")
        body = await request.json()
        records = _records(body, sobject)
        if isinstance(records, Response):
            return records
        keys = [str(record.get(name)) for record in records]

        def write(record: dict[str, Any], dry_run: bool) -> dict[str, Any]:
            values = {k: v for k, v in record.items() if k != "attributes"}
            key = values.pop(name, None)
            if "Id" in values or "id" in values:
                return failed(errors(400, "INVALID_FIELD", "Only external ids are supported; do not set Id"))
            if not key:
                return failed(errors(400, "REQUIRED_FIELD_MISSING", f"Required field is missing: {name}", [name]))
            hits = [r for r in state.live(sobject) if str(r.get(name)) == str(key)]
            if len(hits) > 1:
                return failed(errors(300, "DUPLICATE_EXTERNAL_ID", f"{name}: more than one record found"))
            if keys.count(str(key)) > 1:
                return failed(errors(400, "DUPLICATE_EXTERNAL_ID", f"{name}: the same value twice in this request"))
            problem = check_fields(sobject, values, not hits)
            if problem is not None:
                return failed(problem)
            if dry_run:
                return {"id": hits[0]["Id"] if hits else None, "success": True, "errors": [], "created": not hits}
            if hits:
                hits[0].update(values)
                state.touch(sobject, hits[0])
                return {"id": hits[0]["Id"], "success": True, "errors": [], "created": False}
            row = state.add(sobject, values | {name: key})
            return {"id": row["Id"], "success": True, "errors": [], "created": True}

        return _run(state, records, bool(body.get("allOrNone", False)), write)

    return update, upsert
