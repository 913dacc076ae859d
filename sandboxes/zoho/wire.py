"""Zoho wire shapes: error bodies (request-level and per-record), 429, token responses, field metadata, and
the record validation v8 performs on writes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandboxes.zoho.state import API_OF, DEFAULTS, FINGERPRINT_FIELD, KEY_FIELD, ZohoState, fields_of


def error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> JSONResponse:
    """A request-level error: the top-level `API_Exception` object."""
    return JSONResponse({"code": code, "details": details or {}, "message": message, "status": "error"},
                        status_code=status)


def item_error(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    """One record's failure inside `data[]`."""
    return {"code": code, "details": details, "message": message, "status": "error"}


def success(row: dict[str, Any], message: str, **extra: Any) -> dict[str, Any]:
    details = {"Modified_Time": row["Modified_Time"], "Modified_By": row["Modified_By"],
               "Created_Time": row["Created_Time"], "id": row["id"], "Created_By": row["Created_By"]}
    return {"code": "SUCCESS", "details": details, "message": message, "status": "success", **extra}


def outcome(items: list[dict[str, Any]], ok_status: int) -> JSONResponse:
    """200/201 when every row succeeded, 207 for a mix, 400 when all failed."""
    failed = sum(1 for i in items if i["status"] == "error")
    status = ok_status if not failed else 400 if failed == len(items) else 207
    return JSONResponse({"data": items}, status_code=status)


def invalid_id(record_id: str) -> dict[str, Any]:
    return item_error("INVALID_DATA", "the id given seems to be invalid", {"api_name": "id", "id": record_id})


def public(row: dict[str, Any], names: list[str] | None) -> dict[str, Any]:
    visible = {k: v for k, v in row.items() if not k.startswith("_")}
    if names is None:
        return visible
    return {"id": row["id"]} | {n: visible.get(n) for n in names if n != "id"}


def wanted(request: Request) -> list[str] | None:
    raw = request.query_params.get("fields")
    return [f for f in raw.split(",") if f] if raw else None


def validate(module: str, row: dict[str, Any], index: int, *, creating: bool, state: ZohoState | None = None
             ) -> dict[str, Any] | None:
    """The first problem with one record of a write, as Zoho reports it per record; None when it is fine."""
    fields = state.fields(module) if state is not None else fields_of(module)
    known = {name: (mandatory, ro) for name, _, _, mandatory, ro in fields}
    for name in row:
        if name == "id":
            continue
        if name not in known or known[name][1]:  # unknown or read-only
            return item_error("INVALID_DATA", "invalid data",
                              {"api_name": name, "json_path": f"$.data[{index}].{name}"})
    if creating:
        for name, (mandatory, _) in known.items():
            if mandatory and row.get(name) in (None, "") and name not in DEFAULTS.get(module, {}):
                return item_error("MANDATORY_NOT_FOUND", "required field not found",
                                  {"api_name": name, "json_path": f"$.data[{index}].{name}"})
    return None


def duplicate(state: ZohoState, module: str, row: dict[str, Any], own_id: str | None, index: int
              ) -> dict[str, Any] | None:
    key = row.get(KEY_FIELD)
    if key is None:
        return None
    clash = state.find(module, str(key), KEY_FIELD)
    if clash is None or clash["id"] == own_id:
        return None
    return item_error("DUPLICATE_DATA", "duplicate data", {
        "api_name": KEY_FIELD, "json_path": f"$.data[{index}].{KEY_FIELD}",
        "duplicate_record": {"id": clash["id"], "Owner": clash["Owner"], "module": {"api_name": module}}})


def field_definitions(module: str, fields: list[tuple[str, str, str, bool, bool]] | None = None
                      ) -> list[dict[str, Any]]:
    """GET /crm/v8/settings/fields `fields[]`, with the keys fields.json documents; `fields`: the org's own."""
    return [
        {"api_name": name, "display_label": label, "field_label": label, "data_type": data_type,
         "json_type": "string", "system_mandatory": mandatory, "read_only": ro, "field_read_only": ro,
         "custom_field": name in (KEY_FIELD, FINGERPRINT_FIELD), "visible": True, "id": f"57257670000{n:08d}",
         "unique": {"casesensitive": "false"} if name == KEY_FIELD else {},
         "length": 255, "searchable": not ro}
        for n, (name, label, data_type, mandatory, ro) in enumerate(fields if fields is not None else fields_of(module))
    ]


class ZohoWire:
    def unauthorized(self, reason: str) -> Response:
        # Zoho does not tell an expired token from one of another DC: both are INVALID_TOKEN.
        return error(401, "INVALID_TOKEN", "invalid oauth token")

    def rate_limited(self, state: ZohoState) -> Response:
        response = error(429, "TOO_MANY_REQUESTS", "The number of API calls has exceeded the limit.")
        if state.knobs.retry_after is not None:  # Zoho's Retry-After is undocumented: a knob
            response.headers["Retry-After"] = state.knobs.retry_after
        return response

    def server_error(self, status: int) -> Response:
        return error(status, "INTERNAL_ERROR", "Internal server error occurred.")

    def decorate(self, response: Response, state: ZohoState) -> None:
        return None

    def token_response(self, state: ZohoState, access: str, refresh: str | None) -> Response:
        return self.dc_token_response(state, access, refresh, state.default_dc)

    def dc_token_response(self, state: ZohoState, access: str, refresh: str | None, dc: str) -> Response:
        body: dict[str, Any] = {"access_token": access, "scope": "ZohoCRM.modules.ALL", "api_domain": API_OF[dc],
                                "token_type": "Bearer", "expires_in": state.tokens.ttl_seconds}
        if refresh is not None:
            body["refresh_token"] = refresh
        return JSONResponse(body)

    def token_error(self, code: str) -> Response:
        # Zoho answers a bad code or refresh token with HTTP 200 and an error field.
        return JSONResponse({"error": "invalid_code" if code == "invalid_grant" else code})

    def token_throttled(self) -> Response:
        return JSONResponse({"error": "Access Denied", "error_description": "You have made too many requests "
                             "continuously. Please try again after some time.", "status": "failure"}, status_code=400)


def created_field(module: str, body: Any, state: ZohoState) -> tuple[str, str, str, bool] | JSONResponse:
    """(api_name, label, data_type, unique) a `POST /settings/fields?module=` makes, or Zoho's error answer."""
    items = body.get("fields") if isinstance(body, dict) else None
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        return error(400, "INVALID_DATA", "invalid data", {"api_name": "fields", "json_path": "$.fields"})
    item = items[0]
    label, data_type = str(item.get("field_label") or ""), str(item.get("data_type") or "")
    for key, value in (("field_label", label), ("data_type", data_type)):
        if not value:
            return JSONResponse({"fields": [item_error("MANDATORY_NOT_FOUND", "required field not found",
                                                       {"api_name": key, "json_path": f"$.fields[0].{key}"})]},
                                status_code=400)
    if data_type not in ("text", "textarea", "integer", "double", "currency", "date", "datetime", "boolean",
                         "email", "phone", "picklist"):
        return JSONResponse({"fields": [item_error("INVALID_DATA", "invalid data", {
            "api_name": "data_type", "json_path": "$.fields[0].data_type"})]}, status_code=400)
    # Zoho derives the API name from the label (spaces to underscores) unless one is given.
    api_name = str(item.get("api_name") or "_".join(label.split()))
    if any(f[0] == api_name for f in state.fields(module)):
        # fields.json documents INVALID_DATA (not a duplicate-specific code) for a value it refuses.
        return JSONResponse({"fields": [item_error("INVALID_DATA", "invalid data", {
            "api_name": "api_name", "json_path": "$.fields[0].api_name"})]}, status_code=400)
    return api_name, label, data_type, bool(item.get("unique"))
