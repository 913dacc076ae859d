"""Token issuing for providers whose tokens come from a client-credentials or login grant, not a refresh token
(Tekmetric's client credentials, Toast's partner login, Mindbody's staff user token).

`GrantIssuer` keeps the `TokenIssuer` interface the contract suite steers (`expire_all`, `revoke_refresh`,
`credentials`), where "revoking the refresh grant" means the stored client credentials stop working — the
nearest thing these providers have. Providers that hand back the same live token to a repeated grant
(Tekmetric, Toast) set `reuse_live_tokens`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from sandboxes.common import Credentials, Handler, TokenIssuer


class GrantIssuer(TokenIssuer):
    """Issues tokens to one client (id + secret, or a staff login) after checking it."""

    def __init__(self, prefix: str, ttl_seconds: int | None, *, reuse_live_tokens: bool = False,
                 reuse_margin_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(prefix, ttl_seconds, clock=clock)
        self.reuse_live_tokens, self.reuse_margin_seconds = reuse_live_tokens, reuse_margin_seconds
        self.revoked = False
        self._last: str | None = None

    def revoke_refresh(self) -> None:
        self.revoked = True

    def accepts(self, client_id: str | None, client_secret: str | None) -> bool:
        return not self.revoked and client_id == self.client_id and client_secret == self.client_secret

    def grant(self) -> tuple[str, float | None]:
        """A token for the checked client and its seconds left: the live one when the provider reuses it."""
        if self.reuse_live_tokens and self._last is not None:
            deadline = self._access.get(self._last)
            if deadline is None and self._last in self._access:
                return self._last, None
            if deadline is not None and deadline - self.clock() > self.reuse_margin_seconds:
                return self._last, deadline - self.clock()
        self._last = self.issue_access()
        return self._last, None if self.ttl_seconds is None else float(self.ttl_seconds)

    def credentials(self) -> Credentials:
        """The client credentials plus a live token, as a vault would hold them after the first grant."""
        token, _ = self.grant()
        return Credentials(self.client_id, self.client_secret, "", token)


def refusing_bad_input(handler: Handler, answer: Callable[[], Response]) -> Handler:
    """The provider's 400 for a malformed request (non-JSON body, non-numeric id or page) instead of a crash:
    the real APIs refuse such input, and a sandbox 500 would read as an outage to the driver."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except (ValueError, TypeError, KeyError, AttributeError, json.JSONDecodeError):
            return answer()

    return endpoint
