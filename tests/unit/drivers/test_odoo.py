"""Odoo driver specifics: the three protocols, recorded error shapes → taxonomy, static keys, batch load."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pydantic
import pytest

from drivers import errors
from drivers.base import CrmObject, UpsertItem
from drivers.odoo import OdooCredentials, OdooDriver
from sandboxes.odoo.app import create_app
from sandboxes.odoo.state import ApiKeys, OdooState
from tests.support.specs import provider_spec

URL = "https://acme.odoo.example"

# Recorded exception classes and what they must become (the recorded sessions hold one answer for each).
EXPECTED = {
    "odoo.exceptions.AccessDenied": errors.AuthError,
    "odoo.exceptions.AccessError": errors.AuthError,
    "odoo.exceptions.MissingError": errors.NotFoundError,
    "odoo.exceptions.ValidationError": errors.InvalidRequestError,
    "odoo.exceptions.UserError": errors.InvalidRequestError,
    "builtins.ValueError": errors.InvalidRequestError,
    "psycopg2.OperationalError": errors.UnavailableError,
    "odoo.http.SessionExpiredException": errors.AuthError,
}


@asynccontextmanager
async def connected(state: OdooState | None = None, *, protocol: str = "auto", key: str | None = None,
                    transport: httpx.AsyncBaseTransport | None = None) -> AsyncIterator[tuple[OdooDriver, OdooState]]:
    app = create_app(state)
    state = app.state.sandbox
    secret = {"auth": "odoo", "login": state.login, "api_key": key or state.tokens.credentials().access_token}
    config = {"instance_url": URL, "database": state.database, "odoo_protocol": protocol}
    auth = OdooDriver.build_auth(secret, config, lambda: None)
    async with httpx.AsyncClient(base_url=URL, auth=auth, transport=transport or httpx.ASGITransport(app=app)) as c:
        yield OdooDriver(c, config), state


def recorded_errors() -> list[dict[str, Any]]:
    """Every JSON-RPC error answer in the recorded sessions."""
    found: list[dict[str, Any]] = []
    for name in ("recorded-odoo17-rpc-session-1.json", "recorded-odoo17-rpc-session-2.json",
                 "recorded-odoo17-rpc-session-3-load-upsert.json"):
        data = json.loads(provider_spec("odoo", name).read_text())
        answers = [e["response"] for e in data["jsonrpc"]] if "jsonrpc" in data else [
            v.get("body", v) for k, v in data.items() if k != "_meta" and isinstance(v, dict)]
        found += [a for a in answers if isinstance(a, dict) and "error" in a]
    return found


async def test_every_recorded_jsonrpc_error_maps_to_the_taxonomy_without_its_message() -> None:
    answers = recorded_errors()
    assert {a["error"]["data"]["name"] for a in answers} == set(EXPECTED)
    for answer in answers:
        def reply(request: httpx.Request, answer: dict[str, Any] = answer) -> httpx.Response:
            return httpx.Response(200, json=answer)  # JSON-RPC errors arrive with HTTP 200

        async with connected(protocol="jsonrpc", transport=httpx.MockTransport(reply)) as (driver, _):
            driver._login().uid = 2  # the recorded answer stands for the call, not for authenticate
            with pytest.raises(errors.DriverError) as raised:
                await driver.get_record(CrmObject.CUSTOMER, "7")
        name = answer["error"]["data"]["name"]
        assert type(raised.value) is EXPECTED[name], name
        assert raised.value.provider_code == name.rsplit(".", 1)[-1]
        message = answer["error"]["data"]["message"]
        assert message.split("\n")[0] not in str(raised.value) or len(message) < 12


@pytest.mark.parametrize("protocol", ["jsonrpc", "xmlrpc"])
async def test_rpc_errors_from_the_server_map_to_the_taxonomy(protocol: str) -> None:
    async with connected(protocol=protocol) as (driver, state):
        created = await driver.create_record(CrmObject.CUSTOMER, {"name": "Ada", "email": "ada@example.com"}, "k1")
        with pytest.raises(errors.InvalidRequestError) as bad:  # builtins.ValueError / Fault 1
            await driver.update_record(CrmObject.CUSTOMER, created.external_id, {"nope": "ada@example.com"})
        assert "ada@" not in str(bad.value) and bad.value.status_code == 400
        with pytest.raises(errors.NotFoundError):  # MissingError / (XML-RPC: Fault 1 is not distinguishable)
            await driver.delete_record(CrmObject.CUSTOMER, "999999", hard=True)
        state.denied_models.add("crm.lead")
        with pytest.raises(errors.AuthError) as denied:  # AccessError / Fault 4
            await driver.list_recent(CrmObject.LEAD, datetime(2000, 1, 1, tzinfo=UTC))
        assert denied.value.provider_code in ("AccessError", "Fault4:AccessError")
        state.tokens.expire_all()  # the key is revoked in Odoo
        with pytest.raises(errors.AuthError) as revoked:  # AccessDenied / Fault 3
            await driver.get_record(CrmObject.CUSTOMER, created.external_id)
        assert not revoked.value.retryable
        assert revoked.value.provider_code in ("AccessDenied", "Fault3:AccessDenied")
    assert sum(n for call, n in state.calls.items() if call.endswith("common.authenticate")) == 1


async def test_a_wrong_key_is_refused_at_authenticate_and_reported_by_test_connection() -> None:
    async with connected(key="0" * 40) as (driver, state):
        check = await driver.test_connection()
    assert not check.ok and check.reason is not None and "auth_error" in check.reason and "0000" not in check.reason
    assert state.calls["POST /jsonrpc common.authenticate"] == 1


async def test_odoo_19_is_driven_over_json2_with_a_bearer_key() -> None:
    app_state = OdooState(tokens=ApiKeys("odoo", None), version=19)
    async with connected(app_state) as (driver, state):
        assert (await driver.test_connection()).ok
        created = await driver.create_record(CrmObject.DEAL, {"name": "Loft", "expected_revenue": 900.0}, "d1")
        again = await driver.create_record(CrmObject.DEAL, {"name": "Loft", "expected_revenue": 900.0}, "d1")
        assert again.external_id == created.external_id and not again.created
        since = datetime.now(UTC) - timedelta(minutes=1)
        assert [r.external_id for r in await driver.list_recent(CrmObject.DEAL, since)] == [created.external_id]
        with pytest.raises(errors.NotFoundError):
            await driver.get_record(CrmObject.DEAL, "424242")
        state.tokens.expire_all()
        with pytest.raises(errors.AuthError) as revoked:
            await driver.get_record(CrmObject.DEAL, created.external_id)
        assert revoked.value.status_code == 401 and revoked.value.provider_code == "Unauthorized"
    used = {call.split(" ")[1] for call in state.calls}
    assert used == {"/jsonrpc", "/json/2"} and state.calls["POST /jsonrpc common.version"] == 1
    assert not any("execute_kw" in call or "authenticate" in call for call in state.calls)


async def test_upsert_many_loads_a_batch_and_fails_only_the_bad_item() -> None:
    async with connected() as (driver, state):
        items = [UpsertItem("b1", {"name": "Ann", "type": "contact"}), UpsertItem("b2", {"name": "Bo", "type": "x"}),
                 UpsertItem("b3", {"name": "Cy", "type": "contact"})]
        outcomes = await driver.upsert_many(CrmObject.CUSTOMER, items)
        assert [o.ok for o in outcomes] == [True, False, True] and all(o.created for o in outcomes if o.ok)
        assert isinstance(outcomes[1].error, errors.InvalidRequestError)
        assert outcomes[1].error.provider_code == "load:type"
        assert state.calls["POST /jsonrpc res.partner.load"] == 2  # the batch, then the batch without its bad row
        existing = outcomes[0].external_id
        assert existing is not None
        again = await driver.upsert_many(CrmObject.CUSTOMER, [items[0], UpsertItem("u", {"city": "Oslo"}, existing)])
        assert [(o.external_id, o.created) for o in again] == [(existing, False), (existing, False)]
        assert state.tables["res.partner"][int(existing)]["city"] == "Oslo"
        assert state.calls["POST /jsonrpc res.partner.load"] == 2  # replay found the external id: no load


def test_the_credential_form_takes_one_secret_and_keeps_settings_apart() -> None:
    form = OdooCredentials(instance_url="https://acme.odoo.com/", database="acme", username="bot@acme.com",
                           api_key="a" * 40)
    assert form.secret() == {"auth": "odoo", "login": "bot@acme.com", "api_key": "a" * 40}
    assert form.settings() == {"instance_url": "https://acme.odoo.com", "database": "acme", "odoo_protocol": "auto"}
    for bad in ({}, {"api_key": "a" * 40, "password": "pw"}, {"api_key": "a" * 40, "instance_url": "acme.odoo.com"},
                {"api_key": "a" * 40, "database": "a b"}, {"api_key": "a" * 40, "extra": 1}):
        body = {"instance_url": "https://acme.odoo.com", "database": "acme", "username": "u"} | bad
        with pytest.raises(pydantic.ValidationError) as invalid:
            OdooCredentials.model_validate(body)
        assert "a" * 40 not in str(invalid.value)
