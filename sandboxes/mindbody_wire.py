"""Mindbody Public API v6 wire shapes for the sandbox: error envelope, pagination, client/appointment JSON."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandboxes.common import iso_ms

PREFIX = "/public/v6"
# What AddClientRequest / ClientWithSuspensionInfo define (Swagger); anything else is refused (see docstring).
CLIENT_FIELDS = frozenset({
    "Id", "FirstName", "LastName", "MiddleName", "Email", "MobilePhone", "HomePhone", "WorkPhone", "AddressLine1",
    "AddressLine2", "City", "State", "PostalCode", "Country", "BirthDate", "Gender", "Notes", "ReferredBy",
    "Active", "IsProspect", "SendAccountEmails", "SendAccountTexts", "SendPromotionalEmails",
    "SendPromotionalTexts", "SendScheduleEmails", "SendScheduleTexts", "Status", "Test", "NewId",
    "ReactivateInactiveClient", "LeadChannelId", "EmergencyContactInfoName", "EmergencyContactInfoPhone",
    "EmergencyContactInfoEmail", "EmergencyContactInfoRelationship", "RedAlert", "YellowAlert", "MobileProvider",
})
APPOINTMENT_UPDATABLE = frozenset({"AppointmentId", "StartDateTime", "EndDateTime", "StaffId", "Notes",
                                   "SessionTypeId", "Execute", "Test", "SendEmail", "PartnerExternalId"})
EXECUTE = {"confirm": "Confirmed", "unconfirm": "Booked", "arrive": "Arrived", "unarrive": "Booked",
           "cancel": "Cancelled", "latecancel": "LateCancelled", "complete": "Completed"}


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"Error": {"Message": message, "Code": code}}, status_code=status)


def paged(key: str, items: list[dict[str, Any]], request: Request, size_cap: int) -> JSONResponse:
    q = request.query_params
    limit = min(int(q.get("request.limit", 100)), size_cap)
    offset = int(q.get("request.offset", 0))
    chunk = items[offset:offset + limit]
    return JSONResponse({"PaginationResponse": {"RequestedLimit": limit, "RequestedOffset": offset,
                                                "PageSize": len(chunk), "TotalResults": len(items)}, key: chunk})


def digits(value: str | None) -> str:
    return re.sub(r"\D", "", value or "")


def client_matches(client: dict[str, Any], text: str) -> bool:
    """searchText: first name, last name and email (documented); phones by digits (observed in integrations)."""
    needle = text.strip().lower()
    if any(needle in str(client.get(k) or "").lower() for k in ("FirstName", "LastName", "Email")):
        return True
    wanted = digits(needle)
    return len(wanted) >= 7 and any(wanted in digits(client.get(k)) for k in ("MobilePhone", "HomePhone",
                                                                             "WorkPhone"))


def client_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


class MindbodyWire:
    def unauthorized(self, reason: str) -> Response:
        if reason == "expired":
            return error(401, "DeniedAccess", "Staff user token has expired.")
        return error(401, "DeniedAccess", "Authentication failed.")

    def rate_limited(self, state: Any) -> Response:
        # The sandbox site's hard daily cap (exact answer unverified; Mindbody's error envelope is).
        response = error(429, "TooManyRequests", "The daily call limit for this API key has been reached.")
        if state.knobs.retry_after is not None:
            response.headers["Retry-After"] = state.knobs.retry_after
        return response

    def server_error(self, status: int) -> Response:
        return error(status, "InternalError", "An internal error occurred.")

    def decorate(self, response: Response, state: Any) -> None:
        """Mindbody sends no rate-limit headers."""

    def token_response(self, state: Any, access: str, refresh: str | None) -> Response:
        return JSONResponse({"TokenType": "Bearer", "AccessToken": access})

    def token_error(self, code: str) -> Response:
        return error(401, "DeniedAccess", "Staff identity authentication failed.")


def stamp(state: Any) -> str:
    return iso_ms(state.now())
