"""Who is calling: agents and operators present a JWT (HS256, PyJWT); the tenant comes from its claims.

Claims: `sub` (agent or operator id), `role` (`agent` | `operator`), `tenant` (required for agents; for
operators it pins them to one tenant, absent means platform-wide), `iss`, `iat`, `exp`, and `aud` =
`"<jwt_audience>:<role>"`: required and checked, so a token minted with the same secret for another service
(or a token whose role claim was meant elsewhere) does not open this API.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from starlette.requests import Request

from api.errors import Problem
from settings import Settings

ROLES = ("agent", "operator")


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    tenant_id: uuid.UUID | None

    def require_tenant(self) -> uuid.UUID:
        if self.tenant_id is None:
            raise Problem(403, "tenant-required", "This token is not bound to a tenant; this route acts on the "
                          "token's tenant: mint one with `crm-sor token --role operator --tenant TENANT_ID`.")
        return self.tenant_id

    def may_act_for(self, tenant_id: uuid.UUID) -> bool:
        return self.role == "operator" and self.tenant_id in (None, tenant_id)


def mint_token(settings: Settings, *, subject: str, role: str, tenant_id: uuid.UUID | None,
               ttl: timedelta = timedelta(hours=1)) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "agent" and tenant_id is None:
        raise ValueError("an agent token needs a tenant")
    now = datetime.now(UTC)
    claims: dict[str, object] = {"sub": subject, "role": role, "iss": settings.jwt_issuer, "iat": now,
                                 "exp": now + ttl, "aud": audience(settings, role)}
    if tenant_id is not None:
        claims["tenant"] = str(tenant_id)
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def audience(settings: Settings, role: str) -> str:
    return f"{settings.jwt_audience}:{role}"


# Tokens already verified, with their expiry: PyJWT's decode costs ~0.4 ms (its base64 checks), a large share
# of a hot-path insert, and an agent sends the same token for its whole session. Keyed by the secret and the
# expected issuer/audience as well, so a rotated secret or another configuration verifies afresh.
_VERIFIED: dict[tuple[str, str, str, str], tuple[Principal, float]] = {}
_VERIFIED_MAX = 10_000


def decode_token(settings: Settings, token: str) -> Principal:
    """The token's principal, or a 401 problem. A token verified before is answered from memory until it expires."""
    key = (settings.jwt_secret.get_secret_value(), settings.jwt_issuer, settings.jwt_audience, token)
    cached = _VERIFIED.get(key)
    if cached is not None:
        if time.time() < cached[1]:
            return cached[0]
        del _VERIFIED[key]
    principal, expires = _verify(settings, token)
    if len(_VERIFIED) >= _VERIFIED_MAX:  # bounded: forget everyone rather than grow without limit
        _VERIFIED.clear()
    _VERIFIED[key] = (principal, expires)
    return principal


def _verify(settings: Settings, token: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(token, settings.jwt_secret.get_secret_value(), algorithms=["HS256"],
                            issuer=settings.jwt_issuer, audience=[audience(settings, role) for role in ROLES],
                            options={"require": ["sub", "role", "exp", "iss", "aud"]})
    except jwt.ExpiredSignatureError:
        raise Problem(401, "token-expired", "The token has expired.", headers=_challenge()) from None
    except jwt.PyJWTError:
        raise Problem(401, "invalid-token", "The token is not valid.", headers=_challenge()) from None
    role, tenant = claims.get("role"), claims.get("tenant")
    if role not in ROLES or claims.get("aud") not in (audience(settings, str(role)), [audience(settings, str(role))]):
        # The audience names the role too: an agent-audience token cannot claim the operator role.
        raise Problem(401, "invalid-token", "The token is not valid.", headers=_challenge())
    try:
        tenant_id = uuid.UUID(str(tenant)) if tenant is not None else None
    except ValueError:
        raise Problem(401, "invalid-token", "The token is not valid.", headers=_challenge()) from None
    if role == "agent" and tenant_id is None:
        raise Problem(401, "invalid-token", "The token is not valid.", headers=_challenge())
    return Principal(subject=str(claims["sub"]), role=str(role), tenant_id=tenant_id), float(claims["exp"])


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="crm-sor"'}


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "missing-credentials", "A bearer token is required.", headers=_challenge())
    return token.strip()


def authenticate(request: Request, *, role: str) -> Principal:
    """The caller's principal, or a 401/403 problem. Agents get their tenant; operators theirs or none."""
    settings: Settings = request.app.state.ctx.settings
    principal = decode_token(settings, bearer_token(request))
    if principal.role != role:
        raise Problem(403, "wrong-role", f"This route needs an {role} token.")
    return principal


def require_agent(request: Request) -> Principal:
    return authenticate(request, role="agent")


def require_operator(request: Request, tenant_id: uuid.UUID | None = None) -> Principal:
    principal = authenticate(request, role="operator")
    if tenant_id is not None and not principal.may_act_for(tenant_id):
        # 404, not 403: an operator pinned to one tenant must not learn that another tenant exists.
        raise Problem(404, "not-found", "No such tenant.")
    return principal
