"""Salesforce wire shapes for the sandbox: timestamps, error arrays, limit headers and token responses."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandboxes.common import Handler, SandboxState

if TYPE_CHECKING:
    from sandboxes.salesforce import SalesforceState

VERSIONS = range(31, 63)  # v31.0 … v62.0 (Winter '25), the versions this org serves
ORG_ID = "00DSB00000000012AA"  # 18-character ids: 15 + the case-safe suffix
USER_ID = "005SB0000000001YAA"


def sf_time(state: SandboxState) -> str:
    moment = state.now()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def errors(status: int, code: str, message: str, fields: list[str] | None = None) -> JSONResponse:
    return JSONResponse([{"message": message, "errorCode": code, "fields": fields or []}], status_code=status)


class SalesforceWire:
    def unauthorized(self, reason: str) -> Response:
        response = errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
        response.headers["WWW-Authenticate"] = "Token"
        return response

    def rate_limited(self, state: SalesforceState) -> Response:
        response = errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        response.headers["Sforce-Limit-Info"] = f"api-usage={state.api_usage}/{state.api_usage_limit}"
        if state.knobs.retry_after is not None:
            response.headers["Retry-After"] = state.knobs.retry_after
        return response

    def server_error(self, status: int) -> Response:
        code = "SERVER_UNAVAILABLE" if status == 503 else "UNKNOWN_EXCEPTION"
        return errors(status, code, "An unexpected error occurred. Please include this ErrorId if you contact support")

    def decorate(self, response: Response, state: SalesforceState) -> None:
        state.api_usage += 1
        response.headers["Sforce-Limit-Info"] = f"api-usage={state.api_usage}/{state.api_usage_limit}"

    def token_response(self, state: SalesforceState, access: str, refresh: str | None) -> Response:
        issued_at = str(int(time.time() * 1000))
        identity = f"https://login.salesforce.com/id/{ORG_ID}/{USER_ID}"
        digest = hashlib.sha256(f"{identity}{issued_at}".encode()).digest()
        body = {
            "access_token": access,
            "signature": base64.b64encode(digest).decode(),
            "scope": "refresh_token api",
            "instance_url": state.instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
        if refresh is not None:  # only for the code grant, or a refresh grant with rotation on
            body["refresh_token"] = refresh
        return JSONResponse(body)

    def token_error(self, code: str) -> Response:
        description = {"invalid_grant": "expired access/refresh token", "invalid_client": "invalid client credentials"}
        return JSONResponse({"error": code, "error_description": description.get(code, code)}, status_code=400)


def public(sobject: str, row: dict[str, Any], version: str, names: list[str] | None = None) -> dict[str, Any]:
    """A record as the REST API returns it: `attributes` first, then the asked-for fields."""
    attributes = {"type": sobject, "url": f"/services/data/{version}/sobjects/{sobject}/{row['Id']}"}
    return {"attributes": attributes} | {k: row.get(k) for k in (names or list(row))}


def versioned(handler: Handler) -> Handler:
    """A path under /services/data/vXX.X answers 404 unless the org serves that API version."""

    async def endpoint(request: Request) -> Response:
        version = str(request.path_params["version"])
        number = version[1:].removesuffix(".0")
        if not (version.startswith("v") and version.endswith(".0") and number.isdigit() and int(number) in VERSIONS):
            return errors(404, "NOT_FOUND", "The requested resource does not exist")
        return await handler(request)

    return endpoint
