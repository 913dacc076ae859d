"""Toast specifics beyond the contract: the hard login limit and token reuse, the restaurant header, the
20 requests/s limit with Toast's headers, and the operations Toast does not offer."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from drivers import errors
from drivers.base import CrmObject
from drivers.toast import ToastCredentials, ToastDriver
from sandboxes.toast import LOGIN_PATH, ToastState
from tests.unit.drivers.harness_vertical import toast


async def test_logins_are_limited_per_hour_and_a_live_token_is_handed_back_again() -> None:
    async with toast() as h:
        state: ToastState = h.state  # type: ignore[assignment]
        state.logins_per_hour = 2
        async with httpx.AsyncClient(transport=h.transport) as http:
            first = await ToastDriver.grant_token(http, h.secret, h.driver.config, None)
            second = await ToastDriver.grant_token(http, h.secret, h.driver.config, None)
            assert first.access_token == second.access_token == h.secret["access_token"]  # the same live token
            assert first.expires_in is not None and 0 < first.expires_in <= 86400
            with pytest.raises(errors.RateLimitedError) as limited:
                await ToastDriver.grant_token(http, h.secret, h.driver.config, None)
        assert limited.value.retry_after is not None and limited.value.retry_after > timedelta(minutes=30)


async def test_the_token_serves_every_call_and_an_expiry_costs_one_login() -> None:
    async with toast() as h:
        state: ToastState = h.state  # type: ignore[assignment]
        state.logins_per_hour = 2
        guest = state.seed_guest({"firstName": "Ann", "lastName": "Lee", "email": "ann@example.com"})["guid"]
        for _ in range(30):
            await h.driver.get_record(CrmObject.CUSTOMER, guest)
        assert state.calls[f"POST {LOGIN_PATH}"] == 0
        state.tokens.expire_all()
        for _ in range(5):
            await h.driver.get_record(CrmObject.CUSTOMER, guest)
        assert state.calls[f"POST {LOGIN_PATH}"] == 1


async def test_every_call_names_the_restaurant_and_a_wrong_one_is_refused() -> None:
    async with toast() as h:
        sent: list[httpx.Request] = []

        async def keep(request: httpx.Request) -> None:
            sent.append(request)

        h.driver.client.event_hooks["request"].append(keep)
        assert (await h.driver.test_connection()).ok
        assert sent[-1].headers["Toast-Restaurant-External-ID"] == h.driver.config["restaurant_guid"]
        h.state.restaurant_guid = "00000000-0000-0000-0000-000000000001"  # type: ignore[attr-defined]
        check = await h.driver.test_connection()
        assert not check.ok and check.reason is not None and "auth_error" in check.reason


async def test_twenty_requests_a_second_then_a_429_with_toasts_headers() -> None:
    async with toast() as h:
        h.state.knobs.interval_limit, h.state.knobs.interval_seconds = 20, 60.0  # a window the test cannot outrun
        answers: list[httpx.Response] = []

        async def keep(response: httpx.Response) -> None:
            answers.append(response)

        h.driver.client.event_hooks["response"].append(keep)
        for _ in range(20):
            await h.driver.lookup_customer(email="nobody@example.com")
        assert answers[-1].headers["X-Toast-RateLimit-By"] == "GLOBAL"
        assert answers[-1].headers["X-Toast-RateLimit-Remaining"] == "0"
        limit = h.driver.rate_limit  # type: ignore[attr-defined]  # read back for the provider budget
        assert limit is not None and (limit.by, limit.remaining) == ("GLOBAL", 0) and limit.reset_epoch > 0
        with pytest.raises(errors.RateLimitedError) as limited:
            await h.driver.lookup_customer(email="nobody@example.com")
        assert limited.value.retry_after == timedelta(seconds=60) and answers[-1].status_code == 429
        assert int(answers[-1].headers["X-Toast-RateLimit-Reset"]) > 0


async def test_what_toast_does_not_offer_is_said_not_pretended() -> None:
    async with toast() as h:
        guest = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "4155550100", "ann@example.com"))
        with pytest.raises(errors.InvalidRequestError, match="unsupported: Toast's API has no update"):
            await h.driver.update_record(CrmObject.CUSTOMER, guest, {"lastName": "Kim"})
        with pytest.raises(errors.DeleteUnsupportedError):
            await h.driver.delete_record(CrmObject.CUSTOMER, guest)
        with pytest.raises(errors.InvalidRequestError, match="unsupported"):
            await h.driver.append_note(guest, None, "hello", batch_key="b")
        with pytest.raises(errors.InvalidRequestError):
            await h.driver.get_record(CrmObject.APPOINTMENT, guest)


async def test_create_finds_the_guest_the_email_already_names() -> None:
    async with toast() as h:
        known = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "4155550100", "ann@example.com"))
        result = await h.driver.create_record(CrmObject.CUSTOMER, {"firstName": "Ann", "email": "ann@example.com"},
                                              "k-1")
        assert not result.created and result.external_id == known and len(h.state.guests) == 1  # type: ignore[attr-defined]


async def test_a_reused_key_names_the_guest_that_holds_it() -> None:
    async with toast() as h:
        first = await h.driver.create_record(CrmObject.CUSTOMER, {"firstName": "Ann", "email": "a@x.example"}, "k")
        with pytest.raises(errors.ConflictError) as conflict:
            await h.driver.create_record(CrmObject.CUSTOMER, {"firstName": "Bo", "email": "b@x.example"}, "k")
        assert vars(conflict.value)["existing_id"] == first.external_id


def test_the_credential_form_checks_the_restaurant_guid() -> None:
    form = ToastCredentials(client_id="id", client_secret="s", restaurant_guid="E0B7BD9D-5E0F-4B28-9E8B-6A9C2B6D0A11")
    assert form.settings() == {"restaurant_guid": "e0b7bd9d-5e0f-4b28-9e8b-6a9c2b6d0a11", "environment": "production"}
    with pytest.raises(ValueError):
        ToastCredentials(client_id="id", client_secret="s", restaurant_guid="not-a-guid")
