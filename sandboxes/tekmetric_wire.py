"""Tekmetric wire shapes for the sandbox: timestamps, Spring Data pages, error bodies, 401/429 answers."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response

CUSTOMER_FIELDS = frozenset({"shopId", "firstName", "lastName", "customerTypeId", "email", "phones", "address",
                             "notes", "okForMarketing", "contactFirstName", "contactLastName", "birthday"})
APPOINTMENT_FIELDS = frozenset({"shopId", "customerId", "vehicleId", "startTime", "endTime", "title",
                                "description", "color", "appointmentStatus"})
RO_PATCH_FIELDS = frozenset({"keyTag", "milesIn", "milesOut", "technicianId", "serviceWriterId", "customerTimeOut"})


def stamp(moment: datetime) -> str:
    """Tekmetric's timestamps: UTC, second precision, Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def api_error(status: int, message: str, details: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"type": "ERROR", "message": message, "data": None, "details": details or {}},
                        status_code=status)


def customer_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items()}


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def matches(row: dict[str, Any], query: str, keys: tuple[str, ...]) -> bool:
    """Tekmetric's `search`: a name, email or phone number. Phones match on their digits."""
    needle = query.strip().lower()
    digits = _digits(needle)
    for key in keys:
        value = row.get(key)
        if key == "phone":
            if len(digits) >= 7 and any(digits in _digits(p["number"]) for p in value or []):
                return True
        elif value is not None and needle in str(value).lower():
            return True
    full = f"{row.get('firstName') or ''} {row.get('lastName') or ''}".strip().lower()
    return "firstName" in keys and bool(full) and needle == full


def page(items: list[dict[str, Any]], number: int, size: int) -> JSONResponse:
    chunk = items[number * size:(number + 1) * size]
    total_pages = max(1, -(-len(items) // size))
    return JSONResponse({
        "content": chunk, "totalPages": total_pages, "totalElements": len(items), "last": number >= total_pages - 1,
        "first": number == 0, "size": size, "number": number, "numberOfElements": len(chunk),
        "sort": {"sorted": False, "unsorted": True, "empty": True},
    })


class TekmetricWire:
    def unauthorized(self, reason: str) -> Response:
        return Response(status_code=401)  # observed: an empty body, whatever the reason

    def rate_limited(self, state: Any) -> Response:
        response = Response(status_code=429)  # documented: an empty body
        if state.knobs.retry_after is not None:  # Tekmetric documents no Retry-After: a knob
            response.headers["Retry-After"] = state.knobs.retry_after
        return response

    def server_error(self, status: int) -> Response:
        return JSONResponse({"type": "ERROR", "message": "Internal Server Error", "data": None, "details": {}},
                            status_code=status)

    def decorate(self, response: Response, state: Any) -> None:
        """Tekmetric sends no rate-limit headers."""

    def token_response(self, state: Any, access: str, refresh: str | None) -> Response:
        return JSONResponse({"access_token": access, "token_type": "bearer", "scope": str(state.shop_id)})

    def token_error(self, code: str) -> Response:
        return JSONResponse({"error": code}, status_code=401)
