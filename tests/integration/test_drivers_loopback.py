"""Drivers against sandboxes served by uvicorn on a loopback port, steered over HTTP like the dev stack.

No external service is needed (hence no `integration` marker): this checks the real-socket path,
the `/__sandbox__` control routes and client-side timeouts, which the in-process ASGI tests cannot.
"""

from __future__ import annotations

import httpx
import pytest

from drivers import errors
from drivers.auth import OAuth2Auth, OAuthTokenSource
from drivers.base import CrmObject
from drivers.registry import get_driver_class
from sandboxes.serve import create_sandbox, serve_in_task, serve_in_thread

TOKEN_PATHS = {"hubspot": "/oauth/v3/token", "salesforce": "/services/oauth2/token"}
DEAL = {
    "hubspot": {"dealname": "Loopback", "amount": "10"},
    "salesforce": {"Name": "Loopback", "StageName": "Prospecting", "CloseDate": "2026-12-31"},
}


@pytest.mark.parametrize("slug", sorted(TOKEN_PATHS))
async def test_driver_over_loopback(slug: str) -> None:
    async with serve_in_task(create_sandbox(slug)) as base_url, httpx.AsyncClient(base_url=base_url) as control:
        creds = (await control.post("/__sandbox__/credentials")).json()
        cls = get_driver_class(slug)
        config = {"instance_url": base_url, "base_url": base_url}
        source = OAuthTokenSource(
            token_url=f"{base_url}{TOKEN_PATHS[slug]}",
            client_id=creds["client_id"],
            client_secret=creds["client_secret"],
            refresh_token=creds["refresh_token"],
            access_token=creds["access_token"],
            provider=slug,
        )
        async with httpx.AsyncClient(
            base_url=cls.api_base_url(config), auth=OAuth2Auth(source), timeout=httpx.Timeout(5.0, read=0.2)
        ) as client:
            driver = cls(client, config)
            created = await driver.create_record(CrmObject.DEAL, DEAL[slug], "loopback-1")
            assert (await driver.get_record(CrmObject.DEAL, created.external_id)).external_id == created.external_id

            assert (await control.post("/__sandbox__/expire-tokens")).status_code == 204
            assert (await driver.test_connection()).ok and source.refresh_count == 1

            await control.post("/__sandbox__/knobs", json={"fail_next": 1, "fail_status": 502})
            with pytest.raises(errors.UnavailableError):
                await driver.get_record(CrmObject.DEAL, created.external_id)

            # A slow provider meets the client's read timeout: unavailable, retryable, no customer data.
            await control.post("/__sandbox__/knobs", json={"latency_seconds": 1.0})
            with pytest.raises(errors.UnavailableError) as slow:
                await driver.get_record(CrmObject.DEAL, created.external_id)
            assert "ReadTimeout" in str(slow.value)
            await control.post("/__sandbox__/knobs", json={"latency_seconds": 0.0})

        calls = (await control.get("/__sandbox__/calls")).json()
        assert calls[f"POST {TOKEN_PATHS[slug]}"] == 1
        assert (await control.post("/__sandbox__/knobs", json={"no_such_knob": 1})).status_code == 400


def test_serve_in_thread_for_the_dev_stack() -> None:
    served = serve_in_thread(create_sandbox("hubspot"))
    try:
        assert served.base_url.startswith("http://127.0.0.1:")
        response = httpx.get(f"{served.base_url}/crm/v3/objects/contacts")
        assert response.status_code == 401 and response.json()["category"] == "INVALID_AUTHENTICATION"
    finally:
        served.stop()
    assert not served.thread.is_alive()
