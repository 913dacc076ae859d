"""`crm-sor tenant|apikey|token`: the admin commands against the real test database."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import decode_token
from api.errors import Problem
from api.keys import hash_key, verify_api_key
from cli.main import main
from settings import Settings, get_settings
from store.models import ApiKey, Tenant

pytestmark = pytest.mark.integration
CRM_SOR = str(Path(sys.executable).parent / "crm-sor")


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CRM_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def crm_sor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command in a worker thread (it runs its own event loop, as from a shell)."""
    capsys.readouterr()
    status = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return status, out, err


async def new_tenant(capsys: pytest.CaptureFixture[str], name: str = "Acme Realty") -> str:
    status, out, _ = await crm_sor(capsys, "tenant", "create", "--name", name, "--provider", "hubspot",
                                   "--settings", '{"portal_id": 62515}')
    assert status == 0
    match = re.match(r"tenant ([0-9a-f-]{36}) created \(hubspot, pending\)", out)
    assert match, out
    return match.group(1)


async def test_tenant_create_list_show(cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    tenant = await new_tenant(capsys, name="Shown Salon")
    status, out, _ = await crm_sor(capsys, "tenant", "list")
    assert status == 0 and any(line.startswith(tenant) and "Shown Salon" in line for line in out.splitlines())
    status, out, _ = await crm_sor(capsys, "tenant", "show", tenant)
    assert status == 0
    assert "connection  not connected" in out and "api keys    0 active" in out and '"portal_id": 62515' in out


async def test_apikey_create_list_revoke(cli_env: None, capsys: pytest.CaptureFixture[str],
                                         sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await new_tenant(capsys)
    status, out, _ = await crm_sor(capsys, "apikey", "create", "--tenant", tenant, "--name", "website",
                                   "--scope", "crm:write", "--scope", "leads:write")
    assert status == 0 and "only time the key is shown" in out
    (key,) = re.findall(r"crm_sk_\S+", out)
    principal = await verify_api_key(sessions, key)
    assert str(principal.tenant_id) == tenant and principal.scopes == {"crm:write", "leads:write"}
    async with sessions() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.id == principal.key_id))
    assert row is not None and row.key_hash == hash_key(key)

    status, out, _ = await crm_sor(capsys, "apikey", "list", "--tenant", tenant)
    assert status == 0 and principal.prefix in out and "active" in out and key not in out
    status, out, _ = await crm_sor(capsys, "apikey", "revoke", "--tenant", tenant, principal.prefix)
    assert status == 0 and "revoked" in out
    with pytest.raises(Problem) as refused:
        await verify_api_key(sessions, key)
    assert refused.value.type_ == "api-key-revoked"
    status, out, _ = await crm_sor(capsys, "apikey", "list", "--tenant", tenant)
    assert "revoked" in out


async def test_tokens_carry_the_tenant(cli_env: None, capsys: pytest.CaptureFixture[str],
                                       settings: Settings) -> None:
    tenant = await new_tenant(capsys)
    status, out, _ = await crm_sor(capsys, "token", "--role", "agent", "--tenant", tenant, "--subject", "agent-5")
    assert status == 0
    principal = decode_token(settings, out.strip())
    assert (principal.role, principal.subject, str(principal.tenant_id)) == ("agent", "agent-5", tenant)
    status, out, _ = await crm_sor(capsys, "token", "--role", "operator")
    assert status == 0 and decode_token(settings, out.strip()).tenant_id is None


async def test_a_tenant_is_created_with_its_phone_region(cli_env: None, capsys: pytest.CaptureFixture[str],
                                                        sessions: async_sessionmaker[AsyncSession]) -> None:
    status, out, _ = await crm_sor(capsys, "tenant", "create", "--name", "Dubai Dental", "--provider", "hubspot",
                                   "--region", "ae")
    assert status == 0
    tenant_id = uuid.UUID(out.split()[1])
    status, out, _ = await crm_sor(capsys, "tenant", "create", "--name", "Austin Autos", "--provider", "hubspot")
    default_id = uuid.UUID(out.split()[1])
    async with sessions() as session:
        tenant, default = await session.get(Tenant, tenant_id), await session.get(Tenant, default_id)
    assert tenant is not None and tenant.settings["default_region"] == "AE"
    assert default is not None and default.settings["default_region"] == "US"


@pytest.mark.parametrize(("argv", "message"), [
    (["tenant", "show", "not-a-uuid"], "is not a tenant id"),
    (["tenant", "show", "UNKNOWN"], "no tenant"),
    (["tenant", "create", "--name", "X", "--provider", "opentable"], "partnership-only"),
    (["tenant", "create", "--name", "X", "--provider", "acme"], "unknown provider"),
    (["tenant", "create", "--name", "X", "--provider", "hubspot", "--settings", "[1]"], "JSON object"),
    (["tenant", "create", "--name", "X", "--provider", "hubspot", "--region", "UAE"], "is not a phone region"),
    (["apikey", "create", "--tenant", "UNKNOWN", "--name", "n", "--scope", "crm:write"], "no tenant"),
    (["apikey", "create", "--tenant", "TENANT", "--name", "n", "--scope", "crm:all"], "unknown scope"),
    (["apikey", "revoke", "--tenant", "TENANT", "crm_sk_000000000000_x"], "has no key"),
    (["apikey", "list", "--tenant", "UNKNOWN"], "no tenant"),
    (["token", "--role", "agent"], "needs --tenant"),
    (["token", "--role", "agent", "--tenant", "UNKNOWN"], "no tenant"),
    (["token", "--role", "operator", "--ttl-minutes", "0"], "--ttl-minutes"),
])
async def test_clear_errors(argv: list[str], message: str, cli_env: None,
                            capsys: pytest.CaptureFixture[str]) -> None:
    tenant = await new_tenant(capsys) if "TENANT" in argv else ""
    argv = [tenant if a == "TENANT" else str(uuid.uuid4()) if a == "UNKNOWN" else a for a in argv]
    status, out, err = await crm_sor(capsys, *argv)
    assert status == 2 and message in err and "Traceback" not in err and out == ""


async def test_the_installed_command_prints_a_key_once(cli_env: None, database_url: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    tenant = await new_tenant(capsys)
    env = {"PATH": str(Path(sys.executable).parent), "CRM_DATABASE_URL": database_url, "HOME": str(tmp_path)}
    issued = await asyncio.to_thread(
        subprocess.run, [CRM_SOR, "apikey", "create", "--tenant", tenant, "--name", "n", "--scope", "crm:read"],
        env=env, capture_output=True, text=True, timeout=60, check=True)
    (key,) = re.findall(r"crm_sk_\S+", issued.stdout)
    status, listed, _ = await crm_sor(capsys, "apikey", "list", "--tenant", tenant)
    assert status == 0 and key not in listed and key.split("_")[2] in listed
