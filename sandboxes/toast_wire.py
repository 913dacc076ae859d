"""Toast wire shapes for the sandbox: `ErrorMessage` bodies, order JSON, dates, rate-limit headers."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response

GUEST_FIELDS = frozenset({"guid", "firstName", "lastName", "email", "phone", "phoneCountryCode"})
DINING_OPTION = "2f3b1c6e-8f7a-4d8e-9a55-0c2b7e1d4f10"


def error_message(status: int, code: int, message: str, *, field_name: str | None = None) -> JSONResponse:
    """Toast's `ErrorMessage` (authentication Swagger): codes, never the request's data."""
    body = {"status": str(status), "code": code, "message": message, "messageKey": None, "fieldName": field_name,
            "link": None, "requestId": str(uuid.uuid4()), "developerMessage": None, "errors": [],
            "canRetry": "YES" if status >= 500 or status == 429 else "NO"}
    return JSONResponse(body, status_code=status)


def guest_matches(guest: dict[str, Any], key: str, value: str) -> bool:
    """CRM search (unverified details): email exact, phone by its digits, names by a contained word."""
    stored = str(guest.get(key) or "")
    if key == "phone":
        digits = re.sub(r"\D", "", value)
        return len(digits) >= 7 and digits in re.sub(r"\D", "", stored)
    if key == "email":
        return stored.lower() == value.lower()
    return bool(value) and value.lower() in stored.lower()


def toast_time(value: str) -> datetime:
    """Toast's ISO-8601 with millis and a `+0000` offset (also accepts Z and +00:00)."""
    text = value.strip().replace("Z", "+0000")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso_toast(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def order_json(order: dict[str, Any], guest: dict[str, Any] | None) -> dict[str, Any]:
    stamp = iso_toast(order["_modified"])
    check: dict[str, Any] = {"guid": str(uuid.uuid5(uuid.NAMESPACE_URL, order["guid"])), "entityType": "Check",
                             "selections": [], "createdDate": stamp, "modifiedDate": stamp}
    if guest is not None:
        check["customer"] = {k: guest.get(k) or "" for k in ("guid", "firstName", "lastName", "email", "phone")}
        check["customer"] |= {"entityType": "Customer", "phoneCountryCode": guest.get("phoneCountryCode")}
    return {"guid": order["guid"], "entityType": "Order", "externalId": None,
            "diningOption": {"guid": DINING_OPTION, "entityType": "DiningOption"},
            "checks": [check], "createdDate": stamp, "modifiedDate": stamp, "openedDate": stamp,
            "businessDate": int(order["_modified"].strftime("%Y%m%d")), "voided": False}


class ToastWire:
    def unauthorized(self, reason: str) -> Response:
        return error_message(401, 10001, "Authentication token expired" if reason == "expired" else "Access denied")

    def rate_limited(self, state: Any) -> Response:
        response = error_message(429, 429, "Rate limit exceeded")
        response.headers["Retry-After"] = state.knobs.retry_after or str(max(1, int(state.knobs.interval_seconds)))
        self.decorate(response, state)
        return response

    def server_error(self, status: int) -> Response:
        return error_message(status, 10500, "An unexpected internal error occurred")

    def decorate(self, response: Response, state: Any) -> None:
        limit = state.knobs.interval_limit or 20
        response.headers["X-Toast-RateLimit-By"] = "GLOBAL"
        response.headers["X-Toast-RateLimit-Remaining"] = str(max(0, limit - state.calls_in_window))
        response.headers["X-Toast-RateLimit-Reset"] = str(int(time.time() + state.knobs.interval_seconds))

    def token_response(self, state: Any, access: str, refresh: str | None) -> Response:
        return JSONResponse({"token": {"tokenType": "Bearer", "accessToken": access, "expiresIn": 86400},
                             "status": "SUCCESS"})

    def token_error(self, code: str) -> Response:
        return error_message(401, 10010, "Access denied")
