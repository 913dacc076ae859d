"""HubSpot wire shapes for the sandbox: records as JSON, error bodies, rate-limit headers, token responses,
and the property validation the CRM v3 API performs on writes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandboxes import hubspot_schema as schema
from sandboxes.common import new_correlation_id

if TYPE_CHECKING:
    from sandboxes.hubspot import HubSpotState


@dataclass
class HsRecord:
    id: str
    object_type: str
    properties: dict[str, str | None]
    created_at: str
    updated_at: str
    archived: bool = False
    archived_at: datetime | None = None  # HubSpot purges an archived record 90 days after this
    associations: list[tuple[str, str, int]] = field(default_factory=list)  # (to type, to id, type id)


def as_property(value: Any) -> str | None:
    # HubSpot stores every property value as a string and returns it as one.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def error(status: int, category: str, message: str, **extra: Any) -> JSONResponse:
    body = {"status": "error", "message": message, "correlationId": new_correlation_id(), "category": category}
    return JSONResponse(body | extra, status_code=status)


def secondly_limited() -> JSONResponse:
    """A search over its per-second limit. The body as clients reported it (HGData/mk-node-hubspot#89)."""
    return JSONResponse({"status": "error", "message": "You have reached your secondly limit.",
                         "errorType": "RATE_LIMIT", "correlationId": new_correlation_id(), "policyName": "SECONDLY",
                         "requestId": new_correlation_id()}, status_code=429)


class HubSpotWire:
    def unauthorized(self, reason: str) -> Response:
        if reason == "expired":
            return error(
                401, "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired 1 minute(s) ago."
            )
        return error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")

    def rate_limited(self, state: HubSpotState) -> Response:
        response = JSONResponse(
            {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": new_correlation_id(),
                "policyName": "TEN_SECONDLY_ROLLING",
                "requestId": new_correlation_id(),
            },
            status_code=429,
        )
        self.decorate(response, state, remaining=0)
        if state.knobs.retry_after is not None:  # HubSpot's own Retry-After is unverified: a knob
            response.headers["Retry-After"] = state.knobs.retry_after
        return response

    def server_error(self, status: int) -> Response:
        return error(status, "INTERNAL_ERROR", "internal error")

    def decorate(self, response: Response, state: HubSpotState, remaining: int | None = None) -> None:
        limit = state.knobs.interval_limit or 100
        if remaining is None:  # limits off: the headers still count this call, as HubSpot's always do
            used = state.calls_in_window if state.knobs.interval_limit else state.count_unlimited_call()
            remaining = max(0, limit - used)
        response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(int(state.knobs.interval_seconds * 1000))
        response.headers["X-HubSpot-RateLimit-Max"] = str(limit)
        response.headers["X-HubSpot-RateLimit-Remaining"] = str(remaining)

    def token_response(self, state: HubSpotState, access: str, refresh: str | None) -> Response:
        # HubSpot always returns the refresh token (the same one unless rotated).
        return JSONResponse(
            {
                "token_type": "bearer",
                "refresh_token": refresh,
                "access_token": access,
                "expires_in": state.tokens.ttl_seconds,
                "token_use": "access_token",
                "hub_id": state.portal_id,
            }
        )

    def token_error(self, code: str) -> Response:
        message = "refresh token is invalid, expired or revoked"
        status = "BAD_REFRESH_TOKEN" if code == "invalid_grant" else "BAD_CLIENT_ID"
        body = {"error": code, "error_description": message, "status": status, "message": message}
        return JSONResponse(body, status_code=400)


def public(record: HsRecord, wanted: list[str] | None) -> dict[str, Any]:
    names = wanted if wanted is not None else list(record.properties)
    props = {n: record.properties.get(n) for n in names}
    props["hs_object_id"] = record.id
    for stamp in (schema.CREATED_PROPERTY, schema.MODIFIED_PROPERTY):
        props[stamp[record.object_type]] = record.properties.get(stamp[record.object_type])
    body: dict[str, Any] = {
        "id": record.id,
        "properties": props,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "archived": record.archived,
    }
    if record.archived:
        body["archivedAt"] = record.updated_at
    return body


def wanted(request: Request) -> list[str] | None:
    raw = request.query_params.get("properties")
    return [p for p in raw.split(",") if p] if raw else None


def validate(object_type: str, props: dict[str, Any], *, creating: bool, state: HubSpotState | None = None
             ) -> Response | None:
    """The CRM v3 checks on written properties; with `state`, the portal's own (custom, installed) properties."""
    known = state.property_names(object_type) if state is not None else schema.property_names(object_type)
    ro = schema.read_only(object_type)
    problems = [
        {"isValid": False, "message": f'Property "{n}" does not exist', "error": "PROPERTY_DOESNT_EXIST", "name": n}
        for n in props
        if n not in known
    ] + [
        {"isValid": False, "message": f"{n} is a read only property", "error": "READ_ONLY_VALUE", "name": n}
        for n in props
        if n in ro
    ]
    if creating:
        problems += [
            {"isValid": False, "message": f"{n} is required", "error": "REQUIRED_PROPERTY", "name": n}
            for n in schema.REQUIRED_ON_CREATE.get(object_type, [])
            if not props.get(n)
        ]
    if problems:
        return error(400, "VALIDATION_ERROR", f"Property values were not valid: {json.dumps(problems)}")
    return None


def conflict(state: HubSpotState, object_type: str, props: dict[str, Any], own_id: str | None) -> Response | None:
    for record in state.records.get(object_type, {}).values():
        if record.id == own_id or record.archived:
            continue
        email = props.get("email")
        if object_type == "contacts" and email and (record.properties.get("email") or "").lower() == email.lower():
            return error(409, "CONFLICT", f"Contact already exists. Existing ID: {record.id}", error="CONTACT_EXISTS")
        for unique in schema.UNIQUE_PROPERTIES:
            if props.get(unique) is not None and record.properties.get(unique) == as_property(props[unique]):
                # The exact real body for a unique-property clash is unverified; 409 is the documented class.
                return error(409, "CONFLICT", f"A record with {unique} already exists. Existing ID: {record.id}")
    return None
