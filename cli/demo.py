"""`crm-sor dev` demo: a tenant wired to the HubSpot sandbox on loopback, and a curl that records a conversation.

Runs as a `DEV_HOOKS` step after migrations: serves the HubSpot sandbox on a loopback port (in-memory: it
starts empty on every `crm-sor dev`), creates the demo tenant once (a fixed id) and points it at this run's
sandbox with a freshly connected OAuth credential in the vault, registers the sweep Schedule, and prints
the commands a newcomer needs: the curl (with an agent JWT minted now), where to watch the run in the
Temporal UI, and how to see the contact and the transcript note appear in the sandbox.
"""

from __future__ import annotations

import json
import shlex
import uuid
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from api.auth import mint_token
from api.lifecycle import ensure_sweep_schedule
from api.temporal import connect_temporal
from sandboxes import hubspot as hubspot_sandbox
from sandboxes.serve import ServedSandbox, serve_in_thread
from settings import Settings
from store.models import Tenant
from store.session import create_engine, session_factory
from vault.connections import Actor
from vault.credentials import CredentialVault

DEMO_TENANT_ID = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")
_served: list[ServedSandbox] = []  # the sandbox lives as long as the dev process


def conversation_example() -> dict[str, Any]:
    return {"customer": {"name": "Ada Lovelace", "phone": "+1 415 555 0134", "email": "ada@example.com"},
            "channel": "voice",
            "messages": [{"turn_id": "1", "role": "customer", "text": "Hi, I'd like to book a viewing of the loft."},
                         {"turn_id": "2", "role": "agent", "text": "Of course! Does Thursday at 5pm work?"},
                         {"turn_id": "3", "role": "customer", "text": "Thursday works, thanks."}]}


async def setup_demo(settings: Settings) -> list[str]:
    """DEV_HOOKS entry: the demo tenant on a loopback HubSpot sandbox; the lines to print."""
    app = hubspot_sandbox.create_app()
    served = serve_in_thread(app)
    _served.append(served)
    state: hubspot_sandbox.HubSpotState = app.state.sandbox
    base = served.base_url
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            tenant = await session.get(Tenant, DEMO_TENANT_ID)
            if tenant is None:
                tenant = Tenant(id=DEMO_TENANT_ID, name="Demo Realty", provider="hubspot")
                session.add(tenant)
            tenant.status = "active"
            tenant.settings = {"base_url": base, "token_url": f"{base}/oauth/v3/token", "portal_id": state.portal_id}
        vault = CredentialVault.from_settings(settings, sessions)
        await vault.store(DEMO_TENANT_ID, "hubspot", {"auth": "oauth2", **asdict(state.tokens.credentials())},
                          actor=Actor(type="system", id="crm-sor-dev", purpose="demo tenant"))
    finally:
        await engine.dispose()
    await ensure_sweep_schedule(await connect_temporal(settings.temporal), settings.temporal.task_queue)
    agent = mint_token(settings, subject="demo-agent", role="agent", tenant_id=DEMO_TENANT_ID,
                       ttl=timedelta(hours=12))
    return demo_lines(settings, base, agent, state.tokens.issue_access())


def demo_lines(settings: Settings, sandbox_url: str, agent_token: str, sandbox_token: str) -> list[str]:
    api = f"http://{settings.api.host}:{settings.api.port}"
    record = (f"curl -s -X POST {api}/api/agent/conversations -H {shlex.quote('Authorization: Bearer ' + agent_token)}"
              f" -H 'Content-Type: application/json' -d {shlex.quote(json.dumps(conversation_example()))}")
    crm = f"curl -s -H {shlex.quote('Authorization: Bearer ' + sandbox_token)}"
    ui = f"http://localhost:{settings.temporal.ui_port}/namespaces/{settings.temporal.namespace}/workflows"
    return [
        f"demo tenant  {DEMO_TENANT_ID} -> HubSpot sandbox {sandbox_url}",
        "record a conversation (agent JWT valid 12 h):",
        f"  {record}",
        f"watch it      {ui}?query=CrmTenant%3D%22{DEMO_TENANT_ID}%22",
        f"see the CRM   {crm} '{sandbox_url}/crm/v3/objects/contacts?properties=firstname,lastname,email'",
        f"              {crm} '{sandbox_url}/crm/v3/objects/notes?properties=hs_note_body'",
        f"              (that token lasts 30 min; a new one: curl -s -X POST {sandbox_url}/__sandbox__/credentials)",
        f"its status    curl -s -H 'Authorization: Bearer {agent_token}' {api}/api/agent/records/conversations/<id>",
        f"the console   {api}/console/ (sign in with the token of: crm-sor token --role operator)",
    ]
