"""HubSpot specifics: GDPR vs archive delete, lead lifecycle, note associations, rate-limit headers, paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from drivers import errors
from drivers.auth import BearerAuth, OAuth2Auth, OAuthTokenSource, TokenSet
from drivers.base import CreateResult, CrmObject
from drivers.hubspot import HubSpotDriver
from drivers.idempotency import request_fingerprint
from sandboxes.hubspot import HubSpotState, create_app
from tests.unit.drivers.harness import Harness
from tests.unit.drivers.harness import hubspot as hubspot_harness


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with hubspot_harness() as harness:
        yield harness


def _state(h: Harness) -> HubSpotState:
    assert isinstance(h.state, HubSpotState)
    return h.state


async def test_hard_delete_of_a_contact_is_gdpr_delete(h: Harness) -> None:
    contact = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "+1 415 555 0100", "ann@example.com"))
    assert (await h.driver.delete_record(CrmObject.CUSTOMER, contact, hard=True)).hard_deleted
    assert contact not in _state(h).records["contacts"]  # gone, not archived
    assert h.state.calls["POST /crm/v3/objects/contacts/gdpr-delete"] == 1
    assert h.state.calls["DELETE /crm/v3/objects/{object_type}/{record_id}"] == 0


async def test_soft_delete_archives_and_deals_cannot_be_hard_deleted(h: Harness) -> None:
    contact = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "+1 415 555 0100", "ann@example.com"))
    deal = h.seed(CrmObject.DEAL, h.create_fields(CrmObject.DEAL, 1))
    assert not (await h.driver.delete_record(CrmObject.CUSTOMER, contact)).hard_deleted
    assert _state(h).records["contacts"][contact].archived  # restorable for 90 days
    result = await h.driver.delete_record(CrmObject.DEAL, deal, hard=True)
    assert result.deleted and not result.hard_deleted and _state(h).records["deals"][deal].archived


async def test_lead_is_a_contact_in_the_lead_stage(h: Harness) -> None:
    h.seed(CrmObject.CUSTOMER, {"firstname": "Cus", "lastname": "Tomer", "lifecyclestage": "customer"})
    lead = await h.driver.create_record(CrmObject.LEAD, {"firstname": "Lou", "lastname": "Tomer"}, "lead-1")
    assert _state(h).records["contacts"][lead.external_id].properties["lifecyclestage"] == "lead"
    assert [r.external_id for r in await h.driver.search_records(CrmObject.LEAD, "tomer")] == [lead.external_id]
    assert len(await h.driver.search_records(CrmObject.CUSTOMER, "tomer")) == 2


async def test_create_stores_key_and_fingerprint_on_the_record(h: Harness) -> None:
    fields = h.create_fields(CrmObject.DEAL, 1)
    created = await h.driver.create_record(CrmObject.DEAL, fields, "conv-3:deal")
    props = _state(h).records["deals"][created.external_id].properties
    assert props["crm_sor_idempotency_key"] == "conv-3:deal"
    assert props["crm_sor_fingerprint"] == request_fingerprint(CrmObject.DEAL, fields)


async def test_concurrent_create_with_the_same_key_replays_the_winner(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another worker created the record between our read and our create: the unique property refuses ours.
    fields = h.create_fields(CrmObject.DEAL, 1)
    stored = {"crm_sor_idempotency_key": "race", "crm_sor_fingerprint": request_fingerprint("deal", fields)}
    winner = h.seed(CrmObject.DEAL, fields | stored)
    original = HubSpotDriver._replay
    reads = 0

    async def first_read_misses(
        self: HubSpotDriver, object_type: str, key: str, fingerprint: str
    ) -> CreateResult | None:
        nonlocal reads
        reads += 1
        return None if reads == 1 else await original(self, object_type, key, fingerprint)

    monkeypatch.setattr(HubSpotDriver, "_replay", first_read_misses)
    result = await h.driver.create_record(CrmObject.DEAL, fields, "race")
    assert result.external_id == winner and not result.created
    assert h.state.calls["POST /crm/v3/objects/{object_type}"] == 1  # the refused create


async def test_transcript_note_is_associated_with_the_contact(h: Harness) -> None:
    contact = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "+1 415 555 0100", "ann@example.com"))
    note = await h.driver.append_note(contact, None, "Agent: hello", batch_key="conv-1:1")
    record = _state(h).records["notes"][note.external_id]
    assert record.associations == [("contacts", contact, 202)]
    assert record.properties["hs_timestamp"]


async def test_phone_lookup_checks_the_country_code(h: Harness) -> None:
    # Same national digits, different country: the searchable field matches, the E.164 check must not.
    h.seed(CrmObject.CUSTOMER, h.customer_fields("Brit", "+44 20 7946 0958", "brit@example.com"))
    assert await h.driver.lookup_customer(phone="+1 207 946 0958") is None
    found = await h.driver.lookup_customer(phone="+44 (0)20 7946 0958")
    assert found is not None and found.email == "brit@example.com"


async def test_429_without_retry_after_uses_the_interval_header(h: Harness) -> None:
    deal = h.seed(CrmObject.DEAL, h.create_fields(CrmObject.DEAL, 1))
    h.state.knobs.interval_limit = 2
    await h.driver.get_record(CrmObject.DEAL, deal)
    await h.driver.get_record(CrmObject.DEAL, deal)
    with pytest.raises(errors.RateLimitedError) as limited:
        await h.driver.get_record(CrmObject.DEAL, deal)
    assert limited.value.retry_after == timedelta(seconds=10) and limited.value.provider_code == "RATE_LIMIT"


async def test_retry_after_http_date_form(h: Harness) -> None:
    deal = h.seed(CrmObject.DEAL, h.create_fields(CrmObject.DEAL, 1))
    h.state.knobs.limit_next = 1
    h.state.knobs.retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    with pytest.raises(errors.RateLimitedError) as limited:
        await h.driver.get_record(CrmObject.DEAL, deal)
    assert limited.value.retry_after is not None
    assert timedelta(seconds=60) < limited.value.retry_after <= timedelta(seconds=120)


async def test_rate_limit_headers_count_down() -> None:
    app = create_app()
    state: HubSpotState = app.state.sandbox
    state.knobs.interval_limit = 5
    token = state.tokens.issue_access()
    async with httpx.AsyncClient(base_url="https://api.hubapi.com", transport=httpx.ASGITransport(app=app)) as c:
        seen = [
            (await c.get("/crm/v3/objects/contacts", headers={"Authorization": f"Bearer {token}"})).headers
            for _ in range(2)
        ]
    assert [s["X-HubSpot-RateLimit-Remaining"] for s in seen] == ["4", "3"]
    assert seen[0]["X-HubSpot-RateLimit-Max"] == "5"


async def test_list_recent_pages_at_200_and_never_asks_for_more(h: Harness) -> None:
    for n in range(450):
        h.seed(CrmObject.DEAL, h.create_fields(CrmObject.DEAL, n))
    records = await h.driver.list_recent(CrmObject.DEAL, datetime(2000, 1, 1, tzinfo=UTC), limit=1000)
    assert len(records) == 450 and len({r.external_id for r in records}) == 450
    assert h.state.calls["POST /crm/v3/objects/{object_type}/search"] == 3  # 200 + 200 + 50


async def test_expiry_is_refreshed_ahead_of_the_deadline_without_a_401() -> None:
    app = create_app()
    state: HubSpotState = app.state.sandbox
    now = [1000.0]
    creds = state.tokens.credentials()
    rotated: list[TokenSet] = []

    async def persist(tokens: TokenSet) -> None:
        rotated.append(tokens)

    state.tokens.rotate_refresh_tokens = True
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport) as token_http:
        source = OAuthTokenSource(
            token_url="https://api.hubapi.com/oauth/v3/token",
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            refresh_token=creds.refresh_token,
            access_token=creds.access_token,
            expires_in=1800,
            http=token_http,
            on_rotate=persist,
            clock=lambda: now[0],
        )
        async with httpx.AsyncClient(
            base_url="https://api.hubapi.com", transport=transport, auth=OAuth2Auth(source)
        ) as client:
            driver = HubSpotDriver(client)
            assert (await driver.test_connection()).ok
            now[0] += 1800  # HubSpot says a 401 is no expiry signal: the source must know the deadline
            assert (await driver.test_connection()).ok
    assert state.calls["POST /oauth/v3/token"] == 1 and state.calls["GET /crm/v3/objects/{object_type}"] == 2
    assert len(rotated) == 1 and rotated[0].rotated_refresh_token and rotated[0].expires_in == 1800
    assert source.refresh_token == rotated[0].refresh_token != creds.refresh_token


async def test_private_app_token_works_without_refresh() -> None:
    app = create_app()
    token = app.state.sandbox.tokens.issue_access()
    async with httpx.AsyncClient(
        base_url=HubSpotDriver.base_url, transport=httpx.ASGITransport(app=app), auth=BearerAuth(token)
    ) as client:
        assert (await HubSpotDriver(client).test_connection()).ok


async def test_refresh_goes_to_the_v3_token_endpoint_that_outlives_v1() -> None:
    app = create_app()
    state: HubSpotState = app.state.sandbox
    state.v1_oauth_retired = True  # HubSpot after 2027-02-16
    creds = state.tokens.credentials()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        tokens = await HubSpotDriver.grant_token(http, {"auth": "oauth2", "refresh_token": creds.refresh_token}, {},
                                                 (creds.client_id, creds.client_secret))
        retired = await http.post("https://api.hubapi.com/oauth/v1/token", data={
            "grant_type": "refresh_token", "refresh_token": creds.refresh_token, "client_id": creds.client_id,
            "client_secret": creds.client_secret})
    assert HubSpotDriver.oauth_token_url({}) == "https://api.hubapi.com/oauth/v3/token"
    assert tokens.access_token and tokens.expires_in == 1800
    assert state.calls["POST /oauth/v3/token"] == 1 and retired.status_code == 404


def test_hubspot_time_zones_are_read_in_hubspots_spelling() -> None:
    driver = HubSpotDriver(httpx.AsyncClient())
    assert driver.time_zone_of({"hs_timezone": "america_slash_new_york"}) == "America/New_York"
    assert driver.time_zone_of({"hs_timezone": ""}) is None and driver.time_zone_of({}) is None
    assert driver.phone_of(CrmObject.CUSTOMER, {"mobilephone": "+1 415 555 0100"}) == "+1 415 555 0100"
