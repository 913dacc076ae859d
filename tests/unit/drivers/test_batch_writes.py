"""Batch writes at the providers' own limits: HubSpot's batch endpoints and Salesforce's sObject Collections in
their sandboxes (size limits, partial failure, all-or-none), the calls a batch costs, the request shape against
Salesforce's published Postman collection, and Salesforce's daily allocation honoured by the budget."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from drivers import errors
from drivers.base import CrmObject, UpsertItem
from drivers.budget import ProviderBudget, attach
from drivers.salesforce import SalesforceDriver
from sandboxes.hubspot import HubSpotState
from sandboxes.salesforce import SalesforceState
from tests.support.specs import provider_spec
from tests.unit.drivers.harness import hubspot as hubspot_harness
from tests.unit.drivers.harness import salesforce as salesforce_harness

KEY = "crm_sor_idempotency_key"


def _deal(n: int) -> dict[str, Any]:
    return {"dealname": f"Deal {n}", "amount": "10", "dealstage": "appointmentscheduled"}


# ----- HubSpot ------------------------------------------------------------------------------------------------


async def test_hubspot_batch_upsert_validates_like_hubspot() -> None:
    async with hubspot_harness() as h:
        client, path = h.driver.client, "/crm/v3/objects/deals/batch/upsert"
        too_many = [{"idProperty": KEY, "id": f"k{n}", "properties": _deal(n)} for n in range(101)]
        refused = await client.post(path, json={"inputs": too_many})
        assert refused.status_code == 400 and refused.json()["category"] == "VALIDATION_ERROR"
        not_unique = await client.post(path, json={"inputs": [{"idProperty": "dealname", "id": "x",
                                                               "properties": _deal(1)}]})
        assert not_unique.status_code == 400 and "unique" in not_unique.json()["message"]
        # Without trace ids one bad input fails the whole call, and nothing is written.
        untraced = [{"idProperty": KEY, "id": "u1", "properties": _deal(1)},
                    {"idProperty": KEY, "id": "u2", "properties": _deal(2) | {"nope_zz": "1"}}]
        whole = await client.post(path, json={"inputs": untraced})
        assert whole.status_code == 400 and h.records_with_key(CrmObject.DEAL, "u1") == 0
        # With them, HubSpot answers 207: the good input is written, the bad one is named by its trace id.
        traced = [dict(item, objectWriteTraceId=str(n)) for n, item in enumerate(untraced)]
        partial = await client.post(path, json={"inputs": traced})
        body = partial.json()
        assert partial.status_code == 207 and body["numErrors"] == 1
        assert body["errors"][0]["context"] == {"objectWriteTraceId": ["1"]}
        assert [(r["objectWriteTraceId"], r["new"]) for r in body["results"]] == [("0", True)]
        again = await client.post(path, json={"inputs": traced[:1]})
        assert again.status_code == 200 and again.json()["results"][0]["new"] is False
        assert h.records_with_key(CrmObject.DEAL, "u1") == 1


async def test_a_hundred_new_hubspot_records_cost_two_calls_and_count_down_the_window() -> None:
    async with hubspot_harness() as h:
        state = h.state
        assert isinstance(state, HubSpotState)
        state.knobs.interval_limit, state.knobs.interval_seconds = 100, 600.0
        seen: list[str] = []

        async def remaining(response: httpx.Response) -> None:
            seen.append(response.headers.get("X-HubSpot-RateLimit-Remaining", ""))

        h.driver.client.event_hooks["response"].append(remaining)
        items = [UpsertItem(f"c-{n}", {"firstname": f"F{n}", "email": f"c{n}@example.com"}) for n in range(100)]
        outcomes = await h.driver.upsert_many(CrmObject.CUSTOMER, items)
        assert all(o.ok and o.created for o in outcomes) and len({o.external_id for o in outcomes}) == 100
        assert state.calls["POST /crm/v3/objects/{object_type}/batch/read"] == 1
        assert state.calls["POST /crm/v3/objects/{object_type}/batch/upsert"] == 1
        assert seen[-2:] == ["99", "98"]  # one call each against the ten-second window, whatever its size


async def test_hubspot_rate_limit_headers_count_down_with_limits_off_too() -> None:
    async with hubspot_harness() as h:
        assert isinstance(h.state, HubSpotState) and h.state.knobs.interval_limit is None
        seen = [(await h.driver.client.get("/crm/v3/objects/deals")).headers for _ in range(3)]
        assert [s["X-HubSpot-RateLimit-Remaining"] for s in seen] == ["99", "98", "97"]
        assert {s["X-HubSpot-RateLimit-Max"] for s in seen} == {"100"}


# ----- Salesforce ---------------------------------------------------------------------------------------------


async def test_salesforce_collections_take_at_most_200_records_and_honour_all_or_none() -> None:
    async with salesforce_harness() as h:
        client, path = h.driver.client, "/services/data/v62.0/composite/sobjects/Lead/CrmSorKey__c"

        def lead(n: int) -> dict[str, Any]:
            return {"attributes": {"type": "Lead"}, "CrmSorKey__c": f"k{n}", "LastName": f"L{n}", "Company": "A"}

        refused = await client.patch(path, json={"allOrNone": False, "records": [lead(n) for n in range(201)]})
        assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
        mixed = [lead(1), {"attributes": {"type": "Lead"}, "CrmSorKey__c": "k2", "LastName": "L2"}]  # no Company
        rolled = await client.patch(path, json={"allOrNone": True, "records": mixed})
        assert rolled.status_code == 200 and [r["success"] for r in rolled.json()] == [False, False]
        assert rolled.json()[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
        assert h.records_with_key(CrmObject.LEAD, "k1") == 0
        partial = (await client.patch(path, json={"allOrNone": False, "records": mixed})).json()
        assert [(r["success"], r.get("created")) for r in partial] == [(True, True), (False, None)]
        assert partial[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
        assert (await client.patch(path, json={"records": [lead(1)]})).json()[0]["created"] is False


async def test_salesforce_batch_requests_have_the_published_shape() -> None:
    # forcedotcom/postman-salesforce-apis: "SObject Collections Update" is PATCH …/composite/sobjects/… with a
    # body of allOrNone and records; the upsert is the same resource with the external id field appended.
    item = json.loads((provider_spec("salesforce", "postman-salesforce-apis", "composite",
                                     "sobject_collections_update.json")).read_text())
    published_keys = set(json.loads(item["rawModeData"]))
    async with salesforce_harness() as h:
        sent: list[httpx.Request] = []

        async def keep(request: httpx.Request) -> None:
            sent.append(request)

        h.driver.client.event_hooks["request"].append(keep)
        known = h.seed(CrmObject.LEAD, {"LastName": "Old", "Company": "A"})
        await h.driver.upsert_many(CrmObject.LEAD, [UpsertItem("n1", {"LastName": "New", "Company": "A"}),
                                                    UpsertItem("u1", {"Title": "Boss"}, external_id=known)])
    writes = [r for r in sent if r.method == item["method"]]
    assert [r.url.path for r in writes] == ["/services/data/v62.0/composite/sobjects",
                                            "/services/data/v62.0/composite/sobjects/Lead/CrmSorKey__c"]
    for request in writes:
        body = json.loads(request.content)
        assert set(body) == published_keys and body["allOrNone"] is False
        assert all(record["attributes"] == {"type": "Lead"} for record in body["records"])


async def test_the_allocations_last_call_holds_the_tenants_budget_off() -> None:
    async with salesforce_harness() as h:
        state = h.state
        assert isinstance(state, SalesforceState)
        attach(h.driver.client, ProviderBudget(None), uuid.uuid4(), SalesforceDriver, "mirror")
        lead = h.seed(CrmObject.LEAD, {"LastName": "L", "Company": "A"})
        state.api_usage = state.api_usage_limit - 1
        await h.driver.get_record(CrmObject.LEAD, lead)  # the allocation's last call: api-usage=N/N
        calls = sum(state.calls.values())
        with pytest.raises(errors.RateLimitedError) as held:
            await h.driver.get_record(CrmObject.LEAD, lead)
        assert held.value.provider_code == "BUDGET"  # refused before the call: the org has nothing left
        assert sum(state.calls.values()) == calls


async def test_request_limit_exceeded_is_rate_limited_and_holds_the_budget_off() -> None:
    async with salesforce_harness() as h:
        state = h.state
        assert isinstance(state, SalesforceState)
        attach(h.driver.client, ProviderBudget(None), uuid.uuid4(), SalesforceDriver, "mirror")
        lead = h.seed(CrmObject.LEAD, {"LastName": "L", "Company": "A"})
        state.api_usage = state.api_usage_limit  # another integration of the org spent it: Salesforce answers 403
        with pytest.raises(errors.RateLimitedError) as refused:
            await h.driver.get_record(CrmObject.LEAD, lead)
        assert refused.value.status_code == 403 and refused.value.provider_code == "REQUEST_LIMIT_EXCEEDED"
        calls = sum(state.calls.values())
        with pytest.raises(errors.RateLimitedError) as after:
            await h.driver.upsert_many(CrmObject.LEAD, [UpsertItem("x", {"LastName": "X", "Company": "A"})])
        assert after.value.provider_code == "BUDGET" and sum(state.calls.values()) == calls
