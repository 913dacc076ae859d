"""`crm-sor tenant update` (name, status, provider settings) and `crm-sor tenant connect --sandbox`.

    crm-sor tenant update TENANT_ID --name "Acme Realty" --set default_region=GB --unset portal_id
    crm-sor tenant update TENANT_ID --settings '{"portal_id": 62515}'        # merged into the settings
    crm-sor tenant connect TENANT_ID --sandbox [SLUG]                        # a `crm-sor dev` sandbox

Heavy imports (SQLAlchemy, the vault, drivers) happen inside the commands: `crm-sor --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from settings import Settings

STATUSES = ("pending", "active", "disabled")
# Where a tenant's CRM lives; replaced as a whole when the tenant is pointed at another sandbox.
URL_SETTINGS = ("base_url", "token_url", "instance_url", "endpoint_url", "authorize_url")


def register(tenants: Any, handler: Any) -> None:
    """Add `update` and `connect` to the `tenant` subcommands; `handler` wraps a command with a database."""
    update = tenants.add_parser("update", help="change a tenant's name, status or provider settings")
    update.add_argument("tenant_id")
    update.add_argument("--name")
    update.add_argument("--status", choices=STATUSES)
    update.add_argument("--settings", help="JSON object merged into the provider settings")
    update.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_values",
                        help="one setting (repeatable); VALUE is parsed as JSON when it can be, else kept as text")
    update.add_argument("--unset", action="append", default=[], metavar="KEY", help="drop a setting (repeatable)")
    update.set_defaults(handler=handler(tenant_update))

    connect = tenants.add_parser("connect", help="connect a tenant to a CRM sandbox of `crm-sor dev`")
    connect.add_argument("tenant_id")
    connect.add_argument("--sandbox", nargs="?", const="", required=True, metavar="SLUG",
                         help="the sandbox to use (default: the tenant's provider); `crm-sor dev` must have "
                              "started once in this directory")
    connect.set_defaults(handler=handler(tenant_connect))


def _error(message: str) -> Exception:
    from cli.main import CliError

    return CliError(message)


def parse_settings(args: argparse.Namespace, current: dict[str, Any]) -> dict[str, Any]:
    """The tenant's settings after --settings, --set and --unset (in that order)."""
    merged = dict(current)
    if args.settings is not None:
        try:
            given = json.loads(args.settings)
        except json.JSONDecodeError:
            raise _error("--settings must be a JSON object") from None
        if not isinstance(given, dict):
            raise _error("--settings must be a JSON object")
        merged |= given
    for item in args.set_values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise _error(f"--set takes KEY=VALUE, got {item!r}")
        try:
            merged[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            merged[key.strip()] = raw
    for key in args.unset:
        merged.pop(key, None)
    return merged


async def tenant_update(args: argparse.Namespace, settings: Settings,
                        sessions: async_sessionmaker[AsyncSession]) -> None:
    from store.models import Tenant

    tenant_id = _uuid(args.tenant_id)
    async with sessions.begin() as session:
        tenant = await session.get(Tenant, tenant_id)
        if tenant is None:
            raise _error(f"no tenant {tenant_id} (see `crm-sor tenant list`)")
        before = (tenant.name, tenant.status, dict(tenant.settings or {}))
        if args.name is not None:
            if not args.name.strip():
                raise _error("--name must not be empty")
            tenant.name = args.name.strip()
        if args.status is not None:
            tenant.status = args.status
            tenant.status_reason = None
        tenant.settings = parse_settings(args, before[2])
        after = (tenant.name, tenant.status, tenant.settings)
    if after == before:
        print(f"tenant {tenant_id}: nothing changed")
        return
    changed = [label for label, old, new in zip(("name", "status", "settings"), before, after, strict=True)
               if old != new]
    print(f"tenant {tenant_id} updated ({', '.join(changed)}); settings now {json.dumps(after[2], sort_keys=True)}")


async def tenant_connect(args: argparse.Namespace, settings: Settings,
                         sessions: async_sessionmaker[AsyncSession]) -> None:
    from cli.dev_sandboxes import index_path, read_index
    from store.models import Tenant

    tenant_id = _uuid(args.tenant_id)
    async with sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise _error(f"no tenant {tenant_id} (see `crm-sor tenant list`)")
    index = read_index()
    if not index:
        raise _error(f"no sandboxes known here ({index_path()} is missing): start `crm-sor dev` in this "
                     "directory first; it serves every provider sandbox and writes that file")
    slug = args.sandbox or tenant.provider
    if slug not in index or "secret" not in index[slug]:
        from sandboxes.connect import NOT_CONNECTABLE

        why = NOT_CONNECTABLE.get(slug, "no such sandbox")
        raise _error(f"cannot connect to the {slug!r} sandbox: {why}; sandboxes: {', '.join(sorted(index))}")
    outcome = await connect_to_sandbox(settings, sessions, tenant_id, slug, index[slug])
    if outcome.status == "active":
        print(f"tenant {tenant_id} connected to the {slug} sandbox at {index[slug]['base_url']}: active")
    else:
        raise _error(f"tenant {tenant_id} stored the {slug} sandbox's credentials but its connection test failed "
                     f"({outcome.reason}); is `crm-sor dev` running? Then: crm-sor tenant connect {tenant_id} "
                     f"--sandbox {slug}")


async def connect_to_sandbox(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                             tenant_id: uuid.UUID, slug: str, entry: dict[str, Any]) -> Any:
    """Point the tenant at the sandbox (provider, URLs, account settings), store its credential in the vault and
    run the connection test, which makes the tenant `active` when it passes. Returns the ConnectOutcome."""
    from sqlalchemy import update

    from settings import DEV_ENVS
    from store.models import Tenant
    from vault.connect import Connector
    from vault.connections import Actor
    from vault.provider import VaultDriverProvider

    if settings.env not in DEV_ENVS:
        raise _error(f"sandboxes are for CRM_ENV dev/test, not {settings.env!r}")
    if settings.credential_encryption_key is None and not settings.kms.key_id:
        from pydantic import SecretStr

        from cli.dev import ensure_dev_credential_key

        ensure_dev_credential_key()  # the key `crm-sor dev` reads, or its credentials would be unreadable there
        settings = settings.model_copy(update={
            "credential_encryption_key": SecretStr(os.environ["CRM_CREDENTIAL_ENCRYPTION_KEY"])})
    # Sandboxes listen on loopback, which the outbound guard allows in dev/test only (checked above); the
    # connection test needs no provider budget (and so no Redis).
    settings = settings.model_copy(update={
        "outbound": settings.outbound.model_copy(update={"allow_loopback": True}),
        "provider_budget": settings.provider_budget.model_copy(update={"enabled": False})})
    actor = Actor(type="platform_operator", id="crm-sor-cli", purpose=f"connect to the {slug} sandbox")
    async with sessions.begin() as session:
        tenant = await session.get(Tenant, tenant_id)
        if tenant is None:
            raise _error(f"no tenant {tenant_id}")
        await session.execute(update(Tenant).where(Tenant.id == tenant_id).values(
            provider=slug, settings={**_without_urls(tenant.settings or {}), **entry["settings"]},
            status="pending" if tenant.status != "disabled" else "disabled"))
    drivers = VaultDriverProvider.from_settings(settings, sessions)
    try:
        await drivers.vault.store(tenant_id, slug, dict(entry["secret"]), actor=actor)
        return await Connector(drivers, sessions, oauth_clients=settings.oauth_clients,
                               public_base_url=settings.public_base_url).retest(tenant_id, actor)
    finally:
        await drivers.aclose()


def _without_urls(settings: dict[str, Any]) -> dict[str, Any]:
    """A tenant's settings minus the hosts of a previous connection (which another provider's driver might read)."""
    return {key: value for key, value in settings.items() if key not in URL_SETTINGS}


def dev_credential_key() -> None:
    """Use `crm-sor dev`'s dev-only credential key when no key is configured (sandbox credentials only)."""
    from settings import STATE_DIR

    path = STATE_DIR / "credential.key"
    if not os.environ.get("CRM_CREDENTIAL_ENCRYPTION_KEY") and path.exists():
        os.environ["CRM_CREDENTIAL_ENCRYPTION_KEY"] = path.read_text().strip()


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise _error(f"{raw!r} is not a tenant id (a UUID; see `crm-sor tenant list`)") from None
