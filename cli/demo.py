"""`crm-sor dev` set-up hooks: every provider sandbox, the demo tenant, and a curl that records a conversation.

`setup_sandboxes` serves every sandbox on its stable port with its state kept in `.crm-sor/sandboxes/`
(cli/dev_sandboxes.py). `setup_demo` then creates the demo tenant once (a fixed id), connects it to the HubSpot
sandbox exactly as `crm-sor tenant connect TENANT --sandbox hubspot` would, registers the sweep Schedule, and
prints the commands a newcomer needs: the curl (with an agent JWT minted now), where to watch the run in the
Temporal UI, and how to see the contact and the transcript note appear in the sandbox.
"""

from __future__ import annotations

import json
import shlex
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when `crm-sor dev` runs the hooks: the CLI's start-up stays light
    from settings import Settings

DEMO_TENANT_ID = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")
_served: list[Any] = []  # the sandboxes live as long as the dev process


async def setup_sandboxes(settings: Settings) -> list[str]:
    """DEV_HOOKS entry: every sandbox on `CRM_DEV__SANDBOX_PORT_BASE` + n, state persisted; the lines to print."""
    from cli.dev_sandboxes import start_all
    from settings import STATE_DIR

    index, served = start_all(settings.dev.sandbox_port_base)
    _served.extend(served)
    width = max(len(slug) for slug in index)
    lines = [f"sandboxes    every provider's sandbox CRM; state kept in {STATE_DIR / 'sandboxes'}/ across restarts, "
             "tokens never expire:"]
    lines += [f"  {slug:<{width}}  {entry['base_url']}" for slug, entry in sorted(index.items())]
    lines.append("connect a tenant to one: .venv/bin/crm-sor tenant connect TENANT_ID --sandbox [SLUG]")
    return lines


def conversation_example() -> dict[str, Any]:
    return {"customer": {"name": "Ada Lovelace", "phone": "+1 415 555 0134", "email": "ada@example.com"},
            "channel": "voice",
            "messages": [{"turn_id": "1", "role": "customer", "text": "Hi, I'd like to book a viewing of the loft."},
                         {"turn_id": "2", "role": "agent", "text": "Of course! Does Thursday at 5pm work?"},
                         {"turn_id": "3", "role": "customer", "text": "Thursday works, thanks."}]}


async def setup_demo(settings: Settings) -> list[str]:
    """DEV_HOOKS entry: the demo tenant connected to the HubSpot sandbox; the lines to print."""
    from datetime import timedelta

    from api.auth import mint_token
    from api.lifecycle import ensure_sweep_schedule
    from api.temporal import connect_temporal
    from cli.dev_sandboxes import read_index
    from cli.tenant_setup import connect_to_sandbox
    from store.models import Tenant
    from store.session import create_engine, session_factory

    entry = read_index()["hubspot"]
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            if await session.get(Tenant, DEMO_TENANT_ID) is None:
                session.add(Tenant(id=DEMO_TENANT_ID, name="Demo Realty", provider="hubspot", status="pending",
                                   settings={}))
        await connect_to_sandbox(settings, sessions, DEMO_TENANT_ID, "hubspot", entry)
    finally:
        await engine.dispose()
    await ensure_sweep_schedule(await connect_temporal(settings.temporal), settings.temporal.task_queue)
    agent = mint_token(settings, subject="demo-agent", role="agent", tenant_id=DEMO_TENANT_ID,
                       ttl=timedelta(hours=12))
    return demo_lines(settings, entry["base_url"], agent, entry["secret"]["access_token"])


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
        f"its status    curl -s -H 'Authorization: Bearer {agent_token}' {api}/api/agent/records/conversations/<id>",
        f"the console   {api}/console/ (sign in with the token of: crm-sor token --role operator)",
    ]
