"""Admin commands, so an operator never needs SQL: tenants, API keys and local JWTs.

    crm-sor tenant create --name "Acme Realty" --provider hubspot
    crm-sor tenant list | crm-sor tenant show TENANT_ID
    crm-sor tenant update TENANT_ID [--name …] [--status …] [--set KEY=VALUE] [--unset KEY] [--settings JSON]
    crm-sor tenant connect TENANT_ID --sandbox [SLUG]        # a `crm-sor dev` sandbox CRM
    crm-sor apikey create --tenant TENANT_ID --name website --scope crm:write --scope leads:write
    crm-sor apikey list --tenant TENANT_ID | crm-sor apikey revoke --tenant TENANT_ID KEY_ID_OR_PREFIX
    crm-sor token --role agent --tenant TENANT_ID [--subject agent-1] [--ttl-minutes 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cli import tenant_setup
from cli.tenant_setup import STATUSES

# Admin commands must start in well under a second: SQLAlchemy, the API and the drivers are imported inside
# the commands that use them, never at module level (tests/unit/cli checks `crm-sor --help` imports none).
if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from settings import Settings
    from store.models import Tenant


def register(subparsers: Any) -> None:
    tenant = subparsers.add_parser("tenant", help="create, list and show tenants")
    tenants = tenant.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")
    create = tenants.add_parser("create", help="add a tenant (status pending until its CRM is connected)")
    create.add_argument("--name", required=True)
    create.add_argument("--provider", required=True, help="CRM slug: hubspot, salesforce, zoho, … (README)")
    create.add_argument("--settings", default="{}", help='provider settings as JSON, e.g. \'{"portal_id": 1}\'')
    create.add_argument("--status", choices=STATUSES, default="pending")
    create.add_argument("--region", default="US",
                        help="the tenant's phone region (ISO 3166 code, e.g. AE, SA, EG, US): national numbers such as "
                             "050 123 4567 are read in it everywhere a phone is normalized")
    create.set_defaults(handler=_handler(_tenant_create))
    tenants.add_parser("list", help="every tenant").set_defaults(handler=_handler(_tenant_list))
    show = tenants.add_parser("show", help="one tenant: connection, keys, incidents")
    show.add_argument("tenant_id")
    show.set_defaults(handler=_handler(_tenant_show))
    tenant_setup.register(tenants, _handler)

    apikey = subparsers.add_parser("apikey", help="create, list and revoke public API keys")
    keys = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    key_create = keys.add_parser("create", help="issue a key (printed once; only its hash is stored)")
    key_create.add_argument("--tenant", required=True)
    key_create.add_argument("--name", required=True)
    key_create.add_argument("--scope", action="append", required=True, dest="scopes",
                            help="repeatable: crm:read, crm:write, leads:write")
    key_create.set_defaults(handler=_handler(_key_create))
    key_list = keys.add_parser("list", help="a tenant's keys (never the secrets)")
    key_list.add_argument("--tenant", required=True)
    key_list.set_defaults(handler=_handler(_key_list))
    revoke = keys.add_parser("revoke", help="revoke a key by id or prefix; effective on its next request")
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("key")
    revoke.set_defaults(handler=_handler(_key_revoke))

    token = subparsers.add_parser("token", help="mint an agent or operator JWT for local use and tests")
    token.add_argument("--role", choices=("agent", "operator"), required=True)
    token.add_argument("--tenant", help="required for agents; pins an operator to one tenant (tenant routes such "
                                        "as erasure need it)")
    token.add_argument("--subject", help="agent or operator id (default: local-<role>)")
    token.add_argument("--ttl-minutes", type=int, default=60)
    token.set_defaults(handler=_token_handler)


Command = Callable[[argparse.Namespace, "Settings", "async_sessionmaker[AsyncSession]"], Awaitable[None]]


def _handler(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import asyncio

        from settings import DEV_ENVS, get_settings
        from store.session import create_engine, session_factory

        if os.environ.get("CRM_ENV", "dev") in DEV_ENVS:
            tenant_setup.dev_credential_key()  # a dev directory's `.crm-sor/credential.key`, as `crm-sor dev`
        settings = get_settings()

        async def main() -> None:
            engine = create_engine(settings.database_url)
            try:
                await command(args, settings, session_factory(engine))
            finally:
                await engine.dispose()
        asyncio.run(main())
        return 0
    return run


def _error(message: str) -> Exception:
    from cli.main import CliError  # cli.main imports this module

    return CliError(message)


def _tenant_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise _error(f"{raw!r} is not a tenant id (a UUID; see `crm-sor tenant list`)") from None


async def _existing(sessions: async_sessionmaker[AsyncSession], raw: str) -> Tenant:
    from store.models import Tenant

    tenant_id = _tenant_id(raw)
    async with sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise _error(f"no tenant {tenant_id} (see `crm-sor tenant list`)")
    return tenant


async def _tenant_create(args: argparse.Namespace, settings: Settings,
                         sessions: async_sessionmaker[AsyncSession]) -> None:
    from drivers.registry import KNOWN_SLUGS, PARTNERSHIP_ONLY, PartnershipOnlyError
    from drivers.text import valid_region
    from store.models import Tenant

    if args.provider in PARTNERSHIP_ONLY:
        raise _error(str(PartnershipOnlyError(args.provider)))
    if args.provider not in KNOWN_SLUGS:
        raise _error(f"unknown provider {args.provider!r}; known: {', '.join(KNOWN_SLUGS)}")
    try:
        provider_settings = json.loads(args.settings)
    except json.JSONDecodeError:
        raise _error("--settings must be a JSON object") from None
    if not isinstance(provider_settings, dict):
        raise _error("--settings must be a JSON object")
    if not args.name.strip():
        raise _error("--name must not be empty")
    region = str(provider_settings.get("default_region") or args.region)
    if not valid_region(region):
        raise _error(f"--region {region!r} is not a phone region (an ISO 3166 code such as AE, SA, EG or US)")
    provider_settings["default_region"] = region.upper()
    async with sessions.begin() as session:
        tenant = Tenant(name=args.name.strip(), provider=args.provider, status=args.status,
                        settings=provider_settings)
        session.add(tenant)
        await session.flush()
        print(f"tenant {tenant.id} created ({tenant.provider}, {tenant.status})")


async def _tenant_list(args: argparse.Namespace, settings: Settings,
                       sessions: async_sessionmaker[AsyncSession]) -> None:
    from sqlalchemy import select

    from store.models import Tenant

    async with sessions() as session:
        tenants = list(await session.scalars(select(Tenant).order_by(Tenant.created_at)))
    if not tenants:
        print("no tenants yet: crm-sor tenant create --name NAME --provider SLUG")
    for tenant in tenants:
        print(f"{tenant.id}  {tenant.status:<8}  {tenant.provider:<12}  {tenant.name}")


async def _tenant_show(args: argparse.Namespace, settings: Settings,
                       sessions: async_sessionmaker[AsyncSession]) -> None:
    from sqlalchemy import func, select

    from store.models import ApiKey, Incident, TenantCredential

    tenant = await _existing(sessions, args.tenant_id)
    async with sessions() as session:
        credential = await session.scalar(select(TenantCredential).where(TenantCredential.tenant_id == tenant.id))
        keys = await _count(session, select(func.count()).select_from(ApiKey).where(
            ApiKey.tenant_id == tenant.id, ApiKey.revoked_at.is_(None)))
        incidents = await _count(session, select(func.count()).select_from(Incident).where(
            Incident.tenant_id == tenant.id, Incident.status == "open"))
    if credential is None:
        connection = "not connected"
    else:  # metadata only: never the secret
        connection = (f"{credential.provider}, {credential.scheme} scheme, version {credential.version}"
                      + (", NEEDS RECONNECT" if credential.needs_reconnect else ""))
    status = tenant.status + (f" ({tenant.status_reason})" if tenant.status_reason else "")
    lines = [("tenant", tenant.id), ("name", tenant.name), ("provider", tenant.provider), ("status", status),
             ("settings", json.dumps(tenant.settings, sort_keys=True)), ("connection", connection),
             ("api keys", f"{keys} active"), ("incidents", f"{incidents} open"),
             ("created", f"{tenant.created_at:%Y-%m-%d %H:%M} UTC")]
    print("\n".join(f"{label:<11} {value}" for label, value in lines))


async def _count(session: AsyncSession, query: Any) -> int:
    return int(await session.scalar(query) or 0)


async def _key_create(args: argparse.Namespace, settings: Settings,
                      sessions: async_sessionmaker[AsyncSession]) -> None:
    from api.keys import create_api_key

    tenant = await _existing(sessions, args.tenant)
    try:
        issued = await create_api_key(sessions, tenant.id, args.name, args.scopes)
    except ValueError as exc:
        raise _error(str(exc)) from None
    print(f"api key {issued.id} (prefix {issued.prefix}) for tenant {tenant.id}, scopes {' '.join(issued.scopes)}\n"
          f"\n  {issued.key}\n\nThis is the only time the key is shown: only its hash is stored. "
          "Send it as `Authorization: Bearer <key>`.")


async def _key_list(args: argparse.Namespace, settings: Settings,
                    sessions: async_sessionmaker[AsyncSession]) -> None:
    from api.keys import list_api_keys

    tenant = await _existing(sessions, args.tenant)
    rows = await list_api_keys(sessions, tenant.id)
    if not rows:
        print(f"tenant {tenant.id} has no API keys")
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        print(f"{row.id}  {row.prefix}  {state:<24}  last used {used:<16}  {' '.join(row.scopes):<30}  {row.name}")


async def _key_revoke(args: argparse.Namespace, settings: Settings,
                      sessions: async_sessionmaker[AsyncSession]) -> None:
    from api.keys import revoke_api_key

    tenant = await _existing(sessions, args.tenant)
    try:
        row = await revoke_api_key(sessions, tenant.id, args.key)
    except LookupError:
        raise _error(f"tenant {tenant.id} has no key {args.key!r} (see `crm-sor apikey list`)") from None
    print(f"api key {row.id} (prefix {row.prefix}) revoked")


def _token_handler(args: argparse.Namespace) -> int:
    """Only a tenant to check needs the database: a platform-wide operator token is minted without it."""
    if args.tenant is not None or args.role == "agent":
        return _handler(_token)(args)
    import asyncio

    from settings import get_settings

    asyncio.run(_token(args, get_settings(), None))
    return 0


async def _token(args: argparse.Namespace, settings: Settings,
                 sessions: async_sessionmaker[AsyncSession] | None) -> None:
    from api.auth import mint_token

    if not 1 <= args.ttl_minutes <= 7 * 24 * 60:
        raise _error("--ttl-minutes must be between 1 and 10080 (a week)")
    tenant_id = None
    if args.tenant is not None:
        assert sessions is not None
        tenant_id = (await _existing(sessions, args.tenant)).id
    elif args.role == "agent":
        raise _error("an agent token needs --tenant")
    token = mint_token(settings, subject=args.subject or f"local-{args.role}", role=args.role, tenant_id=tenant_id,
                       ttl=timedelta(minutes=args.ttl_minutes))
    print(token)
    if tenant_id is None and args.role == "operator":  # on stderr: `TOKEN=$(crm-sor token …)` stays clean
        print("note: this operator token is platform-wide (no tenant). Routes under /api/tenants/{id}/… accept it; "
              "tenant-scoped routes such as erasure (/api/tenant/forget) need a token pinned to the tenant: "
              "crm-sor token --role operator --tenant TENANT_ID", file=sys.stderr)
