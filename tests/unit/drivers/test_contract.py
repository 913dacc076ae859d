"""The driver contract, run against every registered driver and its wire sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from drivers import errors
from drivers.base import CrmObject, MatchItem, UpsertItem, batch_marker
from drivers.registry import DRIVERS, PartnershipOnlyError, get_driver_class
from tests.unit.drivers.harness import HARNESSES, REFRESHING, Harness

# Each harness names its probe object (`h.probe`: DEAL for HubSpot and Salesforce, the customer for providers
# without deals); the error-path tests only need some readable record.


@pytest.fixture(params=sorted(HARNESSES))
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with HARNESSES[request.param]() as harness:
        yield harness


@pytest.fixture(params=sorted(s for s in HARNESSES if s in REFRESHING))
async def h_oauth(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A driver whose credential is refreshed through a token grant."""
    async with HARNESSES[request.param]() as harness:
        yield harness


def test_every_registered_driver_has_a_harness() -> None:
    # A configurable driver has one harness per configuration: "<slug>:<variant>".
    assert {name.partition(":")[0] for name in HARNESSES} == set(DRIVERS)


async def test_driver_declares_its_contract(h: Harness) -> None:
    cls = type(h.driver)
    assert get_driver_class(cls.slug) is cls
    assert {CrmObject.CUSTOMER, h.probe} <= cls.supported_objects
    for key in cls.default_field_catalog:
        assert CrmObject(key.split(".")[0]) in cls.supported_objects, key
    assert "customer.phone" in cls.default_field_catalog
    # A provider with no home for notes (Toast) declares no NOTE object and answers append_note with a 4xx.
    assert (CrmObject.NOTE in cls.supported_objects) is ("note.body" in cls.default_field_catalog)
    assert cls.deletable_objects is None or h.deletable is None or h.deletable in cls.deletable_objects


def test_opentable_is_partnership_only_and_points_to_custom_webhook() -> None:
    with pytest.raises(PartnershipOnlyError, match="partnership-only.*custom_webhook"):
        get_driver_class("opentable")


async def test_connection_ok(h: Harness) -> None:
    check = await h.driver.test_connection()
    assert check.ok and check.reason is None


async def test_connection_reports_a_revoked_grant(h: Harness) -> None:
    h.state.tokens.expire_all()
    h.state.tokens.revoke_refresh()
    check = await h.driver.test_connection()
    assert not check.ok and check.reason is not None and "auth_error" in check.reason


@pytest.mark.parametrize("dialled", ["+1 415 555 0100", "4155550100", "(415) 555-0100", "+14155550100"])
async def test_lookup_by_a_differently_formatted_phone(h: Harness, dialled: str) -> None:
    h.seed(CrmObject.CUSTOMER, h.customer_fields("Other", "+1 212 555 0199", "other@example.com"))
    wanted = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "415.555.0100", "ann@example.com"))
    found = await h.driver.lookup_customer(phone=dialled)
    assert found is not None and found.external_id == wanted
    assert found.email == "ann@example.com" and found.name == "Ann Lee"


async def test_lookup_prefers_phone_then_email_then_id(h: Harness) -> None:
    by_phone = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "+1 415 555 0100", "ann@example.com"))
    by_email = h.seed(CrmObject.CUSTOMER, h.customer_fields("Kim", "+1 212 555 0100", "kim@example.com"))
    assert (await h.driver.lookup_customer(phone="4155550100", email="kim@example.com")).external_id == by_phone  # type: ignore[union-attr]
    found = await h.driver.lookup_customer(phone="+1 303 555 0100", email="KIM@example.com")
    assert found is not None and found.external_id == by_email
    found = await h.driver.lookup_customer(email="nobody@example.com", external_id=by_email)
    assert found is not None and found.external_id == by_email


async def test_lookup_misses_return_none(h: Harness) -> None:
    h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "+1 415 555 0100", "ann@example.com"))
    assert await h.driver.lookup_customer(phone="+1 415 555 0199") is None
    assert await h.driver.lookup_customer(phone="not a phone") is None
    assert await h.driver.lookup_customer(email="nobody@example.com") is None
    if h.deletable is not None:
        missing = await h.driver.create_record(h.deletable, h.create_fields(h.deletable, 1), "gone")
        await h.driver.delete_record(h.deletable, missing.external_id)
        assert await h.driver.lookup_customer(external_id=missing.external_id) is None
    assert await h.driver.lookup_customer(external_id="9" * 9) is None


async def test_match_customers_matches_a_batch_as_lookup_does(h: Harness) -> None:
    ann = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "415.555.0100", "ann@example.com"))
    kim = h.seed(CrmObject.CUSTOMER, h.customer_fields("Kim", "+1 212 555 0100", "kim@example.com"))
    items = [MatchItem("dialled", phone="(415) 555-0100"), MatchItem("e164", phone="+14155550100"),
             MatchItem("email", phone="+1 303 555 0100", email="KIM@example.com"),
             MatchItem("both", phone="+1 212 555 0100", email="kim@example.com"),
             MatchItem("new", phone="+1 415 555 0199", email="nobody@example.com"),
             MatchItem("unparsable", phone="not a phone"), MatchItem("nothing")]
    found = await h.driver.match_customers(items)
    assert found == {"dialled": ann, "e164": ann, "email": kim, "both": kim, "new": None, "unparsable": None,
                     "nothing": None}
    for item in items[:-1]:  # the same answers, one by one
        single = await h.driver.lookup_customer(phone=item.phone, email=item.email)
        assert (single.external_id if single else None) == found[item.key], item.key


async def test_match_customers_keeps_an_index_hint_only_while_it_carries_the_phone(h: Harness) -> None:
    ann = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "+1 415 555 0100", "ann@example.com"))
    kim = h.seed(CrmObject.CUSTOMER, h.customer_fields("Kim", "+1 212 555 0100", "kim@example.com"))
    found = await h.driver.match_customers([MatchItem("right", phone="4155550100", known_id=ann),
                                            MatchItem("stale", phone="4155550100", known_id=kim)])
    assert found == {"right": ann, "stale": ann}  # a stale hint is not believed: the phone is matched instead


async def test_lookup_needs_an_identifier(h: Harness) -> None:
    with pytest.raises(errors.InvalidRequestError):
        await h.driver.lookup_customer()


async def test_search_records_finds_by_text(h: Harness) -> None:
    for n in range(3):
        h.seed(h.probe, h.create_fields(h.probe, n))
    target = h.seed(h.probe, h.create_fields(h.probe, 77) | {h.text_field[h.probe]: "Zebra Crossing"})
    found = await h.driver.search_records(h.probe, "zebra", limit=5)
    assert [r.external_id for r in found] == [target]
    assert found[0].object is h.probe and found[0].fields[h.text_field[h.probe]] == "Zebra Crossing"


@pytest.mark.parametrize("obj", [CrmObject.CUSTOMER, CrmObject.LEAD, CrmObject.DEAL, CrmObject.CASE])
async def test_create_then_get(h: Harness, obj: CrmObject) -> None:
    if obj not in h.creatable or obj not in type(h.driver).supported_objects:  # a clear 4xx, not faked
        with pytest.raises(errors.InvalidRequestError):
            await h.driver.create_record(obj, {"name": "x"}, f"create-{obj}")
        return
    fields = h.create_fields(obj, 1)
    result = await h.driver.create_record(obj, fields, f"create-{obj}")
    assert result.created
    if h.record_urls:
        assert result.record_url and result.external_id in result.record_url
    record = await h.driver.get_record(obj, result.external_id)
    for name, value in fields.items():
        assert str(record.fields[name]) == str(value)


async def test_idempotent_create_survives_a_lost_response(h: Harness) -> None:
    fields = h.create_fields(h.keyed, 1)
    h.state.knobs.fail_after_next, h.state.knobs.fail_after_route = 1, h.create_route
    with pytest.raises(errors.UnavailableError) as lost:
        await h.driver.create_record(h.keyed, fields, "conv-1:lead")
    assert lost.value.retryable
    assert h.records_with_key(h.keyed, "conv-1:lead") == 1  # the provider did create it

    retried = await h.driver.create_record(h.keyed, fields, "conv-1:lead")
    again = await h.driver.create_record(h.keyed, dict(reversed(fields.items())), "conv-1:lead")
    assert not retried.created and again == retried
    assert h.records_with_key(h.keyed, "conv-1:lead") == 1


async def test_idempotent_create_after_a_crash(h: Harness) -> None:
    # The process that sent the create died before it heard back: a new driver (nothing kept in memory) retries.
    fields = h.create_fields(h.keyed, 3)
    h.state.knobs.fail_after_next, h.state.knobs.fail_after_route = 1, h.create_route
    with pytest.raises(errors.UnavailableError):
        await h.driver.create_record(h.keyed, fields, "conv-3:lead")
    restarted = type(h.driver)(h.driver.client, dict(h.driver.config))
    retried = await restarted.create_record(h.keyed, fields, "conv-3:lead")
    assert not retried.created and h.records_with_key(h.keyed, "conv-3:lead") == 1
    assert (await restarted.get_record(h.keyed, retried.external_id)).external_id == retried.external_id


async def test_same_key_with_different_fields_is_a_conflict(h: Harness) -> None:
    first = await h.driver.create_record(h.keyed, h.create_fields(h.keyed, 1), "k")
    with pytest.raises(errors.ConflictError) as conflict:
        await h.driver.create_record(h.keyed, h.create_fields(h.keyed, 2), "k")
    assert not conflict.value.retryable
    assert conflict.value.existing_id == first.external_id  # so the mirror can write its newer version there
    assert (await h.driver.get_record(h.keyed, first.external_id)).fields == (
        await h.driver.get_record(h.keyed, first.external_id)
    ).fields
    assert h.records_with_key(h.keyed, "k") == 1


@pytest.mark.parametrize("obj", [CrmObject.CUSTOMER, CrmObject.DEAL, CrmObject.CASE])
async def test_partial_update_leaves_other_fields_alone(h: Harness, obj: CrmObject) -> None:
    if obj not in h.update_field:  # not an object of the provider, or one it cannot update: a clear 4xx
        with pytest.raises(errors.InvalidRequestError):
            await h.driver.update_record(obj, "1", {"name": "High"})
        return
    fields = h.create_fields(obj, 1)
    if obj in h.creatable:
        external_id = (await h.driver.create_record(obj, fields, f"upd-{obj}")).external_id
    else:  # written in the provider's own UI (Tekmetric repair orders): patched through the API
        external_id = h.seed(obj, fields)
    name = h.update_field[obj]
    assert name not in fields
    await h.driver.update_record(obj, external_id, {name: "High"})
    record = await h.driver.get_record(obj, external_id)
    assert record.fields[name] == "High"
    for other, value in fields.items():
        assert str(record.fields[other]) == str(value)


async def test_list_recent_follows_pages(h: Harness) -> None:
    h.cap_pages(4)
    since = datetime.now(UTC) - timedelta(minutes=1)
    seeded = [h.seed(h.probe, h.create_fields(h.probe, n)) for n in range(10)]
    before = sum(h.state.calls.values())
    records = await h.driver.list_recent(h.probe, since, limit=100)
    assert [r.external_id for r in records] == seeded  # oldest first, nothing lost between pages
    assert sum(h.state.calls.values()) - before == 3  # 4 + 4 + 2
    stamps = [r.updated_at for r in records]
    assert all(s is not None for s in stamps) and stamps == sorted(stamps)  # type: ignore[type-var]


async def test_list_recent_stops_at_limit_and_honours_since(h: Harness) -> None:
    h.cap_pages(4)
    seeded = [h.seed(h.probe, h.create_fields(h.probe, n)) for n in range(10)]
    assert [
        r.external_id for r in await h.driver.list_recent(h.probe, datetime(2000, 1, 1, tzinfo=UTC), 6)
    ] == seeded[:6]
    assert await h.driver.list_recent(h.probe, datetime.now(UTC) + timedelta(days=1), 10) == []


async def test_expired_token_is_refreshed_exactly_once(h_oauth: Harness) -> None:
    h = h_oauth
    record_id = h.seed(h.probe, h.create_fields(h.probe, 1))
    h.state.tokens.expire_all()
    assert (await h.driver.get_record(h.probe, record_id)).external_id == record_id
    assert (await h.driver.get_record(h.probe, record_id)).external_id == record_id
    assert h.token_calls == 1


@pytest.mark.parametrize("rotate", [False, True])
async def test_the_refresh_grant_survives_repeated_expiry(h_oauth: Harness, rotate: bool) -> None:
    h = h_oauth
    # Whether or not the provider rotates refresh tokens, what we keep must still work next time.
    record_id = h.seed(h.probe, h.create_fields(h.probe, 1))
    h.state.tokens.rotate_refresh_tokens = rotate
    for refreshes in (1, 2, 3):
        h.state.tokens.expire_all()
        assert (await h.driver.get_record(h.probe, record_id)).external_id == record_id
        assert h.token_calls == refreshes


async def test_failed_refresh_is_an_auth_error(h_oauth: Harness) -> None:
    h = h_oauth
    record_id = h.seed(h.probe, h.create_fields(h.probe, 1))
    h.state.tokens.expire_all()
    h.state.tokens.revoke_refresh()
    with pytest.raises(errors.AuthError) as failure:
        await h.driver.get_record(h.probe, record_id)
    assert not failure.value.retryable and failure.value.provider_code == h.refused_code
    assert h.token_calls == 1


async def test_rate_limit_is_retryable_with_retry_after(h: Harness) -> None:
    record_id = h.seed(h.probe, h.create_fields(h.probe, 1))
    h.state.knobs.limit_next = 1
    with pytest.raises(errors.RateLimitedError) as limited:
        await h.driver.get_record(h.probe, record_id)
    assert limited.value.retryable and limited.value.retry_after is not None
    assert limited.value.retry_after > timedelta(0)
    h.state.knobs.limit_next, h.state.knobs.retry_after = 1, "7"
    with pytest.raises(errors.RateLimitedError) as limited:
        await h.driver.get_record(h.probe, record_id)
    assert limited.value.retry_after == timedelta(seconds=7)
    assert (await h.driver.get_record(h.probe, record_id)).external_id == record_id


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_unavailable(h: Harness, status: int) -> None:
    record_id = h.seed(h.probe, h.create_fields(h.probe, 1))
    h.state.knobs.fail_next, h.state.knobs.fail_status = 1, status
    with pytest.raises(errors.UnavailableError) as failure:
        await h.driver.get_record(h.probe, record_id)
    assert failure.value.retryable and failure.value.status_code == status
    assert (await h.driver.get_record(h.probe, record_id)).external_id == record_id


async def test_timeouts_are_unavailable(h: Harness) -> None:
    h.transport.timeout_next = 1
    with pytest.raises(errors.UnavailableError) as failure:
        await h.driver.list_recent(h.probe, datetime(2000, 1, 1, tzinfo=UTC))
    assert failure.value.retryable and failure.value.status_code is None
    assert "ReadTimeout" in str(failure.value)


async def test_delete_semantics_are_as_declared(h: Harness) -> None:
    declared = type(h.driver).deletable_objects
    if h.deletable is not None:
        deal = await h.driver.create_record(h.deletable, h.create_fields(h.deletable, 1), "del-deal")
        soft = await h.driver.delete_record(h.deletable, deal.external_id)
        assert soft.deleted is True and soft.hard_deleted is False
        # A soft delete names the provider's purge delay when it has one (HubSpot 90 days, Salesforce 15…).
        assert soft.purge_delay_days is None or soft.purge_delay_days > 0
        with pytest.raises(errors.NotFoundError):
            await h.driver.get_record(h.deletable, deal.external_id)
        with pytest.raises(errors.NotFoundError):
            await h.driver.delete_record(h.deletable, deal.external_id)

    customer = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "+1 415 555 0100", "ann@example.com"))
    if declared is not None and CrmObject.CUSTOMER not in declared:
        # No delete at the provider: erasure must record a divergence, and the record is untouched.
        with pytest.raises(errors.DeleteUnsupportedError) as unsupported:
            await h.driver.delete_record(CrmObject.CUSTOMER, customer, hard=True)
        assert not unsupported.value.retryable
        found = await h.driver.lookup_customer(email="ann@example.com")
        assert found is not None and found.external_id == customer
        return
    result = await h.driver.delete_record(CrmObject.CUSTOMER, customer, hard=True)
    assert result.deleted and result.hard_deleted is type(h.driver).hard_delete_supported
    assert await h.driver.lookup_customer(email="ann@example.com") is None


async def test_describe_schema_lists_the_catalog_fields(h: Harness) -> None:
    fields = {f.name: f for f in await h.driver.describe_schema(CrmObject.CUSTOMER)}
    catalog = type(h.driver).default_field_catalog
    assert {v for k, v in catalog.items() if k.startswith("customer.")} <= set(fields)
    assert not fields[catalog["customer.phone"]].read_only


async def test_transcript_note_is_one_record_appended_in_batches(h: Harness) -> None:
    if CrmObject.NOTE not in type(h.driver).supported_objects:  # no home for notes: said clearly, not faked
        customer = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "+1 415 555 0100", "ann@example.com"))
        with pytest.raises(errors.InvalidRequestError, match="supported"):
            await h.driver.append_note(customer, None, "Agent: hello", batch_key="conv-9:1")
        return
    customer = h.seed(CrmObject.CUSTOMER, h.customer_fields("Lee", "+1 415 555 0100", "ann@example.com"))
    note = await h.driver.append_note(customer, None, "Agent: hello", batch_key="conv-9:1")
    retried = await h.driver.append_note(customer, None, "Agent: hello", batch_key="conv-9:1")
    assert note.created and not retried.created and retried.external_id == note.external_id
    await h.driver.append_note(customer, note.external_id, "Caller: hi\nAgent: how can I help?", batch_key="conv-9:3")
    await h.driver.append_note(customer, note.external_id, "Summary: wants a viewing", batch_key="conv-9:summary")
    # The batch is retried after something else was appended behind it (a flush that failed midway):
    # it is found by its marker, not by being the note's tail, and is not written twice.
    await h.driver.append_note(customer, note.external_id, "Caller: hi\nAgent: how can I help?", batch_key="conv-9:3")
    await h.driver.append_note(customer, note.external_id, "Summary: wants a viewing", batch_key="conv-9:summary")
    body = (await h.driver.get_record(CrmObject.NOTE, note.external_id)).fields
    text = body[type(h.driver).default_field_catalog["note.body"]]
    assert text == "\n".join(["Agent: hello", batch_marker("conv-9:1"),
                              "Caller: hi\nAgent: how can I help?", batch_marker("conv-9:3"),
                              "Summary: wants a viewing", batch_marker("conv-9:summary")])


async def test_unsupported_object_is_an_invalid_request(h: Harness) -> None:
    with pytest.raises(errors.InvalidRequestError):
        await h.driver.get_record("widget", "1")  # type: ignore[arg-type]


async def test_errors_never_carry_customer_content(h: Harness) -> None:
    created = await h.driver.create_record(h.probe, h.create_fields(h.probe, 1), "pii")
    with pytest.raises(errors.InvalidRequestError) as bad:
        if h.probe in h.update_field:
            await h.driver.update_record(h.probe, created.external_id, {"secret_field_ann": "ann@example.com"})
        else:  # the provider cannot update it: the refused write is a create
            await h.driver.create_record(h.probe, {"secret_field_ann": "ann@example.com"}, "pii-2")
    assert bad.value.status_code == 400 and bad.value.provider_code
    # The value never appears; the field's *name* may (it says which field the CRM refused), and nothing else.
    assert "ann@example.com" not in str(bad.value) and "example" not in str(bad.value)
    assert set(bad.value.fields) <= {"secret_field_ann"}
    assert "secret" not in str(bad.value).replace("secret_field_ann", "")


async def test_fifty_concurrent_callers_after_expiry_make_one_token_call(h_oauth: Harness) -> None:
    h = h_oauth
    record_id = h.seed(h.probe, h.create_fields(h.probe, 1))
    h.state.tokens.expire_all()
    results = await asyncio.gather(*(h.driver.get_record(h.probe, record_id) for _ in range(50)))
    assert {r.external_id for r in results} == {record_id}
    assert h.token_calls == 1 and h.source.refresh_count == 1


async def test_upsert_many_answers_each_item_and_replays_a_retried_batch(h: Harness) -> None:
    obj = h.keyed
    items = [UpsertItem(f"um-{n}", h.create_fields(obj, n)) for n in (1, 2, 3)]
    first = await h.driver.upsert_many(obj, items)
    assert [o.ok for o in first] == [True, True, True] and all(o.created for o in first)
    assert len({o.external_id for o in first}) == 3
    again = await h.driver.upsert_many(obj, items)  # the same batch again: its answer was lost
    assert [o.external_id for o in again] == [o.external_id for o in first] and not any(o.created for o in again)
    assert [h.records_with_key(obj, f"um-{n}") for n in (1, 2, 3)] == [1, 1, 1]
    clash = await h.driver.upsert_many(obj, [UpsertItem("um-1", h.create_fields(obj, 9))])
    assert isinstance(clash[0].error, errors.ConflictError)  # a key with other fields: refused, not overwritten
    assert clash[0].error.existing_id == first[0].external_id  # so the mirror writes its newer version there


# Drivers whose provider has a batch API: one bad item fails alone, in a batch that also updates a known record.
BATCH_APIS = {"hubspot": "no_such_property_zz", "salesforce": "No_Such_Field__c"}


@pytest.mark.parametrize("slug", sorted(BATCH_APIS))
async def test_a_batch_with_one_bad_item_fails_only_that_item(slug: str) -> None:
    async with HARNESSES[slug]() as h:
        obj, field = CrmObject.DEAL, h.update_field[CrmObject.DEAL]
        known = h.seed(obj, h.create_fields(obj, 7))
        items = [UpsertItem("pb-1", h.create_fields(obj, 1)),
                 UpsertItem("pb-2", h.create_fields(obj, 2) | {BATCH_APIS[slug]: "x"}),
                 UpsertItem("pb-3", {field: "updated in a batch"}, external_id=known),
                 UpsertItem("pb-4", h.create_fields(obj, 4))]
        before = sum(h.state.calls.values())
        outcomes = await h.driver.upsert_many(obj, items)
        assert sum(h.state.calls.values()) - before <= 3  # batch calls, not one per item
        assert [o.ok for o in outcomes] == [True, False, True, True]
        assert isinstance(outcomes[1].error, errors.InvalidRequestError) and outcomes[1].error.status_code == 400
        assert outcomes[1].error.provider_code and "x" not in str(outcomes[1].error).split(":")[-1]
        assert outcomes[2].external_id == known and not outcomes[2].created
        assert (await h.driver.get_record(obj, known)).fields[field] == "updated in a batch"
        assert [h.records_with_key(obj, f"pb-{n}") for n in (1, 2, 3, 4)] == [1, 0, 0, 1]
        too_many = [UpsertItem(f"tm-{n}", h.create_fields(obj, n)) for n in range(type(h.driver).batch_size + 1)]
        with pytest.raises(errors.InvalidRequestError):
            await h.driver.upsert_many(obj, too_many)
