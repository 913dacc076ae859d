"""Where the provider's OAuth redirect lands when the console started the flow: back on the connect page.

The callback (`api/routes/connect.py`) stays the one registered redirect URI. When the browser carries the
console's OAuth cookie (set when the operator pressed the button), the callback answers with a redirect to the
tenant's connect page instead of JSON, and a one-time message saying how it went.
"""

from __future__ import annotations

import base64
import uuid

from starlette.requests import Request
from starlette.responses import Response

from api.console.web import OAUTH_COOKIE, cookie, redirect

FLASH_COOKIE = "__Host-crm_console_flash"


def console_flow(request: Request) -> uuid.UUID | None:
    """The tenant whose OAuth flow the console started in this browser, if any."""
    try:
        return uuid.UUID(request.cookies.get(OAUTH_COOKIE, ""))
    except ValueError:
        return None


def land(tenant_id: uuid.UUID, message: str) -> Response:
    response = redirect(f"/console/t/{tenant_id}/connect")
    cookie(response, FLASH_COOKIE, base64.urlsafe_b64encode(message[:600].encode()).decode(), max_age=120)
    response.delete_cookie(OAUTH_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


def take_flash(request: Request) -> str | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        return base64.urlsafe_b64decode(raw.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
