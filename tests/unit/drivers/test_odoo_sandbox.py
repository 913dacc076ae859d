"""The Odoo sandbox against the recorded sessions of a real Odoo 17 server (../shared/provider-specs/odoo/).

Every recorded JSON-RPC request is replayed, in order, against a fresh sandbox set up like the recorded
database (same db name and login, same id sequences); each answer must have the recorded shape (the same keys,
recursively, and the same JSON types) and, for errors, the same `error.code` and `error.data.name`. The
XML-RPC recordings (results and Fault codes) are replayed as the equivalent calls.
"""

from __future__ import annotations

import json
import xmlrpc.client
from typing import Any

import httpx
import pytest

from sandboxes.odoo.app import create_app
from sandboxes.odoo.state import ApiKeys, OdooState
from tests.support.specs import provider_spec

# The recorded server's sequences at the start of session 1 (its first partner create answered 7, lead 1).
RECORDED_SEQ = {"res.partner": 7, "crm.lead": 1, "mail.message": 1, "ir.model.data": 12819}


def shape(value: Any) -> Any:
    """The JSON shape of a value: dicts by key, lists by their first element, scalars by type."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items()) if k not in ("debug", "message", "arguments")}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def recorded_state() -> tuple[OdooState, str]:
    keys = ApiKeys("odoo", None)
    state = OdooState(tokens=keys, seq=dict(RECORDED_SEQ))
    return state, keys.credentials().access_token


def substitute(value: Any, secrets: dict[str, str]) -> Any:
    if isinstance(value, str):
        return secrets.get(value, value)
    if isinstance(value, list):
        return [substitute(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, secrets) for k, v in value.items()}
    return value


def session(name: str) -> Any:
    return json.loads(provider_spec("odoo", name).read_text())


async def test_every_recorded_jsonrpc_request_gets_the_recorded_answer_shape() -> None:
    state, key = recorded_state()
    secrets = {"<PASSWORD>": state.password, "<API_KEY>": key}
    exchanges = session("recorded-odoo17-rpc-session-1.json")["jsonrpc"]
    assert len(exchanges) >= 30
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(state)), base_url="http://odoo") as http:
        for exchange in exchanges:
            request = exchange["request"]
            response = await http.post(request["POST"], json=substitute(request["body"], secrets))
            assert response.status_code == exchange["http_status"] == 200, exchange["label"]
            got, want = response.json(), exchange["response"]
            if "error" in want:
                assert got["error"]["code"] == want["error"]["code"], exchange["label"]
                assert got["error"]["data"]["name"] == want["error"]["data"]["name"], exchange["label"]
            assert shape(got) == shape(want), exchange["label"]


async def test_recorded_load_upserts_and_constraint_errors() -> None:
    state, key = recorded_state()
    recorded = session("recorded-odoo17-rpc-session-3-load-upsert.json") | session("recorded-odoo17-rpc-session-2.json")
    state.denied_models.add("crm.lead")

    async def call(model: str, method: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
        body = {"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
            "service": "object", "method": "execute_kw", "args": ["crmlab", 2, key, model, method, args, kwargs or {}]}}
        return (await http.post("/jsonrpc", json=body)).json()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(state)), base_url="http://odoo") as http:
        row = [["crmdriver.idem_key_abc123", "Idem Partner", "idem@example.com", "+1 415 555 0177"]]
        first = await call("res.partner", "load", [["id", "name", "email", "phone"], row])
        second = await call("res.partner", "load", [["id", "name", "email", "phone"], row])
        assert shape(first) == shape(recorded["load_upsert_first"]) and first["result"] == second["result"]
        count = await call("res.partner", "search_count", [[["email", "=", "idem@example.com"]]])
        assert count["result"] == recorded["count_after_two_loads"]["result"] == 1
        xmlid = await call("ir.model.data", "search_read", [[["module", "=", "crmdriver"],
                                                             ["name", "=", "idem_key_abc123"]]],
                           {"fields": ["model", "res_id", "noupdate"]})
        assert shape(xmlid) == shape(recorded["xmlid_lookup"])
        invalid = await call("res.partner", "load", [["name", "type"], [["X", "not-a-type"]]])
        assert shape(invalid) == shape(recorded["load_validation_error"])
        assert invalid["result"]["messages"][0]["message"] == (
            recorded["load_validation_error"]["result"]["messages"][0]["message"])
        for label, got in [
            ("name_search", await call("res.partner", "name_search", ["Idem"])),
            ("check_access_rights", await call("res.partner", "check_access_rights", ["read"])),
            ("limited_user_read_crm_lead", await call("crm.lead", "search_read", [[]])),
        ]:
            assert shape(got) == shape(recorded[label]), label
        state.denied_models.clear()
        lead = (await call("crm.lead", "create", [{"name": "Deal"}]))["result"]
        error = await call("crm.lead", "write", [[lead], {"probability": 150}])
        want = recorded["sql_constraint_probability_150"]["error"]["data"]
        assert error["error"]["data"]["name"] == want["name"] and error["error"]["data"]["message"] == want["message"]


XMLRPC_LABELS = ["xmlrpc common.version", "xmlrpc authenticate api key", "xmlrpc authenticate wrong",
                 "xmlrpc search_read by email", "xmlrpc wrong key -> Fault", "xmlrpc unknown field create -> Fault",
                 "xmlrpc_access_error"]


@pytest.mark.parametrize("label", XMLRPC_LABELS)
async def test_recorded_xmlrpc_results_and_faults(label: str) -> None:
    state, key = recorded_state()
    state.add("res.partner", {"name": "Ada Lovelace", "email": "ada@example.com"})
    state.denied_models.add("crm.lead")
    recorded = {e["label"]: e for e in session("recorded-odoo17-rpc-session-1.json")["xmlrpc"]}
    recorded["xmlrpc_access_error"] = session("recorded-odoo17-rpc-session-2.json")["xmlrpc_access_error"]
    calls: dict[str, tuple[str, str, tuple[Any, ...]]] = {
        "xmlrpc common.version": ("common", "version", ()),
        "xmlrpc authenticate api key": ("common", "authenticate", ("crmlab", "admin", key, {})),
        "xmlrpc authenticate wrong": ("common", "authenticate", ("crmlab", "admin", "WRONG", {})),
        "xmlrpc search_read by email": ("object", "execute_kw", ("crmlab", 2, key, "res.partner", "search_read",
                                                                 [[["email", "=ilike", "ADA@example.com"]]],
                                                                 {"fields": ["id", "name", "email"]})),
        "xmlrpc wrong key -> Fault": ("object", "execute_kw", ("crmlab", 2, "WRONG", "res.partner", "search_count",
                                                               [[]])),
        "xmlrpc unknown field create -> Fault": ("object", "execute_kw", ("crmlab", 2, key, "res.partner", "create",
                                                                          [{"name": "x", "nope": 1}])),
        "xmlrpc_access_error": ("object", "execute_kw", ("crmlab", 2, key, "crm.lead", "search_read", [[]])),
    }
    service, method, args = calls[label]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(state)), base_url="http://odoo") as http:
        response = await http.post(f"/xmlrpc/2/{service}", content=xmlrpc.client.dumps(args, method))
    want = recorded[label]
    try:
        (got,), _ = xmlrpc.client.loads(response.content, use_builtin_types=True)
    except xmlrpc.client.Fault as fault:
        assert fault.faultCode == want["faultCode"]
        last = fault.faultString.strip().splitlines()[-1]
        assert last == want.get("faultString_lastline", last)
        if "faultString" in want:
            assert fault.faultString.split("\n")[0] == want["faultString"].split("\n")[0]
        return
    assert "faultCode" not in want and shape(got) == shape(want["result"])
