"""One Settings object for every process (API, worker, CLI). Read it through `get_settings()`.

Environment variables use the `CRM_` prefix and `__` for nested groups, e.g. `CRM_DATABASE_URL`,
`CRM_TEMPORAL__ADDRESS`, `CRM_CREDENTIAL_ENCRYPTION_KEY`. Workflows never read settings: whatever they
need arrives in their input model.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

STATE_DIR = Path(".crm-sor")


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{STATE_DIR / 'crm-sor.db'}"


class TemporalSettings(BaseModel):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "crm-sor"
    ui_port: int = 8233


class RetentionSettings(BaseModel):
    """Per-table overrides of the retention windows that class-(c) tables declare in store/models.py.

    The schema is where the policy lives and is reviewed; an override (e.g. a tenant contract that asks for
    less) is set here, e.g. `CRM_RETENTION__OVERRIDES_DAYS='{"messages": 3}'`.
    """

    overrides_days: dict[str, int] = {}


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1_048_576


class RateLimitSettings(BaseModel):
    enabled: bool = True
    per_api_key: str = "200/minute"
    per_tenant_tool: str = "50/minute"
    redis_timeout_seconds: float = 0.05
    # Consecutive Redis failures that open the breaker, and how long it stays open before one probe.
    breaker_failures: int = 3
    breaker_cooldown_seconds: float = 5.0


class KmsSettings(BaseModel):
    """AWS KMS for envelope-encrypted credentials; with `key_id` set, new credential rows are written under KMS."""

    key_id: str | None = None
    region: str = "us-east-1"
    endpoint_url: str | None = None
    # Unwrapped data keys stay in process memory at most this long / this many decrypts.
    data_key_cache_seconds: float = 300.0
    data_key_cache_max_uses: int = 1000


class OutboundSettings(BaseModel):
    """Outbound HTTP to CRMs (drivers/transport.py): every API and token call goes through the SSRF guard.

    `allow_loopback` lets drivers reach loopback sandboxes; it is for tests and `crm-sor dev` only, and
    `crm-sor api` / `worker` refuse to start with it outside `env` dev/test (`outbound_problem`).
    Private, link-local, CGNAT and metadata addresses are never allowed.
    """

    allow_loopback: bool = False
    max_response_bytes: int = 10 * 1024 * 1024
    timeout_seconds: float = 30.0


# Environments where loopback sandboxes are legitimate destinations.
LOOPBACK_ENVS = frozenset({"dev", "test"})


class OAuthClientSettings(BaseModel):
    """Our OAuth app at one provider, e.g. `CRM_OAUTH_CLIENTS__HUBSPOT__CLIENT_ID`."""

    client_id: str
    client_secret: SecretStr


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_", env_nested_delimiter="__", extra="ignore")

    env: str = "dev"
    database_url: str = Field(default_factory=default_database_url)
    redis_url: str = "redis://127.0.0.1:6379/0"
    temporal: TemporalSettings = TemporalSettings()
    api: ApiSettings = ApiSettings()
    retention: RetentionSettings = RetentionSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    kms: KmsSettings = KmsSettings()
    # base64 of 32 bytes; `crm-sor dev` generates one into .crm-sor/ when it is missing.
    credential_encryption_key: SecretStr | None = None
    jwt_secret: SecretStr = SecretStr("dev-only-jwt-secret-change-me-0123456789")
    jwt_issuer: str = "crm-sor"
    # Keyed hash for erasure subjects in audit rows (never identifiers in clear).
    subject_hash_key: SecretStr = SecretStr("dev-only-subject-hash-key")
    public_base_url: str = "http://127.0.0.1:8000"
    # OAuth apps by provider slug, used by the operator connect flow (vault issue).
    oauth_clients: dict[str, OAuthClientSettings] = {}
    outbound: OutboundSettings = OutboundSettings()


def outbound_problem(settings: Settings) -> str | None:
    """Why this process must not start with these outbound settings, or None."""
    if settings.outbound.allow_loopback and settings.env not in LOOPBACK_ENVS:
        return (f"CRM_OUTBOUND__ALLOW_LOOPBACK is on with CRM_ENV={settings.env!r}: loopback destinations are "
                f"for {', '.join(sorted(LOOPBACK_ENVS))} only (it would let tenants' URLs reach this host)")
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
