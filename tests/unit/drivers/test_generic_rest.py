"""Generic REST specifics: every pagination style and auth type against the configurable sandbox, config
validation listing every problem, safe templates, error rules, OpenAPI introspection."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pydantic
import pytest

from drivers import errors
from drivers.auth import GrantTokenSource, TokenSet
from drivers.base import CrmObject
from drivers.generic_rest import GenericRestDriver
from drivers.generic_rest_config import GenericRestForm
from sandboxes.generic_rest import RestState, create_app
from tests.unit.drivers.generic_rest_configs import flat_config, jsonapi_config

PAGINATIONS: dict[str, dict[str, Any]] = {
    "offset": {"type": "offset"},
    "page": {"type": "page", "page_param": "page", "limit_param": "per_page", "start": 1},
    "cursor": {"type": "cursor", "cursor_param": "cursor", "cursor_path": "", "limit_param": "limit"},
    "link": {"type": "link"},
}


@asynccontextmanager
async def connected(body: dict[str, Any], state: RestState) -> AsyncIterator[GenericRestDriver]:
    app = create_app(state)
    form = GenericRestForm.model_validate(body)
    secret, config = form.secret(), form.settings()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport) as token_http, \
            httpx.AsyncClient(base_url=form.base_url, transport=transport) as client:
        async def grant() -> TokenSet:
            return await GenericRestDriver.grant_token(token_http, secret, config, None)

        source = GrantTokenSource(grant)
        client.auth = GenericRestDriver.build_auth(secret, config, lambda: source)
        yield GenericRestDriver(client, config)


def fresh() -> RestState:
    state: RestState = create_app().state.sandbox
    return state


@pytest.mark.parametrize("style", sorted(PAGINATIONS))
async def test_every_pagination_style_reads_all_pages(style: str) -> None:
    state = fresh()
    body = flat_config(state)
    listing = body["objects"]["deal"]["verbs"]["list_recent"]
    listing["pagination"] = PAGINATIONS[style] | {"page_size": 3}
    if style == "cursor":  # flat answers carry the cursor in a header; read it from a JSON:API body instead
        body = jsonapi_config(state)
        listing = body["objects"]["deal"]["verbs"]["list_recent"]
        listing["pagination"] = {"type": "cursor", "cursor_param": "page[cursor]", "cursor_path": "meta.next_cursor",
                                 "limit_param": "page[size]", "page_size": 3}
    shape = "jsonapi" if style == "cursor" else "flat"
    seeded = [state.add(shape, "deals", {"name": f"Deal {n}"}) for n in range(8)]
    async with connected(body, state) as driver:
        records = await driver.list_recent(CrmObject.DEAL, datetime(2000, 1, 1, tzinfo=UTC), limit=50)
    assert [r.external_id for r in records] == seeded
    prefix = "/jsonapi" if shape == "jsonapi" else "/flat/v1"
    assert state.calls[f"GET {prefix}/{{objects}}"] == 3  # 3 + 3 + 2


AUTHS: dict[str, Any] = {
    "none": lambda s: {"type": "none"},
    "api_key_header": lambda s: {"type": "api_key", "key": s.creds.api_key, "name": "X-Api-Key"},
    "api_key_query": lambda s: {"type": "api_key", "key": s.creds.api_key, "placement": "query", "name": "api_key"},
    "bearer": lambda s: {"type": "bearer", "token": s.creds.static_token},
    "basic": lambda s: {"type": "basic", "username": s.creds.username, "password": s.creds.password},
    "oauth2": lambda s: {"type": "oauth2_client_credentials", "token_url": "https://api.flatcrm.example/flat/v1/oauth/"
                         "token", "client_id": s.creds.client_id, "client_secret": s.creds.client_secret},
    "oauth2_body": lambda s: {"type": "oauth2_client_credentials", "client_auth": "body",
                              "token_url": "https://api.flatcrm.example/flat/v1/oauth/token",
                              "client_id": s.creds.client_id, "client_secret": s.creds.client_secret},
}


@pytest.mark.parametrize("mode", sorted(AUTHS))
async def test_every_auth_type_is_accepted_and_a_revoked_one_refused(mode: str) -> None:
    state = fresh()
    state.auth["flat"] = "oauth2" if mode.startswith("oauth2") else mode
    body = flat_config(state) | {"auth": AUTHS[mode](state)}
    async with connected(body, state) as driver:
        assert (await driver.test_connection()).ok
        created = await driver.create_record(CrmObject.CUSTOMER, {"first_name": "Ann", "email": "a@x.example"}, "c1")
        assert (await driver.get_record(CrmObject.CUSTOMER, created.external_id)).fields["first_name"] == "Ann"
        if mode.startswith("oauth2"):
            state.creds.expire_all()  # an expired token is replaced through the grant (expires_in came as a string)
            assert (await driver.get_record(CrmObject.CUSTOMER, created.external_id)).external_id
            assert state.calls["POST /flat/v1/oauth/token"] == 2
        state.creds.revoke_refresh()
        check = await driver.test_connection()
    assert check.ok is (mode == "none")


def test_a_bad_config_lists_every_problem_at_once() -> None:
    body = flat_config(fresh())
    body["base_url"] = "ftp://nope"
    body["objects"]["deal"]["verbs"]["get"]["path"] = "/deals/{{ id "
    body["objects"]["lead"]["verbs"]["list_recent"].pop("since_param")
    body["objects"]["case"]["verbs"]["get"]["pagination"] = {"type": "scroll"}
    with pytest.raises(pydantic.ValidationError) as invalid:
        GenericRestForm.model_validate(body)
    text = str(invalid.value)
    assert "base_url" in text and "objects.case.verbs.get.pagination" in text
    body["base_url"] = "https://api.flatcrm.example"
    body["objects"]["case"]["verbs"]["get"].pop("pagination")
    with pytest.raises(pydantic.ValidationError) as invalid:
        GenericRestForm.model_validate(body)
    text = str(invalid.value)
    assert "objects.deal.verbs.get: template does not compile" in text
    assert "objects.lead.verbs.list_recent: since_param is required" in text
    assert fresh().creds.api_key not in text


async def test_templates_cannot_run_code_inject_headers_or_escape_the_path() -> None:
    state = fresh()
    body = flat_config(state)
    deal = body["objects"]["deal"]["verbs"]
    deal["search"]["query"] = {"q": "{{ query.__class__.__mro__[1].__subclasses__() }}"}
    deal["update"]["headers"] = {"X-Note": "{{ fields.description }}"}
    sent: list[httpx.Request] = []

    async def keep(request: httpx.Request) -> None:
        sent.append(request)

    async with connected(body, state) as driver:
        driver.client.event_hooks["request"] = [keep]
        with pytest.raises(errors.InvalidRequestError) as ssti:
            await driver.search_records(CrmObject.DEAL, "x")
        record = state.add("flat", "deals", {"name": "Deal"})
        with pytest.raises(errors.InvalidRequestError) as injected:
            await driver.update_record(CrmObject.DEAL, record, {"description": "ok\r\nX-Evil: 1"})
        with pytest.raises(errors.NotFoundError):
            await driver.get_record(CrmObject.DEAL, "../customers/1")
    assert ssti.value.provider_code == injected.value.provider_code == "template"
    assert "Evil" not in str(injected.value)
    assert state.calls["GET /flat/v1/{objects}"] == 0 and state.calls["PATCH /flat/v1/{objects}/{id}"] == 0
    assert [r.url.raw_path for r in sent] == [b"/flat/v1/deals/..%2Fcustomers%2F1"]  # one quoted segment


async def test_not_supported_verbs_and_error_rules() -> None:
    state = fresh()
    body = flat_config(state)
    body["objects"]["case"]["verbs"]["delete"] = {"path": "/cases/{{ id }}", "not_supported": True}
    body["errors"] = [*body["errors"], {"status": [200], "body_contains": "maintenance", "action": "retry"},
                      {"status": [400], "body_contains": "invalid_json", "action": "reauth"}]
    async with connected(body, state) as driver:
        with pytest.raises(errors.InvalidRequestError) as unsupported:
            await driver.delete_record(CrmObject.CASE, "1")
        assert unsupported.value.provider_code == "not_supported"
        state.knobs.limit_next, state.knobs.retry_after = 1, "42"
        with pytest.raises(errors.RateLimitedError) as limited:
            await driver.search_records(CrmObject.DEAL, "x")
        assert limited.value.retry_after is not None and limited.value.retry_after.total_seconds() == 42
        state.add("flat", "deals", {"name": "maintenance window"})
        with pytest.raises(errors.UnavailableError):  # a 200 whose body the tenant says means "try later"
            await driver.search_records(CrmObject.DEAL, "maintenance")


async def test_describe_schema_reads_the_openapi_document() -> None:
    state = fresh()
    async with connected(flat_config(state), state) as driver:
        fields = {f.name: f for f in await driver.describe_schema(CrmObject.LEAD)}
    assert {"first_name", "email", "status"} <= set(fields)
    assert fields["id"].read_only and fields["first_name"].required and not fields["email"].required
    body = copy.deepcopy(flat_config(state))
    body.pop("openapi_url")
    async with connected(body, state) as driver:
        with pytest.raises(errors.InvalidRequestError):
            await driver.describe_schema(CrmObject.LEAD)
