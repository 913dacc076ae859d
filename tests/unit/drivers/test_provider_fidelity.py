"""What the providers' docs say, held against the drivers and the sandboxes: Salesforce's connection test
without "View Setup", SOSL's two-character minimum, unknown API versions, 15-character ids, case-insensitive
SOQL, and `describe` with picklist values, lookup targets and the custom flag (Salesforce and HubSpot)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from drivers import errors
from drivers.base import CrmObject
from sandboxes.salesforce import SalesforceState
from tests.unit.drivers.harness import Harness
from tests.unit.drivers.harness import hubspot as hubspot_harness
from tests.unit.drivers.harness import salesforce as salesforce_harness


@pytest.fixture
async def sf() -> AsyncIterator[Harness]:
    async with salesforce_harness() as harness:
        yield harness


def _state(h: Harness) -> SalesforceState:
    assert isinstance(h.state, SalesforceState)
    return h.state


async def test_connection_check_works_for_a_user_without_view_setup(sf: Harness) -> None:
    _state(sf).view_setup = False  # a least-privilege integration user
    limits = await sf.driver.client.get("/services/data/v62.0/limits")
    assert limits.status_code == 403 and limits.json()[0]["errorCode"] == "INSUFFICIENT_ACCESS"
    check = await sf.driver.test_connection()
    assert check.ok, check.reason


@pytest.mark.parametrize("query", ["a", " b ", "c*", "*", "?d"])
async def test_sosl_needs_two_characters_before_any_call(sf: Harness, query: str) -> None:
    before = sum(_state(sf).calls.values())
    with pytest.raises(errors.InvalidRequestError):
        await sf.driver.search_records(CrmObject.CUSTOMER, query)
    assert sum(_state(sf).calls.values()) == before
    # The sandbox refuses it as Salesforce does, should a caller skip the check.
    response = await sf.driver.client.get("/services/data/v62.0/search",
                                          params={"q": f"FIND {{{query.strip()}}} RETURNING Contact(Id)"})
    assert response.status_code == 400 and response.json()[0]["errorCode"] == "MALFORMED_SEARCH"


async def test_two_characters_are_enough(sf: Harness) -> None:
    sf.seed(CrmObject.CUSTOMER, sf.customer_fields("Ng", "+1 415 555 0100", "ng@example.com"))
    found = await sf.driver.search_records(CrmObject.CUSTOMER, "Ng")
    assert [r.fields["LastName"] for r in found] == ["Ng"]


@pytest.mark.parametrize("version", ["v99.0", "v20.0", "v62.1", "62.0", "vxx"])
async def test_unknown_api_versions_answer_404(sf: Harness, version: str) -> None:
    response = await sf.driver.client.get(f"/services/data/{version}/sobjects/Contact/describe")
    assert response.status_code == 404 and response.json()[0]["errorCode"] == "NOT_FOUND"
    assert (await sf.driver.client.get("/services/data/v62.0/sobjects/Contact/describe")).status_code == 200


async def test_unknown_api_version_in_the_driver_is_not_found(sf: Harness) -> None:
    sf.driver.config["api_version"] = "v99.0"
    with pytest.raises(errors.NotFoundError):
        await sf.driver.list_recent(CrmObject.CUSTOMER, since=datetime(2020, 1, 1, tzinfo=UTC))


async def test_fifteen_character_ids_are_accepted_and_answered_in_eighteen(sf: Harness) -> None:
    contact = sf.seed(CrmObject.CUSTOMER, sf.customer_fields("Ortiz", "+1 415 555 0101", "o@example.com"))
    assert len(contact) == 18
    short = contact[:15]
    record = await sf.driver.get_record(CrmObject.CUSTOMER, short)
    assert record.external_id == contact
    await sf.driver.update_record(CrmObject.CUSTOMER, short, {"MailingCity": "Quito"})
    assert _state(sf).records["Contact"][contact]["MailingCity"] == "Quito"
    note = await sf.driver.append_note(short, None, "Caller asked about a viewing.", batch_key="b-15")
    assert _state(sf).records["Task"][note.external_id]["WhoId"] == contact  # stored in its 18-char form
    wrong_suffix = contact[:15] + ("AAA" if contact[15:] != "AAA" else "BBB")
    with pytest.raises(errors.NotFoundError):
        await sf.driver.get_record(CrmObject.CUSTOMER, wrong_suffix)


async def test_soql_keywords_and_names_are_case_insensitive(sf: Harness) -> None:
    contact = sf.seed(CrmObject.CUSTOMER, sf.customer_fields("Lee", "+1 415 555 0102", "lee@example.com"))
    soql = ("select id, lastname from contact where EMAIL = 'lee@example.com' and lastname like 'l%' "
            "Order By lastmodifieddate Desc Nulls Last Limit 5")
    response = await sf.driver.client.get("/services/data/v62.0/query", params={"q": soql})
    assert response.status_code == 200, response.text
    rows = response.json()["records"]
    assert [(r["Id"], r["LastName"], r["attributes"]["type"]) for r in rows] == [(contact, "Lee", "Contact")]
    sosl = "find {Lee} in all fields returning contact(id, lastname)"
    found = (await sf.driver.client.get("/services/data/v62.0/search", params={"q": sosl})).json()["searchRecords"]
    assert [(r["Id"], r["LastName"]) for r in found] == [(contact, "Lee")]


async def test_salesforce_describe_carries_picklists_lookups_and_the_custom_flag(sf: Harness) -> None:
    lead = {f.name: f for f in await sf.driver.describe_schema(CrmObject.LEAD)}
    assert "Open - Not Contacted" in lead["Status"].picklist_values and "Web" in lead["LeadSource"].picklist_values
    assert lead["OwnerId"].reference_to == ["User"] and lead["Status"].custom is False
    assert lead["CrmSorKey__c"].custom is True and lead["CrmSorKey__c"].picklist_values == []
    note = {f.name: f for f in await sf.driver.describe_schema(CrmObject.NOTE)}
    assert note["WhoId"].reference_to == ["Contact", "Lead"]
    raw = (await sf.driver.client.get("/services/data/v62.0/sobjects/Lead/describe")).json()
    status = next(f for f in raw["fields"] if f["name"] == "Status")
    assert status["picklistValues"][0] == {"active": True, "defaultValue": True, "label": "Open - Not Contacted",
                                           "validFor": None, "value": "Open - Not Contacted"}


async def test_hubspot_describe_carries_enumeration_options_and_the_custom_flag() -> None:
    async with hubspot_harness() as hs:
        contact = {f.name: f for f in await hs.driver.describe_schema(CrmObject.CUSTOMER)}
        ticket = {f.name: f for f in await hs.driver.describe_schema(CrmObject.CASE)}
    assert "lead" in contact["lifecyclestage"].picklist_values and contact["firstname"].picklist_values == []
    assert contact["firstname"].custom is False and contact["crm_sor_idempotency_key"].custom is True
    assert ticket["hs_ticket_priority"].picklist_values == ["LOW", "MEDIUM", "HIGH"]
