"""Salesforce specifics: bound SOQL/SOSL values, external-id upsert, recycle bin, quota, tokens, hosts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from drivers import errors
from drivers.base import CrmObject
from drivers.salesforce import SalesforceDriver
from drivers.soql import soql_datetime, soql_quote, sosl_escape
from sandboxes.salesforce import SalesforceState
from tests.unit.drivers.harness import Harness
from tests.unit.drivers.harness import salesforce as salesforce_harness


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with salesforce_harness() as harness:
        yield harness


def _state(h: Harness) -> SalesforceState:
    assert isinstance(h.state, SalesforceState)
    return h.state


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        ("ann@example.com", "'ann@example.com'"),
        ("o'brien@example.com", "'o\\'brien@example.com'"),
        ("back\\slash", "'back\\\\slash'"),
        ('say "hi"\n', "'say \\\"hi\\\"\\n'"),
    ],
)
def test_soql_quote(raw: str, quoted: str) -> None:
    assert soql_quote(raw) == quoted


def test_sosl_escape_and_datetime_literal() -> None:
    assert sosl_escape("Lee-Smith (Ann)") == "Lee\\-Smith \\(Ann\\)"
    assert sosl_escape("a}b{c*") == "a\\}b\\{c\\*"
    assert soql_datetime(datetime(2024, 5, 1, 14, 0, 7, 999_000, tzinfo=UTC)) == "2024-05-01T14:00:07Z"


async def test_email_lookup_cannot_be_injected(h: Harness) -> None:
    h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "+1 415 555 0100", "ann@example.com"))
    attack = "x' OR Email != '"
    assert await h.driver.lookup_customer(email=attack) is None
    # The same text spliced in unescaped would have returned every contact: the sandbox parses for real.
    naive = f"SELECT Id FROM Contact WHERE Email = '{attack}'"
    response = await h.driver.client.get("/services/data/v62.0/query", params={"q": naive})
    assert response.status_code == 200 and response.json()["totalSize"] == 1


async def test_email_with_an_apostrophe_matches_exactly(h: Harness) -> None:
    wanted = h.seed(CrmObject.CUSTOMER, h.customer_fields("O'Brien", "+1 415 555 0100", "o'brien@example.com"))
    h.seed(CrmObject.CUSTOMER, h.customer_fields("Brien", "+1 415 555 0101", "obrien@example.com"))
    found = await h.driver.lookup_customer(email="O'Brien@example.com")
    assert found is not None and found.external_id == wanted


async def test_search_terms_cannot_break_out_of_sosl(h: Harness) -> None:
    h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee-Smith", "+1 415 555 0100", "ann@example.com"))
    assert await h.driver.search_records(CrmObject.CUSTOMER, "Lee} IN ALL FIELDS RETURNING Lead(Id") == []
    found = await h.driver.search_records(CrmObject.CUSTOMER, "lee-smith")
    assert [r.fields["LastName"] for r in found] == ["Lee-Smith"]
    naive = "FIND {Lee} IN ALL FIELDS RETURNING Lead(Id} RETURNING Contact(Id)"
    response = await h.driver.client.get("/services/data/v62.0/search", params={"q": naive})
    assert response.status_code == 400 and response.json()[0]["errorCode"] == "MALFORMED_SEARCH"


async def test_phone_lookup_uses_sosl_phone_fields(h: Harness) -> None:
    contact = h.seed(
        CrmObject.CUSTOMER, h.customer_fields("Lee", "", "ann@example.com") | {"MobilePhone": "415-555-0100"}
    )
    found = await h.driver.lookup_customer(phone="+14155550100")
    assert found is not None and found.external_id == contact and found.phone == "415-555-0100"
    assert h.state.calls["GET /services/data/{version}/search"] == 1
    assert h.state.calls["GET /services/data/{version}/query"] == 0


async def test_upsert_uses_the_external_id_path(h: Harness) -> None:
    created = await h.driver.create_record(CrmObject.LEAD, h.create_fields(CrmObject.LEAD, 1), "conv-7:lead")
    row = _state(h).records["Lead"][created.external_id]
    assert row["CrmSorKey__c"] == "conv-7:lead" and row["CrmSorFingerprint__c"]
    assert h.state.calls["PATCH /services/data/{version}/sobjects/{sobject}/{field}/{value}"] == 1
    assert h.state.calls["POST /services/data/{version}/sobjects/{sobject}"] == 0


async def test_keys_unsafe_in_a_url_path_are_hashed_consistently(h: Harness) -> None:
    fields = h.create_fields(CrmObject.LEAD, 1)
    first = await h.driver.create_record(CrmObject.LEAD, fields, "tenant/7 conv?lead")
    again = await h.driver.create_record(CrmObject.LEAD, fields, "tenant/7 conv?lead")
    stored = _state(h).records["Lead"][first.external_id]["CrmSorKey__c"]
    assert first.created and not again.created and again.external_id == first.external_id
    assert stored.startswith("sha256-") and "/" not in stored


async def test_a_key_matching_several_records_is_a_conflict(h: Harness) -> None:
    for n in range(2):
        h.seed(CrmObject.LEAD, h.create_fields(CrmObject.LEAD, n) | {"CrmSorKey__c": "dup"})
    with pytest.raises(errors.ConflictError) as conflict:
        await h.driver.create_record(CrmObject.LEAD, h.create_fields(CrmObject.LEAD, 1), "dup")
    assert conflict.value.status_code == 300


async def test_delete_goes_to_the_recycle_bin_even_when_hard_is_asked(h: Harness) -> None:
    contact = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "+1 415 555 0100", "ann@example.com"))
    result = await h.driver.delete_record(CrmObject.CUSTOMER, contact, hard=True)
    assert result.deleted and not result.hard_deleted
    assert _state(h).records["Contact"][contact]["IsDeleted"] is True  # still there for undelete
    with pytest.raises(errors.NotFoundError) as gone:
        await h.driver.get_record(CrmObject.CUSTOMER, contact)
    assert gone.value.provider_code == "ENTITY_IS_DELETED"


async def test_list_recent_follows_next_records_url(h: Harness) -> None:
    h.state.knobs.page_size_cap = 4
    for n in range(10):
        h.seed(CrmObject.LEAD, h.create_fields(CrmObject.LEAD, n))
    assert len(await h.driver.list_recent(CrmObject.LEAD, datetime(2000, 1, 1, tzinfo=UTC))) == 10
    assert h.state.calls["GET /services/data/{version}/query"] == 1
    assert h.state.calls["GET /services/data/{version}/query/{locator}"] == 2


async def test_org_quota_exhaustion_is_rate_limited(h: Harness) -> None:
    lead = h.seed(CrmObject.LEAD, h.create_fields(CrmObject.LEAD, 1))
    _state(h).api_usage = _state(h).api_usage_limit
    with pytest.raises(errors.RateLimitedError) as limited:
        await h.driver.get_record(CrmObject.LEAD, lead)
    assert limited.value.status_code == 403 and limited.value.retry_after == timedelta(seconds=300)
    driver = SalesforceDriver(h.driver.client, h.driver.config | {"limit_retry_after_seconds": 60})
    with pytest.raises(errors.RateLimitedError) as limited:
        await driver.get_record(CrmObject.LEAD, lead)
    assert limited.value.retry_after == timedelta(seconds=60)


async def test_every_response_reports_api_usage(h: Harness) -> None:
    first = await h.driver.client.get("/services/data/v62.0/limits")
    second = await h.driver.client.get("/services/data/v62.0/limits")
    assert first.headers["Sforce-Limit-Info"] == "api-usage=1/100000"
    assert second.headers["Sforce-Limit-Info"] == "api-usage=2/100000"


async def test_invalid_session_refreshes_without_expires_in(h: Harness) -> None:
    token = await h.driver.client.post(
        "/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": h.secret["refresh_token"],
            "client_id": h.state.tokens.client_id,
            "client_secret": h.state.tokens.client_secret,
        },
    )
    body = token.json()
    assert "expires_in" not in body and "refresh_token" not in body
    assert body["instance_url"] == _state(h).instance_url and body["token_type"] == "Bearer"
    h.state.tokens.expire_all()
    assert (await h.driver.test_connection()).ok
    assert h.source.instance_url == _state(h).instance_url


async def test_describe_marks_required_and_read_only_fields(h: Harness) -> None:
    fields = {f.name: f for f in await h.driver.describe_schema(CrmObject.LEAD)}
    assert fields["LastName"].required and fields["Company"].required
    assert not fields["Status"].required  # defaulted on create
    assert fields["Name"].read_only and fields["SystemModstamp"].read_only and not fields["Email"].read_only


def test_hosts_and_versions_come_from_config() -> None:
    with pytest.raises(errors.InvalidRequestError):
        SalesforceDriver.api_base_url({})
    assert SalesforceDriver.api_base_url({"instance_url": "https://acme.my.salesforce.com/"}) == (
        "https://acme.my.salesforce.com"
    )
    assert SalesforceDriver.oauth_token_url({}) == "https://login.salesforce.com/services/oauth2/token"
    assert SalesforceDriver.oauth_token_url({"is_sandbox": True}) == "https://test.salesforce.com/services/oauth2/token"


async def test_api_version_is_configurable() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(base_url="https://acme.my.salesforce.com", transport=httpx.MockTransport(answer)) as c:
        assert (await SalesforceDriver(c, {"api_version": "63.0"}).test_connection()).ok
    assert seen == ["/services/data/v63.0"]
