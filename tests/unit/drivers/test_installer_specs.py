"""The installer's field creation on the wire, checked against the provider's own spec where one exists
(Zoho's fields.json): the driver's request body and the sandbox's answer."""

from __future__ import annotations

import json
from typing import Any

import httpx

from drivers.base import CrmObject
from drivers.installer import install
from drivers.zoho import ZohoDriver
from sandboxes.common import TokenIssuer
from sandboxes.zoho import app as zoho_sandbox
from sandboxes.zoho.state import ZohoState
from tests.unit.drivers.test_zoho import _validator

FIELDS = "urn:zoho:fields.json#/components"


class Recorder(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.posts = inner, list[tuple[Any, int, Any]]()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        if request.method == "POST":
            self.posts.append((json.loads(request.content), response.status_code, json.loads(body)))
        return httpx.Response(response.status_code, headers=response.headers, content=body)


def _problems(schema_ref: str, body: Any) -> list[str]:
    validator = _validator("fields.json", {"$ref": f"{FIELDS}/{schema_ref}"})
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]


async def test_zoho_field_creation_matches_fields_json() -> None:
    app = zoho_sandbox.create_app(ZohoState(tokens=TokenIssuer("zoho", 3600), installed=False))
    token = app.state.sandbox.tokens.credentials().access_token
    recorder = Recorder(httpx.ASGITransport(app=app))
    async with httpx.AsyncClient(transport=recorder, base_url="https://www.zohoapis.com",
                                 headers={"Authorization": f"Zoho-oauthtoken {token}"}) as client:
        report = await install(ZohoDriver(client, {}))
        assert report.state == "complete"
        assert {(f.object, f.field) for f in report.fields if f.outcome == "created"} >= {
            (CrmObject.LEAD.value, "Crm_Sor_Key"), (CrmObject.CUSTOMER.value, "Crm_Sor_Fingerprint")}
        assert recorder.posts
        for request, status, answer in recorder.posts:
            assert status == 201
            assert _problems("schemas/wrapper", request) == []
            assert _problems("schemas/SuccessWrapper", answer) == []
        again = await client.post("/crm/v8/settings/fields", params={"module": "Leads"},
                                  json={"fields": [{"field_label": "Crm Sor Key", "data_type": "text"}]})
        assert again.status_code == 400
        assert _problems("schemas/InvalidValueErrorWrapper", again.json()) == []
