"""The HubSpot sandbox's search as HubSpot's behaves: its index lags writes, it has its own per-second limit,
and it refuses more filters than documented; and the driver's answers to each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from drivers import errors
from drivers.auth import BearerAuth
from drivers.base import CrmObject
from drivers.hubspot import HubSpotDriver
from sandboxes.common import TokenIssuer
from sandboxes.hubspot import HubSpotState, create_app
from sandboxes.hubspot_search import MAX_FILTER_GROUPS, MAX_FILTERS, MAX_FILTERS_PER_GROUP


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def hs(clock: Clock) -> AsyncIterator[tuple[HubSpotDriver, HubSpotState]]:
    state = HubSpotState(tokens=TokenIssuer("hubspot", None, clock=clock))
    app = create_app(state)
    async with httpx.AsyncClient(base_url=HubSpotDriver.base_url, transport=httpx.ASGITransport(app=app),
                                 auth=BearerAuth(state.tokens.issue_access())) as client:
        yield HubSpotDriver(client, {}), state


def _names(records: list[object]) -> list[str]:
    return [r.fields.get("lastname") for r in records]  # type: ignore[attr-defined]


async def test_a_created_contact_is_searchable_only_after_the_lag(
        hs: tuple[HubSpotDriver, HubSpotState], clock: Clock) -> None:
    driver, state = hs
    assert state.search_index.lag_seconds > 0  # on by default
    created = await driver.create_record(CrmObject.CUSTOMER, {"lastname": "Haddad", "phone": "+971501234567"}, "k1")
    assert await driver.search_records(CrmObject.CUSTOMER, "haddad") == []
    assert await driver.lookup_customer(phone="+971501234567") is None  # the search-based lookup misses it too
    assert (await driver.get_record(CrmObject.CUSTOMER, created.external_id)).fields["lastname"] == "Haddad"
    clock.now += state.search_index.lag_seconds
    assert _names(await driver.search_records(CrmObject.CUSTOMER, "haddad")) == ["Haddad"]


async def test_an_update_is_searched_as_it_was_until_the_lag_passes(
        hs: tuple[HubSpotDriver, HubSpotState], clock: Clock) -> None:
    driver, state = hs
    contact = state.add("contacts", {"lastname": "Saleh"}).id  # seeded: indexed at once
    await driver.update_record(CrmObject.CUSTOMER, contact, {"lastname": "Nasser"})
    await driver.update_record(CrmObject.CUSTOMER, contact, {"lastname": "Karim"})
    assert await driver.search_records(CrmObject.CUSTOMER, "karim") == []
    assert len(await driver.search_records(CrmObject.CUSTOMER, "saleh")) == 1  # the index still has the old name
    clock.now += state.search_index.lag_seconds
    assert await driver.search_records(CrmObject.CUSTOMER, "saleh") == []
    assert len(await driver.search_records(CrmObject.CUSTOMER, "karim")) == 1


async def test_search_has_its_own_per_second_limit(hs: tuple[HubSpotDriver, HubSpotState], clock: Clock) -> None:
    driver, state = hs
    allowed = state.search_limit.per_second
    assert allowed is not None
    for _ in range(allowed):
        await driver.search_records(CrmObject.CUSTOMER, "anyone")
    await driver.get_record(CrmObject.CUSTOMER, state.add("contacts", {"lastname": "Lee"}).id)  # reads are not counted
    with pytest.raises(errors.RateLimitedError) as refused:
        await driver.search_records(CrmObject.CUSTOMER, "anyone")
    assert refused.value.retry_after == timedelta(seconds=1) and refused.value.provider_code == "RATE_LIMIT"
    clock.now += 1.0
    assert await driver.search_records(CrmObject.CUSTOMER, "anyone") == []
    assert HubSpotDriver.rate_limits[1].scope == "search" and HubSpotDriver.rate_limits[1].requests <= allowed


@pytest.mark.parametrize(("groups", "per_group"), [
    (MAX_FILTER_GROUPS + 1, 1),  # too many groups
    (1, MAX_FILTERS_PER_GROUP + 1),  # too many in one group
    (MAX_FILTER_GROUPS, MAX_FILTERS // MAX_FILTER_GROUPS + 1),  # each group within its cap, too many in all
])
async def test_more_filters_than_documented_are_refused(
        hs: tuple[HubSpotDriver, HubSpotState], groups: int, per_group: int) -> None:
    driver, _ = hs
    flt = {"propertyName": "lastname", "operator": "EQ", "value": "x"}
    body = {"filterGroups": [{"filters": [flt] * per_group}] * groups}
    response = await driver.client.post("/crm/v3/objects/contacts/search", json=body)
    assert response.status_code == 400 and response.json()["category"] == "VALIDATION_ERROR"
    at_limit = {"filterGroups": [{"filters": [flt] * MAX_FILTERS_PER_GROUP}] * (MAX_FILTERS // MAX_FILTERS_PER_GROUP)}
    assert (await driver.client.post("/crm/v3/objects/contacts/search", json=at_limit)).status_code == 200


async def test_the_driver_phone_lookup_is_one_search_within_the_caps(hs: tuple[HubSpotDriver, HubSpotState]) -> None:
    driver, state = hs
    wanted = state.add("contacts", {"lastname": "Haddad", "mobilephone": "00971 50 123 4567"}).id
    driver.default_region = "AE"  # the tenant's region: a national number with Arabic-Indic digits
    found = await driver.lookup_customer(phone="٠٥٠١٢٣٤٥٦٧")
    assert found is not None and found.external_id == wanted
    assert state.calls["POST /crm/v3/objects/{object_type}/search"] == 1
