"""What every provider sandbox shares: token issuing, fault knobs, call counters and the request guard.

A sandbox is a stateful Starlette app speaking one provider's real wire protocol. Provider modules supply
the wire-specific parts (error bodies, rate-limit headers, token response shape) through `Wire`; this
module owns the mechanics so the sandboxes never duplicate them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Knobs:
    """Fault and limit settings; change them from Python (`state.knobs.x = ...`) or POST /__sandbox__/knobs."""

    fail_next: int = 0  # answer the next N API calls with `fail_status` before doing anything
    fail_after_next: int = 0  # do the next N calls, then answer 5xx anyway (a lost response)
    fail_after_route: str | None = None  # limit fail_after_next to one route, e.g. "POST /crm/v3/objects/..."
    fail_status: int = 503
    latency_seconds: float = 0.0
    limit_next: int = 0  # answer the next N API calls with the provider's rate-limit response
    retry_after: str | None = None  # Retry-After on forced limits: delta-seconds or an HTTP-date
    page_size_cap: int | None = None  # clamp page sizes below the provider's maximum (pagination tests)
    interval_limit: int | None = None  # real rolling-window limit: calls per `interval_seconds`
    interval_seconds: float = 10.0


@dataclass
class Credentials:
    """What a tenant would have after connecting: the OAuth client and a live token pair."""

    client_id: str
    client_secret: str
    refresh_token: str
    access_token: str


class TokenIssuer:
    """Issues and checks OAuth tokens. Access tokens expire after `ttl_seconds` (None: never)."""

    def __init__(self, prefix: str, ttl_seconds: int | None, *, clock: Callable[[], float] = time.monotonic):
        self.prefix, self.ttl_seconds, self.clock = prefix, ttl_seconds, clock
        self.client_id = f"{prefix}-client-id"
        self.client_secret = f"{prefix}-client-secret"
        self.rotate_refresh_tokens = False
        # Without rotation, echo the presented refresh token (HubSpot) instead of omitting it (Salesforce).
        self.echo_refresh_token = False
        self._access: dict[str, float | None] = {}
        self._refresh: set[str] = set()
        self._codes: set[str] = set()

    def _new(self, kind: str) -> str:
        return f"{self.prefix}-{kind}-{secrets.token_urlsafe(12)}"

    def issue_access(self) -> str:
        token = self._new("at")
        self._access[token] = None if self.ttl_seconds is None else self.clock() + self.ttl_seconds
        return token

    def issue_refresh(self) -> str:
        token = self._new("rt")
        self._refresh.add(token)
        return token

    def issue_code(self) -> str:
        code = self._new("code")
        self._codes.add(code)
        return code

    def credentials(self) -> Credentials:
        return Credentials(self.client_id, self.client_secret, self.issue_refresh(), self.issue_access())

    def check(self, token: str | None) -> str:
        """ "ok", "expired" or "invalid"."""
        if token is None or token not in self._access:
            return "invalid"
        deadline = self._access[token]
        return "expired" if deadline is not None and self.clock() >= deadline else "ok"

    def expire_all(self) -> None:
        self._access = {token: float("-inf") for token in self._access}

    def revoke_refresh(self) -> None:
        self._refresh.clear()

    def redeem(self, form: dict[str, str]) -> tuple[str, str | None] | str:
        """Check a token-endpoint form; (access, new refresh or None) or an RFC 6749 error code."""
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return "invalid_client"
        grant = form.get("grant_type")
        if grant == "authorization_code":
            if form.get("code") not in self._codes:
                return "invalid_grant"
            self._codes.discard(form.get("code", ""))
            return self.issue_access(), self.issue_refresh()
        if grant != "refresh_token":
            return "unsupported_grant_type"
        old = form.get("refresh_token", "")
        if old not in self._refresh:
            return "invalid_grant"
        if not self.rotate_refresh_tokens:
            return self.issue_access(), old if self.echo_refresh_token else None
        self._refresh.discard(old)
        return self.issue_access(), self.issue_refresh()


@dataclass
class SandboxState:
    """State every sandbox has; provider states subclass it and add their records."""

    tokens: TokenIssuer
    knobs: Knobs = field(default_factory=Knobs)
    calls: Counter[str] = field(default_factory=Counter)
    _window: list[float] = field(default_factory=list)
    _last_stamp: datetime = field(default_factory=lambda: datetime(2000, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        """Strictly increasing UTC timestamps (ms resolution, as the providers report them)."""
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        stamp = max(now, self._last_stamp + timedelta(milliseconds=1))
        self._last_stamp = stamp
        return stamp

    def page_size(self, asked: int, maximum: int) -> int:
        cap = self.knobs.page_size_cap or maximum
        return max(1, min(asked, maximum, cap))

    @property
    def calls_in_window(self) -> int:
        return len(self._window)

    def take_interval_budget(self) -> int | None:
        """Count this call in the rolling window; remaining budget, or None when unlimited."""
        limit = self.knobs.interval_limit
        if limit is None:
            return None
        now = self.tokens.clock()
        self._window = [t for t in self._window if now - t < self.knobs.interval_seconds]
        self._window.append(now)
        return limit - len(self._window)


class Wire(Protocol):
    """The provider-specific responses the guard needs."""

    def unauthorized(self, reason: str) -> Response: ...

    def rate_limited(self, state: Any) -> Response: ...

    def server_error(self, status: int) -> Response: ...

    def decorate(self, response: Response, state: Any) -> None: ...

    def token_response(self, state: Any, access: str, refresh: str | None) -> Response: ...

    def token_error(self, code: str) -> Response: ...


def bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def guarded(state: SandboxState, wire: Wire, method: str, path: str, handler: Handler, *,
            token_of: Callable[[Request], str | None] = bearer) -> Route:
    """Wrap an API handler with counting, latency, faults, auth and rate limits, in the provider's order.

    `token_of` reads the access token from a request (default: `Authorization: Bearer …`); None is a 401.
    """
    name = f"{method} {path}"

    async def endpoint(request: Request) -> Response:
        state.calls[name] += 1
        knobs = state.knobs
        if knobs.latency_seconds:
            await asyncio.sleep(knobs.latency_seconds)
        if knobs.fail_next > 0:
            knobs.fail_next -= 1
            return wire.server_error(knobs.fail_status)
        verdict = state.tokens.check(token_of(request))
        if verdict != "ok":
            return wire.unauthorized(verdict)
        remaining = state.take_interval_budget()
        if knobs.limit_next > 0 or (remaining is not None and remaining < 0):
            knobs.limit_next = max(0, knobs.limit_next - 1)
            return wire.rate_limited(state)
        response = await handler(request)
        if knobs.fail_after_next > 0 and knobs.fail_after_route in (None, name):
            knobs.fail_after_next -= 1
            return wire.server_error(knobs.fail_status)
        wire.decorate(response, state)
        return response

    return Route(path, endpoint, methods=[method], name=name)


@dataclass(frozen=True)
class FaultAnswers:
    """How a sandbox that routes and authenticates by itself answers the knobs' faults."""

    server_error: Callable[[int], Response]
    rate_limited: Callable[[], Response]


async def with_faults(state: SandboxState, name: str, answers: FaultAnswers, run: Callable[[], Awaitable[Response]],
                      *, refuse: Callable[[], Response | None] | None = None) -> Response:
    """Count the call `name` and play the knobs around `run`, in `guarded`'s order: latency, fail_next, the
    sandbox's own auth check (`refuse` answers a refusal, or None), limit_next, the call, fail_after_next."""
    state.calls[name] += 1
    knobs = state.knobs
    if knobs.latency_seconds:
        await asyncio.sleep(knobs.latency_seconds)
    if knobs.fail_next > 0:
        knobs.fail_next -= 1
        return answers.server_error(knobs.fail_status)
    refused = refuse() if refuse is not None else None
    if refused is not None:
        return refused
    if knobs.limit_next > 0:
        knobs.limit_next -= 1
        return answers.rate_limited()
    response = await run()
    if knobs.fail_after_next > 0 and knobs.fail_after_route in (None, name):
        knobs.fail_after_next -= 1
        return answers.server_error(knobs.fail_status)
    return response


def oauth_routes(state: SandboxState, wire: Wire, *, token_paths: list[str], authorize_path: str) -> list[Route]:
    """Token endpoint(s) (refresh and code grants, form-encoded) and an auto-approving authorize page."""

    async def token(request: Request) -> Response:
        state.calls[f"POST {request.url.path}"] += 1
        if state.knobs.fail_next > 0:
            state.knobs.fail_next -= 1
            return wire.server_error(state.knobs.fail_status)
        # Parsed by hand: Starlette's request.form() needs python-multipart, which we don't otherwise need.
        form = dict(parse_qsl((await request.body()).decode()))
        outcome = state.tokens.redeem(form)
        if isinstance(outcome, str):
            return wire.token_error(outcome)
        return wire.token_response(state, *outcome)

    async def authorize(request: Request) -> Response:
        # The real page asks the user to consent; the sandbox consents at once.
        state.calls[f"GET {authorize_path}"] += 1
        params = {"code": state.tokens.issue_code()}
        if "state" in request.query_params:
            params["state"] = request.query_params["state"]
        return RedirectResponse(f"{request.query_params.get('redirect_uri', '/')}?{urlencode(params)}", 302)

    routes = [Route(path, token, methods=["POST"]) for path in token_paths]
    return [*routes, Route(authorize_path, authorize, methods=["GET"])]


def control_routes(state: SandboxState) -> list[Route]:
    """/__sandbox__/... knobs for processes that cannot reach the Python state (loopback dev stack)."""
    names = {f.name for f in fields(Knobs)}

    async def knobs(request: Request) -> Response:
        if request.method == "POST":
            for key, value in (await request.json()).items():
                if key not in names:
                    return JSONResponse({"error": f"unknown knob {key}"}, status_code=400)
                setattr(state.knobs, key, value)
        return JSONResponse(asdict(state.knobs))

    async def calls(request: Request) -> Response:
        return JSONResponse(dict(state.calls))

    async def expire_tokens(request: Request) -> Response:
        state.tokens.expire_all()
        return Response(status_code=204)

    async def revoke_refresh(request: Request) -> Response:
        state.tokens.revoke_refresh()
        return Response(status_code=204)

    async def credentials(request: Request) -> Response:
        return JSONResponse(asdict(state.tokens.credentials()))

    return [
        Route("/__sandbox__/knobs", knobs, methods=["GET", "POST"]),
        Route("/__sandbox__/calls", calls, methods=["GET"]),
        Route("/__sandbox__/expire-tokens", expire_tokens, methods=["POST"]),
        Route("/__sandbox__/revoke-refresh", revoke_refresh, methods=["POST"]),
        Route("/__sandbox__/credentials", credentials, methods=["POST"]),
    ]


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def iso_ms(moment: datetime) -> str:
    """HubSpot-style ISO 8601 with milliseconds and Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
