"""One Settings object for every process (API, worker, CLI). Read it through `get_settings()`.

Environment variables use the `CRM_` prefix and `__` for nested groups, e.g. `CRM_DATABASE_URL`,
`CRM_TEMPORAL__ADDRESS`, `CRM_CREDENTIAL_ENCRYPTION_KEY`. Workflows never read settings: whatever they
need arrives in their input model.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

STATE_DIR = Path(".crm-sor")
# Placeholders good enough for a laptop; `crm-sor api|worker` refuse them outside env dev/test.
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789"
DEV_SUBJECT_HASH_KEY = "dev-only-subject-hash-key"
DEV_ENVS = ("dev", "test")


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{STATE_DIR / 'crm-sor.db'}"


class TemporalSettings(BaseModel):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "crm-sor"
    ui_port: int = 8233
    ui_url: str | None = None  # the Temporal UI operators open (console links); default http://localhost:{ui_port}
    # OpenTelemetry spans for workflows and activities through Temporal's interceptor (needs the `tracing`
    # extra). Spans go where the standard OTEL_* variables say (OTEL_EXPORTER_OTLP_ENDPOINT…); see docs/metrics.md.
    tracing: bool = False


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


class ProviderBudgetSettings(BaseModel):
    """Pacing of outbound CRM calls under each provider's declared limits (drivers/budget.py), in Redis."""

    enabled: bool = True
    tool_reserve: float = Field(default=0.1, ge=0.0, lt=1.0)  # share of each limit only the agent's tools may use
    fallback_share: float = Field(default=0.25, gt=0.0, le=1.0)  # per process while Redis is away
    # How long an agent's tool call may wait for a slot (e.g. a search slot) before it is refused; the lookup's own
    # deadline answers the caller first, and the search that got its slot later still warms the phone index.
    tool_wait_seconds: float = Field(default=5.0, ge=0.0, le=10.0)
    # The same for background calls (mirror, erasure): long enough for a per-second window (a search limit) to
    # free, short enough that a spent 10 s window is a durable wait in the workflow, not a held worker slot.
    background_wait_seconds: float = Field(default=2.0, ge=0.0, le=10.0)


class LookupSettings(BaseModel):
    """Voice-grade lookups (api/lookup.py): a caller waits on the line while `crm_lookup_customer` runs.

    After `deadline_ms` the tool answers "unknown caller" (`reason: crm_timeout`) so the agent greets generically;
    the CRM's late answer still warms the phone index (store/phone_index.py), whose entries live `index_ttl_days`.
    """

    deadline_ms: int = Field(default=800, ge=50, le=10_000)
    index_enabled: bool = True
    index_ttl_days: float = Field(default=7.0, gt=0.0, le=30.0)


class MetricsSettings(BaseModel):
    """Prometheus endpoints (docs/metrics.md). The API always serves GET /metrics; the worker's listeners are
    off unless a port is set, e.g. `CRM_METRICS__WORKER_PORT=9464 CRM_METRICS__TEMPORAL_PORT=9465`."""

    host: str = "127.0.0.1"
    worker_port: int | None = None  # this process's counters (CRM calls, decrypts, audit failures)
    temporal_port: int | None = None  # the Temporal SDK's own metrics (task latencies, slots, polls)
    cache_seconds: float = 15.0  # how long the API reuses its backlog query between scrapes


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


class DevSettings(BaseModel):
    """`crm-sor dev` only: the provider sandboxes listen on `sandbox_port_base` + 1, + 2, … (cli/dev_sandboxes.py)."""

    sandbox_port_base: int = Field(default=8700, ge=1, le=65_000)


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
    provider_budget: ProviderBudgetSettings = ProviderBudgetSettings()
    kms: KmsSettings = KmsSettings()
    metrics: MetricsSettings = MetricsSettings()
    # base64 of 32 bytes; `crm-sor dev` generates one into .crm-sor/ when it is missing.
    credential_encryption_key: SecretStr | None = None
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_issuer: str = "crm-sor"
    # Agent and operator tokens name this API as their audience (`aud` = "<audience>:<role>"), so a token
    # minted with the same secret for another service or another role is refused.
    jwt_audience: str = "crm-sor-api"
    # Keyed hash for erasure subjects in audit rows (never identifiers in clear).
    subject_hash_key: SecretStr = SecretStr(DEV_SUBJECT_HASH_KEY)
    public_base_url: str = "http://127.0.0.1:8000"
    # OAuth apps by provider slug, used by the operator connect flow (vault issue).
    oauth_clients: dict[str, OAuthClientSettings] = {}
    outbound: OutboundSettings = OutboundSettings()
    lookup: LookupSettings = LookupSettings()
    dev: DevSettings = DevSettings()


    def default_secrets(self) -> list[str]:
        """Names of the settings still holding the dev placeholder (a deployment must set its own)."""
        names = []
        if self.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
            names.append("CRM_JWT_SECRET")
        if self.subject_hash_key.get_secret_value() == DEV_SUBJECT_HASH_KEY:
            names.append("CRM_SUBJECT_HASH_KEY")
        return names

    def __repr_args__(self) -> Any:
        # Connection URLs may embed a password (postgresql://user:pw@host): repr/str show them without it.
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name in ("database_url", "redis_url") else value


def outbound_problem(settings: Settings) -> str | None:
    """Why this process must not start with these outbound settings, or None."""
    if settings.outbound.allow_loopback and settings.env not in DEV_ENVS:
        return (f"CRM_OUTBOUND__ALLOW_LOOPBACK is on with CRM_ENV={settings.env!r}: loopback destinations are "
                f"for {', '.join(sorted(DEV_ENVS))} only (it would let tenants' URLs reach this host)")
    return None


def redact_url(url: Any) -> Any:
    """`scheme://user:***@host/...` for a URL with a password; anything else unchanged."""
    if not isinstance(url, str):
        return url
    return re.sub(r"^([a-z0-9+.-]+://[^:/@]*):[^@/]*@", r"\1:***@", url, flags=re.I)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
