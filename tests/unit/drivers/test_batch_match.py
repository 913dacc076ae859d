"""Batch customer matching at the providers' own rules: HubSpot (`batch/read` by id and by email, one phone search
within the filter caps, the search index's lag) and Salesforce (SOQL packed under the URI limit), and what a batch
costs in calls. The contract suite checks every driver answers as `lookup_customer` does."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from drivers import errors
from drivers.base import CrmObject, MatchItem, UpsertItem
from sandboxes.hubspot import HubSpotState
from store.phone_index import PhoneIndex
from tests.unit.drivers.harness import hubspot as hubspot_harness
from tests.unit.drivers.harness import salesforce as salesforce_harness
from vault.indexed import IndexedDriver

READ = "POST /crm/v3/objects/{object_type}/batch/read"
SEARCH = "POST /crm/v3/objects/{object_type}/search"
QUERY = "GET /services/data/{version}/query"


def _phone(n: int) -> str:
    return f"+1 628 555 {n:04d}"


async def test_a_hundred_hubspot_customers_are_matched_in_two_calls() -> None:
    async with hubspot_harness() as h:
        state = h.state
        assert isinstance(state, HubSpotState)
        by_email = {n: h.seed(CrmObject.CUSTOMER, {"lastname": f"E{n}", "email": f"c{n}@example.com"})
                    for n in range(0, 30, 3)}
        # Known callers stored as a tenant typed them: formatted, national, in the mobile field.
        by_phone = {40: h.seed(CrmObject.CUSTOMER, {"lastname": "P40", "phone": "(628) 555-0040"}),
                    41: h.seed(CrmObject.CUSTOMER, {"lastname": "P41", "mobilephone": "6285550041"}),
                    99: h.seed(CrmObject.CUSTOMER, {"lastname": "P99", "phone": "+16285550099"})}
        h.seed(CrmObject.CUSTOMER, {"lastname": "Elsewhere", "phone": "+44 20 7946 0040"})  # same digits, not ours
        items = [MatchItem(f"k{n}", phone=_phone(n), email=f"c{n}@example.com" if n < 30 else None)
                 for n in range(100)]
        before = sum(state.calls.values())
        found = await h.driver.match_customers(items)
        assert sum(state.calls.values()) - before == 2  # one batch/read by email, one search for the phones left
        assert state.calls[READ] == 1 and state.calls[SEARCH] == 1
        assert {k: v for k, v in found.items() if v} == {f"k{n}": i for n, i in (by_email | by_phone).items()}
        with pytest.raises(errors.InvalidRequestError):
            await h.driver.match_customers([MatchItem(f"x{n}", phone=_phone(n)) for n in range(101)])


async def test_hubspot_email_and_index_hints_find_a_contact_the_search_index_does_not_show_yet() -> None:
    async with hubspot_harness() as h:
        state = h.state
        assert isinstance(state, HubSpotState)
        state.search_index.lag_seconds = 60.0  # HubSpot indexes API writes for search seconds later
        written = await h.driver.upsert_many(CrmObject.CUSTOMER, [UpsertItem("new-caller", {
            "lastname": "Fresh", "email": "fresh@example.com", "phone": "+1 628 555 0123"})])
        created = written[0].external_id
        assert created is not None and written[0].created
        phone_only = await h.driver.match_customers([MatchItem("p", phone="6285550123")])
        assert phone_only == {"p": None}  # a search cannot see it yet: why the mirror does not rely on search
        searches = state.calls[SEARCH]
        found = await h.driver.match_customers([MatchItem("e", phone="6285550123", email="FRESH@example.com"),
                                                MatchItem("i", phone="6285550123", known_id=created)])
        assert found == {"e": created, "i": created}
        assert state.calls[SEARCH] == searches  # consistent reads by email and by id, no search


async def test_two_hundred_salesforce_customers_take_a_few_queries_under_the_uri_limit() -> None:
    async with salesforce_harness() as h:
        urls: list[int] = []

        async def measure(request: httpx.Request) -> None:
            urls.append(len(str(request.url).encode()))

        h.driver.client.event_hooks["request"].append(measure)
        known = {7: h.seed(CrmObject.CUSTOMER, {"LastName": "P7", "Phone": "628.555.0007"}),
                 8: h.seed(CrmObject.CUSTOMER, {"LastName": "P8", "MobilePhone": "(628) 555-0008"}),
                 150: h.seed(CrmObject.CUSTOMER, {"LastName": "E150", "Email": "c150@example.com"})}
        items = [MatchItem(f"k{n}", phone=_phone(n), email=f"c{n}@example.com") for n in range(200)]
        found = await h.driver.match_customers(items)
        assert {k: v for k, v in found.items() if v} == {f"k{n}": i for n, i in known.items()}
        queries = h.state.calls[QUERY]
        assert 1 <= queries <= 12 and max(urls) < 16_384  # a few queries, never a search per customer
        assert sum(1 for name in h.state.calls if "/search" in name) == 0


async def test_the_phone_index_spares_the_mirror_a_search_and_drops_a_stale_hint(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with hubspot_harness() as h:
        state, tenant = h.state, uuid.uuid4()
        assert isinstance(state, HubSpotState)
        state.search_index.lag_seconds = 60.0
        index = PhoneIndex(sessions, "test-subject-hash-key")
        driver = IndexedDriver.wrap(h.driver, index, tenant)
        written = await driver.upsert_many(CrmObject.CUSTOMER, [UpsertItem("caller", {
            "lastname": "Known", "phone": "+1 628 555 0123"})])  # the index learns the number from the write
        created = written[0].external_id
        assert await index.recall_many(tenant, "hubspot", ["+16285550123", "+16285550999"]) == {
            "+16285550123": created}
        searches = state.calls[SEARCH]
        found = await driver.match_customers([MatchItem("again", phone="(628) 555-0123")])
        assert found == {"again": created} and state.calls[SEARCH] == searches  # one read by id, no search
        assert isinstance(driver, IndexedDriver) and driver.index_hits == 1
        assert created is not None
        state.update(state.find("contacts", created, None, False), {"phone": "+1 628 555 0777"})  # moved in the CRM
        assert await driver.match_customers([MatchItem("moved", phone="+1 628 555 0123")]) == {"moved": None}
        assert await index.recall(tenant, "hubspot", "+16285550123") is None  # the stale entry is gone
