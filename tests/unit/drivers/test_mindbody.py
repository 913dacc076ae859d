"""Mindbody specifics beyond the contract: site headers, the daily cap, no token churn, the on-or-after
boundary, bookings and contact logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from drivers import errors
from drivers.base import CrmObject
from drivers.mindbody import MindbodyCredentials, client_rssid
from sandboxes.mindbody import MindbodyState
from tests.unit.drivers.harness_vertical import mindbody


def _booking(state: MindbodyState, client_id: str, days: int = 2) -> dict[str, object]:
    start = (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT10:00:00")
    return {"ClientId": client_id, "LocationId": state.location_id, "StaffId": state.staff_id,
            "SessionTypeId": state.session_type_id, "StartDateTime": start}


async def test_every_call_sends_the_site_headers_and_a_wrong_key_fails_the_connection_test() -> None:
    async with mindbody() as h:
        sent: list[httpx.Headers] = []
        h.driver.client.event_hooks["request"].append(lambda r: _keep(sent, r))
        assert (await h.driver.test_connection()).ok
        assert sent[-1]["Api-Key"] == "mindbody-sandbox-api-key" and sent[-1]["SiteId"] == "-99"
        assert sent[-1]["Authorization"].startswith("Bearer mindbody-at-")
        h.state.api_key = "rotated-key"  # type: ignore[attr-defined]
        check = await h.driver.test_connection()
        assert not check.ok and check.reason is not None and "auth_error" in check.reason


async def _keep(sent: list[httpx.Headers], request: httpx.Request) -> None:
    sent.append(request.headers)


async def test_the_daily_cap_counts_every_call_and_answers_rate_limited_for_an_hour() -> None:
    async with mindbody() as h:
        h.state.knobs.interval_limit = 3
        for _ in range(3):
            assert await h.driver.lookup_customer(email="nobody@example.com") is None
        with pytest.raises(errors.RateLimitedError) as capped:
            await h.driver.lookup_customer(email="nobody@example.com")
        assert capped.value.provider_code == "TooManyRequests" and capped.value.retry_after == timedelta(hours=1)


async def test_the_user_token_is_issued_once_and_only_again_after_expiry() -> None:
    async with mindbody() as h:
        for _ in range(20):
            await h.driver.lookup_customer(email="nobody@example.com")
        assert h.token_calls == 0  # the token the connection holds serves: no call burnt on token churn
        h.state.tokens.expire_all()
        for _ in range(5):
            await h.driver.lookup_customer(email="nobody@example.com")
        assert h.token_calls == 1


async def test_list_recent_keeps_a_client_once_when_it_moves_between_pages() -> None:
    async with mindbody() as h:
        state: MindbodyState = h.state  # type: ignore[assignment]
        ids = [h.seed(CrmObject.CUSTOMER, h.create_fields(CrmObject.CUSTOMER, n)) for n in range(4)]
        state.knobs.page_size_cap = 2
        pages = 0

        async def touch_after_first_page(response: httpx.Response) -> None:
            nonlocal pages
            if response.request.url.path.endswith("/client/clients"):
                pages += 1
                if pages == 1:  # modified meanwhile: it now sorts last and shows up on a later page again
                    state.touch(state.clients[ids[0]])

        h.driver.client.event_hooks["response"].append(touch_after_first_page)
        records = await h.driver.list_recent(CrmObject.CUSTOMER, datetime.now(UTC) - timedelta(minutes=5))
        assert sorted(r.external_id for r in records) == sorted(ids) and len(records) == 4


async def test_book_cancel_and_no_delete() -> None:
    async with mindbody() as h:
        state: MindbodyState = h.state  # type: ignore[assignment]
        client = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "4155550100", "ann@example.com"))
        booked = await h.driver.create_record(CrmObject.APPOINTMENT, _booking(state, client), "call-1:book")
        again = await h.driver.create_record(CrmObject.APPOINTMENT, _booking(state, client), "call-1:book")
        assert booked.created and not again.created and again.external_id == booked.external_id
        assert len(state.appointments) == 1
        assert state.appointments[int(booked.external_id)]["PartnerExternalId"] == client_rssid("call-1:book")
        with pytest.raises(errors.ConflictError) as conflict:
            await h.driver.create_record(CrmObject.APPOINTMENT, _booking(state, client, days=5), "call-1:book")
        assert vars(conflict.value)["existing_id"] == booked.external_id  # where the mirror updates instead
        cancelled = await h.driver.update_record(CrmObject.APPOINTMENT, booked.external_id, {"Execute": "cancel"})
        assert cancelled is not None and cancelled.fields["Status"] == "Cancelled"
        with pytest.raises(errors.DeleteUnsupportedError, match="cancel it"):
            await h.driver.delete_record(CrmObject.APPOINTMENT, booked.external_id)
        with pytest.raises(errors.InvalidRequestError):
            await h.driver.list_recent(CrmObject.APPOINTMENT, datetime.now(UTC))


async def test_create_returns_mindbodys_existing_duplicate_instead_of_a_refused_add() -> None:
    async with mindbody() as h:
        existing = h.seed(CrmObject.CUSTOMER, {"FirstName": "Ann", "LastName": "Lee", "Email": "ann@example.com"})
        result = await h.driver.create_record(CrmObject.CUSTOMER, {"FirstName": "ann", "LastName": "LEE",
                                                                   "Email": "Ann@example.com"}, "k-dup")
        assert not result.created and result.external_id == existing and len(h.state.clients) == 1  # type: ignore[attr-defined]


def test_the_credential_form_keeps_the_site_as_a_setting_and_the_login_as_the_secret() -> None:
    form = MindbodyCredentials(site_id="-99", api_key="k" * 16, username="owner", password="pw")
    assert form.settings() == {"site_id": "-99"}
    assert form.secret() == {"auth": "token", "api_key": "k" * 16, "username": "owner", "password": "pw"}
    with pytest.raises(ValueError):
        MindbodyCredentials(site_id="studio", api_key="k" * 16, username="owner", password="pw")
