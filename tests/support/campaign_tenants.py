"""The campaign's tenants and its operator: created with `crm-sor tenant create`, connected through the API's
operator routes (HubSpot by OAuth through the sandbox's consent page, Tekmetric by form), credentials in the vault."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import timedelta

import httpx

from api.auth import mint_token
from sandboxes import tekmetric as tekmetric_sandbox
from settings import Settings
from tests.support.campaign_agents import answered
from tests.support.campaign_stack import Stack


def operator_headers(settings: Settings, tenant: uuid.UUID) -> dict[str, str]:
    token = mint_token(settings, subject="campaign-operator", role="operator", tenant_id=tenant, ttl=timedelta(hours=3))
    return {"Authorization": f"Bearer {token}"}


def agent_headers(settings: Settings, slug: str, tenant: uuid.UUID) -> dict[str, str]:
    token = mint_token(settings, subject=f"campaign-agent-{slug}", role="agent", tenant_id=tenant,
                       ttl=timedelta(hours=3))
    return {"Authorization": f"Bearer {token}"}


async def connect_hubspot(stack: Stack, settings: Settings, tenant: uuid.UUID, patience: float = 180) -> None:
    """The operator's OAuth connect through the API: start, the provider's consent page, our callback."""
    deadline = time.monotonic() + patience
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, follow_redirects=True) as http:
        while True:
            start = await answered(http, "POST", f"/api/operator/tenants/{tenant}/connect/oauth/start", {},
                                   headers=operator_headers(settings, tenant), patience=patience)
            with contextlib.suppress(httpx.TransportError):
                if start.response is not None and start.response.status_code == 200:
                    done = await http.get(start.response.json()["authorize_url"])
                    if done.status_code == 200 and done.json()["status"] == "active":
                        return
            if time.monotonic() > deadline:
                raise RuntimeError("the HubSpot reconnect did not succeed")
            await asyncio.sleep(2)


async def connect_tenants(stack: Stack, settings: Settings) -> dict[str, uuid.UUID]:
    """Create the two tenants (`crm-sor tenant create`) and connect them through the API's operator routes."""
    hs, tk = stack.sandboxes["hubspot"], stack.sandboxes["tekmetric"]
    configs = {"hubspot": {"base_url": hs.url, "token_url": f"{hs.url}/oauth/v3/token",
                           "authorize_url": f"{hs.url}/oauth/authorize", "portal_id": hs.state.portal_id},
               "tekmetric": {"base_url": tk.url, "token_url": tk.url + tekmetric_sandbox.TOKEN_PATH}}
    tenants = {}
    for slug, config in configs.items():
        out = await asyncio.to_thread(stack.cli, "tenant", "create", "--name", f"Campaign {slug}", "--provider",
                                      slug, "--settings", json.dumps(config))
        tenants[slug] = uuid.UUID(out.split()[1])  # "tenant <id> created (…)"
    await connect_hubspot(stack, settings, tenants["hubspot"])
    form = {"client_id": tk.state.tokens.client_id, "client_secret": tk.state.tokens.client_secret,
            "shop_id": tk.state.shop_id, "environment": "sandbox"}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        answer = await http.post(f"/api/operator/tenants/{tenants['tekmetric']}/connect/credentials", json=form,
                                 headers=operator_headers(settings, tenants["tekmetric"]))
    if answer.status_code != 200 or answer.json()["status"] != "active":
        raise RuntimeError(f"the Tekmetric connect failed: {answer.status_code}")
    return tenants
