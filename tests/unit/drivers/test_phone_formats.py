"""Callers from the UAE, Saudi Arabia, Egypt and the US, their number written every way callers and speech-to-text
write it (Arabic-Indic digits included), all find the same CRM record on every driver's sandbox.

The tenant's region (set at tenant creation) reaches the driver as `config["default_region"]`; the record is
stored the way a local user types it, and a record holding the same national digits in another country must not
be taken for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from drivers.base import CrmObject
from drivers.text import region_of
from sandboxes.webhook_receiver import ReceiverState
from tests.unit.drivers.harness import HARNESSES, Harness

# region -> (as stored in the CRM, a same-digits number of another country or None, what callers give us)
COUNTRIES: dict[str, tuple[str, str | None, list[str]]] = {
    "AE": ("+971 50 123 4567", "+966 50 123 4567", [
        "+971501234567", "+971 50 123 4567", "00971501234567", "050 123 4567", "0501234567", "971501234567",
        "٠٥٠١٢٣٤٥٦٧", "٠٠٩٧١٥٠١٢٣٤٥٦٧", "۰۵۰ ۱۲۳ ۴۵۶۷"]),
    "SA": ("+966 55 123 4567", "+971 55 123 4567", [
        "+966551234567", "+966 55 123 4567", "00966 55 123 4567", "055 123 4567", "0551234567", "966551234567",
        "٠٥٥١٢٣٤٥٦٧", "۰۵۵۱۲۳۴۵۶۷"]),
    "EG": ("01001234567", None, [
        "+201001234567", "+20 100 123 4567", "00201001234567", "0100 123 4567", "01001234567", "201001234567",
        "٠١٠٠١٢٣٤٥٦٧", "+٢٠١٠٠١٢٣٤٥٦٧"]),
    "US": ("(415) 555-2671", None, [
        "+14155552671", "+1 415-555-2671", "(415) 555-2671", "415.555.2671", "4155552671", "001 415 555 2671",
        "1-415-555-2671", "٤١٥٥٥٥٢٦٧١"]),
}


# athenaNet keeps a phone as its 10 national digits (sandboxes/athenahealth/state.py): a number stored with its
# country code would lose it, so athena records hold the number as the practice dials it at home.
NATIONAL = {"AE": "050 123 4567", "SA": "055 123 4567", "EG": "0100 123 4567", "US": "(415) 555-2671"}
STORED_NATIONALLY = {"athenahealth"}


@pytest.fixture(params=sorted(HARNESSES))
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with HARNESSES[request.param]() as harness:
        yield harness


@pytest.mark.parametrize("region", sorted(COUNTRIES))
async def test_every_spelling_finds_the_same_record(h: Harness, region: str) -> None:
    stored, elsewhere, dialled = COUNTRIES[region]
    if h.slug in STORED_NATIONALLY:
        stored, elsewhere = NATIONAL[region], None
    h.driver.config["default_region"] = region
    h.driver.default_region = region_of(h.driver.config)  # as the vault builds it from the tenant's settings
    if isinstance(h.state, ReceiverState):  # a custom-webhook partner reads its users' numbers in its own country
        h.state.region = region
    if elsewhere is not None:
        h.seed(CrmObject.CUSTOMER, h.customer_fields("Other", elsewhere, "other@example.com"))
    wanted = h.seed(CrmObject.CUSTOMER, h.customer_fields("Haddad", stored, "haddad@example.com"))
    assert len(dialled) >= 6
    found = {raw: await h.driver.lookup_customer(phone=raw) for raw in dialled}
    missed = [raw for raw, record in found.items() if record is None or record.external_id != wanted]
    assert missed == []
