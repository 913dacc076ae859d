"""Secrets: processes refuse the dev placeholders outside dev/test, tokens carry and need their audience,
and no credential-bearing object shows its secret in repr()/str()."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pydantic import SecretStr

from api.auth import audience, decode_token, mint_token
from api.errors import Problem
from api.keys import IssuedKey
from cli.main import main
from drivers.auth import ApiKeyAuth, BearerAuth, OAuthTokenSource, TokenSet
from drivers.hubspot import HubSpotPrivateApp
from settings import OAuthClientSettings, Settings, get_settings
from vault.credentials import Credential
from vault.crypto import EnvKey
from vault.kms import _Entry
from vault.tokens import _Latest

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
REAL_JWT = "a-production-jwt-secret-with-enough-entropy-0123456789"


@pytest.mark.parametrize("command", ["api", "worker"])
@pytest.mark.parametrize("unset", ["CRM_JWT_SECRET", "CRM_SUBJECT_HASH_KEY"])
def test_processes_refuse_a_dev_placeholder_outside_dev(
        command: str, unset: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CRM_ENV", "production")
    monkeypatch.setenv("CRM_CREDENTIAL_ENCRYPTION_KEY", KEY)
    monkeypatch.setenv("CRM_JWT_SECRET", REAL_JWT)
    monkeypatch.setenv("CRM_SUBJECT_HASH_KEY", "a-production-subject-hash-key-0123456789")
    monkeypatch.delenv(unset)
    # Were the check missing, the command would fail here at once instead of serving (no hang, no network).
    monkeypatch.setenv("CRM_API__HOST", "256.256.256.256")
    monkeypatch.setenv("CRM_TEMPORAL__ADDRESS", "127.0.0.1:1")
    get_settings.cache_clear()
    try:
        assert main([command]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert unset in err and "placeholder" in err and REAL_JWT not in err


def test_dev_and_test_may_use_the_placeholders() -> None:
    from cli.serve import check_credential_key

    for env in ("dev", "test"):
        check_credential_key(Settings(env=env, credential_encryption_key=SecretStr(KEY)))
    configured = Settings(env="production", credential_encryption_key=SecretStr(KEY), jwt_secret=SecretStr(REAL_JWT),
                          subject_hash_key=SecretStr("another-real-secret-0123456789"))
    check_credential_key(configured)  # no placeholder left: starts


def _claims(settings: Settings, **extra: object) -> dict[str, object]:
    now = datetime.now(UTC)
    return {"sub": "a", "role": "agent", "tenant": str(uuid.uuid4()), "iss": settings.jwt_issuer, "iat": now,
            "exp": now + timedelta(minutes=5)} | extra


def test_tokens_carry_their_audience_and_are_checked_for_it() -> None:
    settings = Settings(env="test")
    secret = settings.jwt_secret.get_secret_value()
    token = mint_token(settings, subject="a", role="agent", tenant_id=uuid.uuid4())
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == audience(settings, "agent")
    assert decode_token(settings, token).role == "agent"
    forged = {
        "no audience": _claims(settings),
        "another service": _claims(settings, aud="billing-api:agent"),
        "the operator audience with the agent role": _claims(settings, aud=audience(settings, "operator")),
        "an agent audience claiming the operator role": _claims(settings, role="operator",
                                                                aud=audience(settings, "agent")),
    }
    for why, claims in forged.items():
        with pytest.raises(Problem) as refused:
            decode_token(settings, jwt.encode(claims, secret, algorithm="HS256"))
        assert refused.value.status == 401 and refused.value.type_ == "invalid-token", why
    elsewhere = settings.model_copy(update={"jwt_audience": "other-deployment"})
    with pytest.raises(Problem):
        decode_token(elsewhere, token)


async def test_a_remembered_token_still_expires_and_needs_the_current_secret() -> None:
    settings = Settings(env="test")
    token = mint_token(settings, subject="a", role="agent", tenant_id=uuid.uuid4(), ttl=timedelta(seconds=1))
    assert decode_token(settings, token).role == "agent"
    assert decode_token(settings, token).role == "agent"  # answered from memory this time
    rotated = settings.model_copy(update={"jwt_secret": SecretStr(REAL_JWT)})
    with pytest.raises(Problem) as refused:
        decode_token(rotated, token)
    assert refused.value.type_ == "invalid-token"
    await asyncio.sleep(max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time()) + 0.05)
    with pytest.raises(Problem) as expired:
        decode_token(settings, token)
    assert expired.value.type_ == "token-expired"


def test_no_credential_object_shows_its_secret() -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    objects: list[object] = [
        TokenSet(access_token=secret, refresh_token=secret + "r", expires_in=1800),
        BearerAuth(secret),
        ApiKeyAuth(secret, header="X-Api-Key"),
        OAuthTokenSource(token_url="https://example.invalid/token", client_id="c", client_secret=secret,
                         refresh_token=secret, access_token=secret),
        Credential(id=uuid.uuid4(), tenant_id=uuid.uuid4(), provider="hubspot", version=1, scheme="env",
                   expires_at=None, rotated_at=None, needs_reconnect=False, secret={"access_token": secret}),
        EnvKey.from_bytes(secret.encode()[:32].ljust(32, b"x")),
        _Entry(key=secret.encode(), expires_at=0.0, uses_left=1),
        _Latest(access_token=secret, version=1, expires_at=None),
        IssuedKey(id=uuid.uuid4(), tenant_id=uuid.uuid4(), name="k", prefix="abc", scopes=("crm:read",), key=secret),
        HubSpotPrivateApp(access_token=secret),
        OAuthClientSettings(client_id="client", client_secret=SecretStr(secret)),
        Settings(env="test", jwt_secret=SecretStr(secret), subject_hash_key=SecretStr(secret),
                 credential_encryption_key=SecretStr(secret), database_url=f"postgresql://app:{secret}@db:5432/x",
                 redis_url=f"redis://:{secret}@cache:6379/0"),
    ]
    for obj in objects:
        for shown in (repr(obj), str(obj)):
            assert secret not in shown, type(obj).__name__
            assert secret.encode().hex()[:16] not in shown and str(secret.encode()[:8])[2:-1] not in shown
    assert "postgresql://app:***@db:5432/x" in repr(objects[-1])
