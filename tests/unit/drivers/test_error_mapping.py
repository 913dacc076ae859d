"""Every recorded provider error body maps to the right DriverError, keeping only the provider's code."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers import errors
from drivers.auth import BearerAuth
from drivers.base import CrmObject
from drivers.registry import get_driver_class

FIXTURES = Path(__file__).parents[2] / "fixtures"
CASES = sorted((p.parent.name, p) for slug in ("hubspot", "salesforce") for p in (FIXTURES / slug).glob("*.json"))


def _replay(fixture: dict[str, Any]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        body = fixture["body"]
        if isinstance(body, str):
            return httpx.Response(fixture["status"], headers=fixture["headers"], text=body)
        return httpx.Response(fixture["status"], headers=fixture["headers"], json=body)

    return httpx.MockTransport(answer)


def test_there_are_fixtures_for_both_providers() -> None:
    assert {slug for slug, _ in CASES} == {"hubspot", "salesforce"} and len(CASES) >= 16


@pytest.mark.parametrize(("slug", "path"), CASES, ids=[f"{s}-{p.stem}" for s, p in CASES])
async def test_error_body_maps_to_taxonomy(slug: str, path: Path) -> None:
    fixture = json.loads(path.read_text())
    expect = fixture["expect"]
    cls = get_driver_class(slug)
    config = {"instance_url": "https://acme.my.salesforce.com"}
    async with httpx.AsyncClient(
        base_url=cls.api_base_url(config), transport=_replay(fixture), auth=BearerAuth("static")
    ) as client:
        with pytest.raises(errors.DriverError) as raised:
            await cls(client, config).get_record(CrmObject.DEAL, "123")
    exc = raised.value
    assert type(exc).__name__ == expect["error"]
    assert exc.provider == slug and exc.status_code == fixture["status"]
    assert exc.provider_code == expect["provider_code"]
    seconds = expect["retry_after_seconds"]
    assert exc.retry_after == (timedelta(seconds=seconds) if seconds is not None else None)
    # Validation failures name the fields (names are not customer content), parsed from the body's structure.
    assert exc.fields == expect.get("fields", {})
    # Provider messages echo customer values and record ids; none may reach our message (field names aside).
    rendered = str(exc)
    for name in exc.fields:
        rendered = rendered.replace(name, "")
    for leaked in ("lee@example", "2926551", "003SB", "favourite_colour", "LastName", "expired 5 minute"):
        assert leaked not in rendered


@pytest.mark.parametrize("slug", ["hubspot", "salesforce"])
async def test_a_success_without_json_is_unavailable(slug: str) -> None:
    cls = get_driver_class(slug)
    config = {"instance_url": "https://acme.my.salesforce.com"}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>maintenance</html>"))
    async with httpx.AsyncClient(base_url=cls.api_base_url(config), transport=transport) as client:
        with pytest.raises(errors.UnavailableError) as raised:
            await cls(client, config).get_record(CrmObject.DEAL, "123")
    assert raised.value.retryable and raised.value.status_code == 200
