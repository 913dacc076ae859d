"""Tekmetric specifics beyond the contract: hosts per environment, the client-credentials grant, the 429 with an
empty body, the shop scope, deletions since, repair orders and appointments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from drivers import errors
from drivers.base import CrmObject
from drivers.tekmetric import TekmetricCredentials, TekmetricDriver
from sandboxes.tekmetric import TekmetricState
from tests.unit.drivers.harness_vertical import tekmetric


def test_the_environment_picks_the_host_and_its_token_endpoint() -> None:
    assert TekmetricDriver.api_base_url({"environment": "sandbox"}) == "https://sandbox.tekmetric.com"
    assert TekmetricDriver.api_base_url({}) == "https://shop.tekmetric.com"
    assert TekmetricDriver.oauth_token_url({"environment": "sandbox"}) == (
        "https://sandbox.tekmetric.com/api/v1/oauth/token")
    form = TekmetricCredentials(client_id="id", client_secret="s", shop_id=7, environment="sandbox")
    assert form.settings() == {"shop_id": 7, "environment": "sandbox"}
    assert form.secret() == {"auth": "token", "client_id": "id", "client_secret": "s"}
    assert {limit.requests for limit in TekmetricDriver.rate_limits} == {600}
    assert {limit.requests for limit in TekmetricDriver.sandbox_rate_limits} == {300}


async def test_the_grant_is_client_credentials_with_basic_auth_and_the_same_token_comes_back() -> None:
    async with tekmetric() as h:
        seen: list[httpx.Request] = []
        async with httpx.AsyncClient(transport=h.transport, event_hooks={"request": [_keep(seen)]}) as http:
            first = await TekmetricDriver.grant_token(http, h.secret, h.driver.config, None)
            second = await TekmetricDriver.grant_token(http, h.secret, h.driver.config, None)
            assert seen[0].headers["Authorization"].startswith("Basic ")
            assert seen[0].content == b"grant_type=client_credentials"
            assert first.access_token == second.access_token and first.expires_in is None  # valid until revoked
            with pytest.raises(errors.AuthError) as refused:
                await TekmetricDriver.grant_token(http, h.secret | {"client_secret": "wrong"}, h.driver.config, None)
            assert refused.value.provider_code == "invalid_client"


def _keep(seen: list[httpx.Request]):  # type: ignore[no-untyped-def]
    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    return hook


async def test_a_real_429_with_an_empty_body_waits_out_the_minute() -> None:
    async with tekmetric() as h:
        h.state.knobs.interval_limit = 2
        await h.driver.lookup_customer(email="nobody@example.com")
        await h.driver.lookup_customer(email="nobody@example.com")
        with pytest.raises(errors.RateLimitedError) as limited:
            await h.driver.lookup_customer(email="nobody@example.com")
        assert limited.value.provider_code is None and limited.value.retry_after == timedelta(seconds=60)


async def test_a_shop_outside_the_tokens_scope_fails_the_connection_test() -> None:
    async with tekmetric() as h:
        h.driver.config["shop_id"] = 99
        check = await h.driver.test_connection()
        assert not check.ok and check.reason is not None and "insufficient_scope" in check.reason
        with pytest.raises(errors.AuthError):  # 403 insufficient_scope on the shop's data
            await h.driver.search_records(CrmObject.CUSTOMER, "ann")


async def test_deletions_since_come_from_the_separate_call_and_list_recent_omits_them() -> None:
    async with tekmetric() as h:
        state: TekmetricState = h.state  # type: ignore[assignment]
        since = datetime.now(UTC) - timedelta(minutes=1)
        kept = h.seed(CrmObject.CUSTOMER, h.customer_fields("Keep", "4155550100", "keep@example.com"))
        gone = h.seed(CrmObject.CUSTOMER, h.customer_fields("Gone", "4155550101", "gone@example.com"))
        state.customers[int(gone)]["deletedDate"] = state.customers[int(gone)]["updatedDate"]  # deleted in the UI
        assert [r.external_id for r in await h.driver.list_recent(CrmObject.CUSTOMER, since)] == [kept]
        assert await TekmetricDriver.ex_list_deleted(h.driver, CrmObject.CUSTOMER, since) == [gone]  # type: ignore[arg-type]
        with pytest.raises(errors.NotFoundError):
            await h.driver.get_record(CrmObject.CUSTOMER, gone)


async def test_repair_orders_are_patched_never_created_and_customers_never_deleted() -> None:
    async with tekmetric() as h:
        state: TekmetricState = h.state  # type: ignore[assignment]
        order = state.add_repair_order({"milesIn": 1200})
        await h.driver.update_record(CrmObject.CASE, str(order["id"]), {"keyTag": "K-9"})
        assert order["keyTag"] == "K-9" and order["milesIn"] == 1200
        with pytest.raises(errors.InvalidRequestError) as bad:
            await h.driver.update_record(CrmObject.CASE, str(order["id"]), {"totalSales": 1})
        assert bad.value.status_code == 400
        with pytest.raises(errors.InvalidRequestError, match="cannot create repair orders"):
            await h.driver.create_record(CrmObject.CASE, {"milesIn": 1}, "ro-1")
        customer = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "4155550100", "ann@example.com"))
        with pytest.raises(errors.DeleteUnsupportedError):
            await h.driver.delete_record(CrmObject.CUSTOMER, customer)
        with pytest.raises(errors.DeleteUnsupportedError):
            await h.driver.delete_record(CrmObject.CASE, str(order["id"]))


async def test_an_appointment_for_a_customer_is_booked_once_per_key() -> None:
    async with tekmetric() as h:
        state: TekmetricState = h.state  # type: ignore[assignment]
        customer = int(h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "4155550100", "ann@example.com")))
        fields = {"customerId": customer, "title": "Oil change", "startTime": "2026-12-01T15:00:00Z",
                  "endTime": "2026-12-01T16:00:00Z"}
        state.knobs.fail_after_next, state.knobs.fail_after_route = 1, "POST /api/v1/appointments"
        with pytest.raises(errors.UnavailableError):
            await h.driver.create_record(CrmObject.APPOINTMENT, fields, "call-3:book")
        retried = await h.driver.create_record(CrmObject.APPOINTMENT, fields, "call-3:book")
        assert not retried.created and len(state.appointments) == 1
        with pytest.raises(errors.ConflictError) as conflict:
            await h.driver.create_record(CrmObject.APPOINTMENT, fields | {"title": "Tyres"}, "call-3:book")
        assert vars(conflict.value)["existing_id"] == retried.external_id
        found = await h.driver.search_records(CrmObject.APPOINTMENT, "ann@example.com")
        assert [r.external_id for r in found] == [retried.external_id]
