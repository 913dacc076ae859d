"""Zoho specifics: data centres, the accounts server's throttle, the batch upsert, and the sandbox's answers
checked against Zoho's own OpenAPI v8 files."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from drivers import errors
from drivers.auth import TokenSet
from drivers.base import CrmObject, UpsertItem
from drivers.zoho import ZohoDriver
from sandboxes.zoho import app as zoho_sandbox
from tests.support.specs import provider_spec
from tests.unit.drivers.harness import zoho as zoho_harness

# Where the spec files point at each other (GitHub): resolved to the local copies, never the network.
SPEC_BASE = "https://raw.githubusercontent.com/Zohocorp-Pvt-Ltd/crm-oas/refs/heads/main/v8.0/"


def test_hosts_follow_the_data_centre() -> None:
    eu = ZohoDriver.oauth_callback_settings({"location": "eu", "accounts-server": "https://accounts.zoho.eu"})
    assert eu == {"accounts_server": "https://accounts.zoho.eu", "location": "eu"}
    assert ZohoDriver.oauth_token_url(eu) == "https://accounts.zoho.eu/oauth/v2/token"
    assert ZohoDriver.api_base_url(eu) == "https://www.zohoapis.eu"
    sa = ZohoDriver.settings_from_tokens(TokenSet("a", "r", 3600, instance_url="https://www.zohoapis.sa"))
    assert ZohoDriver.api_base_url(sa) == "https://www.zohoapis.sa"
    assert ZohoDriver.api_base_url({"api_domain": "https://www.zohoapis.ae"}) == "https://www.zohoapis.ae"
    uae = ZohoDriver.oauth_callback_settings({"location": "ae", "accounts-server": "https://accounts.zoho.ae"})
    assert ZohoDriver.api_base_url(uae) == "https://www.zohoapis.ae"
    assert ZohoDriver.oauth_token_url({}) == "https://accounts.zoho.com/oauth/v2/token"


@pytest.mark.parametrize("server", ["https://evil.example", "https://accounts.zoho.eu.evil.example", "ftp://x"])
def test_an_untrusted_accounts_server_is_refused(server: str) -> None:
    # The redirect's query is attacker-controlled: our client secret and the code go only to Zoho's hosts.
    with pytest.raises(errors.InvalidRequestError):
        ZohoDriver.oauth_callback_settings({"accounts-server": server, "location": "eu"})
    with pytest.raises(errors.InvalidRequestError):
        ZohoDriver.settings_from_tokens(TokenSet("a", "r", 3600, instance_url=server))


async def test_a_token_of_another_data_centre_is_a_clear_reconnect_reason() -> None:
    async with zoho_harness() as h:
        deal = h.seed(CrmObject.DEAL, h.create_fields(CrmObject.DEAL, 1))
        h.driver.client.base_url = httpx.URL("https://www.zohoapis.eu")  # the org lives in the US DC
        with pytest.raises(errors.AuthError) as refused:
            await h.driver.get_record(CrmObject.DEAL, deal)
        assert refused.value.provider_code == "INVALID_TOKEN" and h.token_calls == 1  # one refresh, then out
        assert "www.zohoapis.eu" in str(refused.value) and "reconnect" in str(refused.value)
        check = await h.driver.test_connection()
        assert not check.ok and check.reason and "another data centre" in check.reason


async def test_the_accounts_throttle_is_a_rate_limit_not_a_revoked_grant() -> None:
    async with zoho_harness() as h:
        deal = h.seed(CrmObject.DEAL, h.create_fields(CrmObject.DEAL, 1))
        for _ in range(10):  # Zoho's limit: 10 access tokens per refresh token per 10 minutes
            h.state.tokens.expire_all()
            await h.driver.get_record(CrmObject.DEAL, deal)
        h.state.tokens.expire_all()
        with pytest.raises(errors.RateLimitedError) as throttled:
            await h.driver.get_record(CrmObject.DEAL, deal)
        assert throttled.value.retryable and throttled.value.retry_after == timedelta(minutes=10)
        assert throttled.value.provider_code == "Access Denied" and h.token_calls == 11


async def test_refresh_never_rotates_the_refresh_token() -> None:
    async with zoho_harness() as h:
        deal = h.seed(CrmObject.DEAL, h.create_fields(CrmObject.DEAL, 1))
        before = h.secret["refresh_token"]
        h.state.tokens.expire_all()
        await h.driver.get_record(CrmObject.DEAL, deal)
        assert h.secret["refresh_token"] == before and h.token_calls == 1


async def test_idempotent_create_does_not_depend_on_the_lagging_search_index() -> None:
    async with zoho_harness() as h:
        h.state.index_delay_seconds = 3600.0  # nothing new shows up in search for an hour
        fields = {"First_Name": "Nadia", "Last_Name": "Aziz", "Email": "nadia@example.com"}
        h.state.knobs.fail_after_next, h.state.knobs.fail_after_route = 1, h.create_route
        with pytest.raises(errors.UnavailableError):
            await h.driver.create_record(CrmObject.CUSTOMER, fields, "conv-3:customer")
        retried = await h.driver.create_record(CrmObject.CUSTOMER, fields, "conv-3:customer")
        assert not retried.created and h.records_with_key(CrmObject.CUSTOMER, "conv-3:customer") == 1
        assert await h.driver.lookup_customer(email="nadia@example.com") is None  # search has not caught up
        assert (await h.driver.lookup_customer(external_id=retried.external_id)) is not None


async def test_upsert_many_is_one_call_per_kind_with_per_item_outcomes() -> None:
    async with zoho_harness() as h:
        existing = h.seed(CrmObject.LEAD, {"Last_Name": "Old", "Company": "Acme"})
        items = [UpsertItem("b-1", {"Last_Name": "Park", "Company": "Acme"}),
                 UpsertItem("b-2", {"Last_Name": "Kim"}),  # Company is mandatory for Leads
                 UpsertItem("b-3", {"Description": "called back"}, external_id=existing),
                 UpsertItem("b-4", {"Last_Name": "Lee", "Company": "Beta"})]
        before = sum(h.state.calls.values())
        outcomes = await h.driver.upsert_many(CrmObject.LEAD, items)
        assert sum(h.state.calls.values()) - before == 3  # one bulk update, one COQL read by key, one upsert
        assert [o.ok for o in outcomes] == [True, False, True, True]
        assert isinstance(outcomes[1].error, errors.InvalidRequestError)
        assert outcomes[1].error.provider_code == "MANDATORY_NOT_FOUND"
        assert outcomes[0].created and outcomes[2].external_id == existing and not outcomes[2].created
        upserts = h.state.calls["POST /crm/v8/{module}/upsert"]
        again = await h.driver.upsert_many(CrmObject.LEAD, [items[0], UpsertItem("b-4", {"Last_Name": "Other"})])
        assert again[0].external_id == outcomes[0].external_id and not again[0].created
        assert isinstance(again[1].error, errors.ConflictError)  # same key, other fields: refused, not overwritten
        assert h.state.calls["POST /crm/v8/{module}/upsert"] == upserts  # nothing left to write
        assert h.records_with_key(CrmObject.LEAD, "b-1") == 1
        assert h.state.find("Leads", outcomes[3].external_id)["Last_Name"] == "Lee"
        with pytest.raises(errors.InvalidRequestError):
            await h.driver.upsert_many(CrmObject.LEAD, [items[0]] * 101)


# ----- the sandbox against Zoho's OpenAPI v8 -------------------------------------------------------------


def _validator(spec: str, schema: dict[str, Any]) -> Draft202012Validator:
    folder = provider_spec("zoho", "crm-oas-v8.0")
    documents = {path.name: json.loads(path.read_text()) for path in folder.glob("*.json")}
    if spec == "fields.json":
        # fields.json lists all 75 keys of a field as required (generated, and no real answer carries them all):
        # every key the sandbox sends is still checked against its declared type.
        documents[spec]["components"]["schemas"]["fields"].pop("required", None)
    registry = Registry().with_resources([
        *((f"{SPEC_BASE}{name}", Resource.opaque(doc)) for name, doc in documents.items()),
        *((f"urn:zoho:{name}", Resource.opaque(doc)) for name, doc in documents.items()),
    ])
    return Draft202012Validator(schema, registry=registry)  # its $refs are absolute (urn:zoho:…) already


def _response_schema(spec: str, path: str, method: str) -> dict[str, Any]:
    document = json.loads((provider_spec("zoho", "crm-oas-v8.0") / spec).read_text())
    response = document["paths"][path][method]["responses"]["200"]
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    # Draft 2020-12 has no `nullable`; re-root every local $ref in the document so it resolves there.
    text = json.dumps(schema).replace('"#/components', f'"urn:zoho:{spec}#/components')
    resolved: dict[str, Any] = json.loads(text)
    return resolved


def _check(spec: str, path: str, method: str, body: Any, *, error: bool = False) -> None:
    """Validate `body` against the operation's answer: its success branch, or API_Exception when `error`.

    Zoho's top-level `oneOf` pairs two schemas without required keys, so any object matches both and `oneOf`
    can never hold; choosing the branch the answer claims to be keeps every property check.
    """
    schema = _response_schema(spec, path, method)
    branches = schema.get("oneOf", [schema])
    chosen = [b for b in branches if ("API_Exception" in b.get("$ref", "")) == error]
    if len(chosen) > 1:  # a record answer, not the file-upload wrapper that shares the operation
        chosen = [b for b in chosen if b.get("$ref", "").endswith("/Response_Wrapper")]
    assert len(chosen) == 1, chosen
    validator = _validator(spec, chosen[0])
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert problems == [], problems


async def test_sandbox_answers_match_the_zoho_openapi_files() -> None:
    app = zoho_sandbox.create_app()
    st: Any = app.state.sandbox
    creds = st.tokens.credentials()
    headers = {"Authorization": f"Zoho-oauthtoken {creds.access_token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://www.zohoapis.com",
                                 headers=headers) as api:
        for n in range(3):
            st.add("Leads", {"Last_Name": f"Lee{n}", "Company": "Acme", "Phone": "+1 415 555 0100"})
        created = (await api.post("/crm/v8/Leads/upsert", json={
            "data": [{"Last_Name": "Park", "Company": "Acme", "Crm_Sor_Key": "k1"}, {"Last_Name": "Kim"}],
            "duplicate_check_fields": ["Crm_Sor_Key"]}))
        assert created.status_code == 207
        _check("record.json", "/crm/v8/{module_api_name}/upsert", "post", created.json())
        record_id = created.json()["data"][0]["details"]["id"]
        st.knobs.page_size_cap = 2
        listed = await api.get("/crm/v8/Leads", params={"fields": "Last_Name,Phone", "sort_by": "Modified_Time"})
        assert listed.json()["info"]["more_records"] and listed.json()["info"]["next_page_token"]
        _check("record.json", "/crm/v8/{module_api_name}", "get", listed.json())
        one = await api.get(f"/crm/v8/Leads/{record_id}")
        _check("record.json", "/crm/v8/{module_api_name}/{id}", "get", one.json())
        updated = await api.put(f"/crm/v8/Leads/{record_id}", json={"data": [{"Phone": "+44 20 7946 0000"}]})
        _check("record.json", "/crm/v8/{module_api_name}/{id}", "put", updated.json())
        bad = await api.put(f"/crm/v8/Leads/{record_id}", json={"data": [{"No_Such": "x"}]})
        assert bad.status_code == 400
        _check("record.json", "/crm/v8/{module_api_name}/{id}", "put", bad.json(), error=True)
        found = await api.get("/crm/v8/Leads/search", params={"phone": "4155550100"})
        _check("module_search.json", "/crm/v8/{module}/search", "get", found.json())
        keyed = await api.post("/crm/v8/coql", json={
            "select_query": "select id, Crm_Sor_Key from Leads where Crm_Sor_Key in ('k1', 'k2') limit 200"})
        assert [r["Crm_Sor_Key"] for r in keyed.json()["data"]] == ["k1"]
        _check("coql.json", "/crm/v8/coql", "post", keyed.json())
        deleted = await api.delete(f"/crm/v8/Leads/{record_id}")
        _check("record.json", "/crm/v8/{module_api_name}/{id}", "delete", deleted.json())
        missing = await api.get("/crm/v8/Leads", params={"sort_by": "Modified_Time"})
        assert missing.status_code == 400
        _check("record.json", "/crm/v8/{module_api_name}", "get", missing.json(), error=True)
        fields = await api.get("/crm/v8/settings/fields", params={"module": "Leads"})
        _check("fields.json", "/crm/v8/settings/fields", "get", fields.json())
        me = await api.get("/crm/v8/users", params={"type": "CurrentUser"})
        _check("users.json", "/crm/v8/users", "get", me.json())
        expired = await api.get(f"/crm/v8/Leads/{record_id}", headers={"Authorization": "Zoho-oauthtoken nope"})
        assert expired.status_code == 401
        _check("record.json", "/crm/v8/{module_api_name}/{id}", "get", expired.json(), error=True)
