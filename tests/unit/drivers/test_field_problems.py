"""CRM validation failures name the fields (never values), in each driver's parsing and in the taxonomy."""

from __future__ import annotations

import pytest

from drivers import errors
from drivers.base import CrmObject
from tests.unit.drivers.harness import zoho as zoho_harness


def test_only_names_that_look_like_field_names_are_kept() -> None:
    found = errors.field_problems([("LastName", "required"), ("ann@example.com", "invalid"), ("a b", "unknown"),
                                   (None, "required"), ("Custom__c", "weird")])
    assert found == {"LastName": "required", "Custom__c": "invalid"}


def test_the_message_lists_fields_after_the_code() -> None:
    exc = errors.InvalidRequestError("POST failed with HTTP 400", provider="salesforce", status_code=400,
                                     provider_code="REQUIRED_FIELD_MISSING", fields={"LastName": "required"})
    assert str(exc).endswith("fields=LastName:required") and exc.fields == {"LastName": "required"}


async def test_zoho_names_the_mandatory_and_the_refused_field() -> None:
    async with zoho_harness() as h:
        driver = h.driver
        with pytest.raises(errors.InvalidRequestError) as missing:
            await driver.create_record(CrmObject.CUSTOMER, {"First_Name": "Ann"}, "k-1")
        assert missing.value.fields == {"Last_Name": "required"}
        with pytest.raises(errors.InvalidRequestError) as unknown:
            await driver.create_record(CrmObject.CUSTOMER, {"Last_Name": "Lee", "Favourite": "teal"}, "k-2")
        assert unknown.value.fields == {"Favourite": "invalid"} and "teal" not in str(unknown.value)
