"""Helpers for vault tests: a real KMS over HTTP (moto's server on loopback), tenants, vaults."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
from moto.server import ThreadedMotoServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from sandboxes import hubspot as hubspot_sandbox
from sandboxes import salesforce as salesforce_sandbox
from sandboxes.athenahealth import app as athena_sandbox
from sandboxes.common import SandboxState
from sandboxes.zoho import app as zoho_sandbox
from settings import KmsSettings, Settings
from store.models import Tenant
from tests.support import databases
from vault.audit import AuditTrail
from vault.connections import Actor
from vault.credentials import CredentialVault
from vault.crypto import load_env_key
from vault.kms import DataKeyCache, KmsEnvelope
from vault.schemes import Sealer

# moto accepts any credentials; pass them explicitly so nothing reads the developer's real AWS profile.
FAKE_AWS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_session_token": "testing"}
ACTOR = Actor(type="tool", id="agent-7", purpose="crm_lookup_customer", request_id="req-1", conversation_id="conv-9")
SYSTEM = Actor(type="system", id="tests", purpose="test setup")


@dataclass(frozen=True)
class KmsServer:
    endpoint_url: str
    key_id: str

    def settings(self, **overrides: Any) -> KmsSettings:
        return KmsSettings(key_id=self.key_id, endpoint_url=self.endpoint_url, **overrides)

    def envelope(self, cache: DataKeyCache | None = None) -> KmsEnvelope:
        envelope = KmsEnvelope.from_settings(self.settings(), **FAKE_AWS)
        if cache is not None:
            envelope.cache = cache
        return envelope


@contextmanager
def moto_kms() -> Iterator[KmsServer]:
    """moto's KMS as a real HTTP server on 127.0.0.1 (an ephemeral port), with one symmetric key."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per KMS request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("kms", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", aws_session_token="testing")
        key_id = client.create_key(Description="crm-sor test key")["KeyMetadata"]["KeyId"]
        yield KmsServer(endpoint, key_id)
    finally:
        server.stop()


def closed_port_url() -> str:
    """A loopback URL nobody listens on: a real connection refusal, not a patched client."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def make_vault(settings: Settings, sessions: async_sessionmaker[AsyncSession], kms: KmsEnvelope | None = None,
               *, audit: AuditTrail | None = None) -> CredentialVault:
    return CredentialVault(sessions, Sealer(load_env_key(settings), kms), audit or AuditTrail(sessions))


async def make_tenant(sessions: async_sessionmaker[AsyncSession], provider: str = "hubspot", *,
                      status: str = "active", config: dict[str, Any] | None = None) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add(Tenant(id=tenant_id, name=f"tenant {tenant_id.hex[:6]}", provider=provider, status=status,
                           settings=dict(config or {})))
    return tenant_id


async def connect_to_sandbox(vault: CredentialVault, sessions: async_sessionmaker[AsyncSession],
                             state: SandboxState, provider: str = "hubspot", *, expires_in: int | None = 1800,
                             config: dict[str, Any] | None = None, status: str = "active") -> uuid.UUID:
    """A tenant holding a live OAuth token pair the sandbox issued, as a finished connect flow leaves it."""
    tenant = await make_tenant(sessions, provider, status=status, config=config)
    creds = state.tokens.credentials()
    expires_at = None if expires_in is None else datetime.now(UTC) + timedelta(seconds=expires_in)
    await vault.store(tenant, provider, {"auth": "oauth2", **asdict(creds)}, actor=SYSTEM, expires_at=expires_at)
    return tenant


def sandbox(slug: str) -> tuple[Starlette, SandboxState, httpx.ASGITransport]:
    apps = {"hubspot": hubspot_sandbox.create_app, "salesforce": salesforce_sandbox.create_app,
            "zoho": zoho_sandbox.create_app, "athenahealth": athena_sandbox.create_app}
    app = apps[slug]()
    return app, app.state.sandbox, httpx.ASGITransport(app=app)


@contextmanager
def scratch_database(postgres: str | None = None, *, from_env: bool = True) -> Iterator[str]:
    """A migrated database of its own: a fresh database on the PostgreSQL server `postgres` (or, with
    `from_env`, CRM_TEST_DATABASE_URL's), else a SQLite file; dropped afterwards. For whole-table scans."""
    server = postgres or (os.environ.get("CRM_TEST_DATABASE_URL") if from_env else None)
    with tempfile.TemporaryDirectory() as tmp, databases.scratch_database(server, Path(tmp)) as url:
        yield url
