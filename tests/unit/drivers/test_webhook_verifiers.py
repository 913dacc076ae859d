"""Every webhook verifier against the shared vectors and real HMACs: the valid delivery is accepted; a flipped
byte, a stale or future timestamp, a missing header, another secret are refused; and a property-based run
accepts no forged delivery.

Vectors: Standard Webhooks `test-vectors.json` (from the reference libraries), HubSpot's own SDK test
(HubSpot/hubspot-api-python tests/spec/utils/test_signature.py, Apache-2.0: data values only), the
self-computed Mindbody and Toast vectors, and athenahealth's mock notification bundle signed here with a real
HMAC (athenahealth publishes no signature vector).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import athenahealth_webhooks, mindbody_webhooks, toast_webhooks
from drivers.hubspot_webhooks import HubSpotVerifier
from drivers.salesforce_webhooks import SalesforceVerifier
from drivers.webhooks import StandardWebhooksVerifier, WebhookRequest, WebhookVerifier, verifier_for
from tests.support.specs import provider_spec


@dataclass(frozen=True)
class Case:
    verifier: WebhookVerifier
    request: WebhookRequest
    secret: dict[str, Any]
    now: datetime  # a moment at which the delivery is fresh
    signature_header: str | None  # the header a forger would have to guess (None: path token)
    expected_events: int


def _vector(*parts: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(provider_spec(*parts).read_text())
    return loaded


def standard() -> Case:
    vector = _vector("standard-webhooks", "test-vectors.json")["vectors"][0]
    body = json.dumps({"type": "customer.created", "timestamp": "2021-02-25T15:02:10Z",
                       "data": {"id": "42", "changed_fields": ["phone"]}}).encode()
    from drivers.webhooks import sign_standard

    moment = datetime.fromtimestamp(vector["timestamp"], UTC)
    # The vector itself, through the package we verify with:
    assert sign_standard(vector["secret"], vector["msg_id"], moment, vector["payload"].encode()) == \
        vector["expected_signature"]
    headers = {"webhook-id": vector["msg_id"], "webhook-timestamp": str(vector["timestamp"]),
               "webhook-signature": "v2,Zm9v " + sign_standard(vector["secret"], vector["msg_id"], moment, body)}
    return Case(StandardWebhooksVerifier(), WebhookRequest("POST", "https://x/h", headers, body),
                {"secret": vector["secret"]}, moment, "webhook-signature", 1)


def standard_vector_payload() -> Case:
    vector = _vector("standard-webhooks", "test-vectors.json")["vectors"][0]
    headers = {"webhook-id": vector["msg_id"], "webhook-timestamp": str(vector["timestamp"]),
               "webhook-signature": vector["expected_signature"]}
    return Case(StandardWebhooksVerifier(), WebhookRequest("POST", "https://x/h", headers,
                                                           vector["payload"].encode()),
                {"secret": vector["secret"]}, datetime.fromtimestamp(vector["timestamp"], UTC),
                "webhook-signature", -1)


def hubspot() -> Case:
    # HubSpot SDK's v3 vector; the body is not an event array, so events() is not asked of it.
    headers = {"x-hubspot-signature-v3": "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
               "x-hubspot-request-timestamp": "15000000"}
    request = WebhookRequest("POST", "https://www.example.com/webhook_uri", headers,
                             b"{'example_field':'example_value'}")
    return Case(HubSpotVerifier(), request, {"secret": "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"},
                datetime.fromtimestamp(15000, UTC), "x-hubspot-signature-v3", -1)


def hubspot_events() -> Case:
    from drivers.hubspot_webhooks import sign_v3

    body = json.dumps([{"eventId": 1, "subscriptionId": 12345, "portalId": 62515, "occurredAt": 1564113600000,
                        "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": 123,
                        "changeSource": "CRM", "changeFlag": "NEW", "appId": 54321}]).encode()
    stamp = 1564113600000
    url = "https://api.example.com/webhooks/crm/hubspot/t?a=%3A"
    headers = {"x-hubspot-signature-v3": sign_v3("app-secret", "POST", url, body, stamp),
               "x-hubspot-request-timestamp": str(stamp)}
    return Case(HubSpotVerifier(), WebhookRequest("POST", url, headers, body), {"secret": "app-secret"},
                datetime.fromtimestamp(stamp / 1000, UTC), "x-hubspot-signature-v3", 1)


def mindbody() -> Case:
    vector = _vector("mindbody", "self-computed-webhook-signature-vector.json")
    request = WebhookRequest("POST", "https://x/h", {"x-mindbody-signature": vector["expected_header"]},
                             vector["raw_body"].encode())
    return Case(mindbody_webhooks.MindbodyVerifier(), request, {"secret": vector["messageSignatureKey"]},
                datetime(2024, 1, 1, 0, 10, tzinfo=UTC), "x-mindbody-signature", 1)


def toast(variant: str) -> Case:
    vector = _vector("toast", "self-computed-webhook-signature-vector.json")
    request = WebhookRequest("POST", "https://x/h", {"toast-signature": vector[variant]},
                             vector["raw_body"].encode())
    return Case(toast_webhooks.ToastVerifier(), request, {"secret": vector["secret"]},
                datetime(2024, 1, 1, 0, 10, tzinfo=UTC), "toast-signature", 1)


def athena() -> Case:
    body = provider_spec("athenahealth", "aone-fhir-subscriptions", "mock-notification-bundle.json").read_bytes()
    secret = "athena-x-hub-secret-0123456789"
    request = WebhookRequest("POST", "https://x/h", {"x-hub-signature": athenahealth_webhooks.sign(secret, body)},
                             body)
    return Case(athenahealth_webhooks.AthenaVerifier(), request, {"secret": secret},
                datetime(2023, 4, 14, 9, 30, tzinfo=UTC), "x-hub-signature", 1)


def salesforce() -> Case:
    body = (b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/'
            b'soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications '
            b'xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>00D5g000004ABCDEAA</OrganizationId>'
            b"<ActionId>04k5g000000XyZaAAK</ActionId><Notification><Id>04l5g00000ABCDEFGH</Id>"
            b'<sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>003000000000001'
            b"</sf:Id><sf:CreatedDate>2026-11-28T08:00:00.000Z</sf:CreatedDate><sf:LastModifiedDate>"
            b"2026-11-28T08:00:00.000Z</sf:LastModifiedDate></sObject></Notification></notifications>"
            b"</soapenv:Body></soapenv:Envelope>")
    request = WebhookRequest("POST", "https://x/h", {}, body, path_token="tok-" + "a" * 40)
    return Case(SalesforceVerifier(), request, {"path_token": "tok-" + "a" * 40, "org_id": "00D5g000004ABCD"},
                datetime(2026, 11, 28, 8, 0, tzinfo=UTC), None, 1)


CASES: dict[str, Callable[[], Case]] = {
    "standard": standard, "standard-vector": standard_vector_payload, "hubspot-sdk-vector": hubspot,
    "hubspot": hubspot_events, "mindbody": mindbody, "toast-body+timestamp":
        lambda: toast("expected_Toast-Signature_body_plus_timestamp"),
    "toast-body-only": lambda: toast("expected_Toast-Signature_body_only_variant"),
    "athenahealth": athena, "salesforce": salesforce,
}
TIMED = [name for name in CASES if name != "salesforce"]  # Salesforce signs nothing, carries no timestamp


def _flip(data: bytes, index: int) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


@pytest.mark.parametrize("name", sorted(CASES))
def test_valid_delivery_is_accepted_and_normalized(name: str) -> None:
    case = CASES[name]()
    assert case.verifier.verify(case.request, case.secret, case.now)
    if case.expected_events >= 0:
        events = case.verifier.events(case.request)
        assert len(events) == case.expected_events
        assert all(e.event_id and e.kind in ("created", "updated", "deleted", "merged") for e in events)


@pytest.mark.parametrize("name", TIMED)  # Salesforce signs no body (its org id check is tested below)
@pytest.mark.parametrize("where", [0, 7, -2])
def test_a_flipped_body_byte_is_refused(name: str, where: int) -> None:
    case = CASES[name]()
    forged = replace(case.request, body=_flip(case.request.body, where))
    assert not case.verifier.verify(forged, case.secret, case.now)


@pytest.mark.parametrize("name", sorted(CASES))
def test_another_secret_or_a_flipped_signature_is_refused(name: str) -> None:
    case = CASES[name]()
    other = {k: (v[:-1] + ("B" if v[-1] != "B" else "C")) if isinstance(v, str) else v for k, v in case.secret.items()}
    assert not case.verifier.verify(case.request, other, case.now)
    if case.signature_header is not None:
        headers = dict(case.request.headers)
        headers[case.signature_header] = _flip(headers[case.signature_header].encode(), -3).decode()
        assert not case.verifier.verify(replace(case.request, headers=headers), case.secret, case.now)
    else:
        token = case.request.path_token or ""
        assert not case.verifier.verify(replace(case.request, path_token=token[:-1] + "b"), case.secret, case.now)


@pytest.mark.parametrize("name", TIMED)
def test_stale_and_future_timestamps_are_refused(name: str) -> None:
    case = CASES[name]()
    oldest = case.verifier.max_age
    assert case.verifier.verify(case.request, case.secret, case.now)
    assert not case.verifier.verify(case.request, case.secret, case.now + oldest + timedelta(minutes=6))
    assert not case.verifier.verify(case.request, case.secret, case.now - timedelta(minutes=6) - (
        case.now - _event_time(case)))


def _event_time(case: Case) -> datetime:
    """When the delivery says it was made (the verifier's reference point)."""
    headers = case.request.headers
    if "webhook-timestamp" in headers:
        return datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    if "x-hubspot-request-timestamp" in headers:
        return datetime.fromtimestamp(int(headers["x-hubspot-request-timestamp"]) / 1000, UTC)
    from drivers.webhooks import parse_time

    doc = json.loads(case.request.body)
    return parse_time(doc.get("eventInstanceOriginationDateTime") or doc.get("timestamp"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_missing_header_or_token_is_refused(name: str) -> None:
    case = CASES[name]()
    if case.signature_header is None:
        assert not case.verifier.verify(replace(case.request, path_token=None), case.secret, case.now)
        return
    for header in {case.signature_header, *case.verifier.required_headers}:
        headers = {k: v for k, v in case.request.headers.items() if k != header}
        assert not case.verifier.verify(replace(case.request, headers=headers), case.secret, case.now)


def test_salesforce_refuses_another_org_with_the_right_token() -> None:
    case = salesforce()
    assert not case.verifier.verify(case.request, {**case.secret, "org_id": "00D5g000004ZZZZ"}, case.now)


def test_athenahealth_refuses_sha1_even_when_correct() -> None:
    import hashlib
    import hmac

    case = athena()
    sha1 = "sha1=" + hmac.new(case.secret["secret"].encode(), case.request.body, hashlib.sha1).hexdigest()
    assert not case.verifier.verify(replace(case.request, headers={"x-hub-signature": sha1}), case.secret, case.now)


def test_verifiers_are_found_by_slug_from_drivers_and_standalone_modules() -> None:
    assert isinstance(verifier_for("hubspot"), HubSpotVerifier)
    assert isinstance(verifier_for("salesforce"), SalesforceVerifier)
    assert isinstance(verifier_for("mindbody"), mindbody_webhooks.MindbodyVerifier)
    assert isinstance(verifier_for("generic_rest"), StandardWebhooksVerifier)
    assert verifier_for("odoo") is None and verifier_for("nope") is None


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(CASES)), edit=st.binary(min_size=1, max_size=8), at=st.integers(0, 10_000),
       signature=st.text(min_size=0, max_size=60), forge_signature=st.booleans())
def test_property_no_forged_delivery_is_accepted(name: str, edit: bytes, at: int, signature: str,
                                                 forge_signature: bool) -> None:
    """A changed body, or any signature not computed with the secret, is never accepted. (Salesforce signs no
    body: its forgery is a guessed path token; the body's integrity is TLS's.)"""
    case = CASES[name]()
    if case.signature_header is None:
        if signature == case.request.path_token:
            return
        forged = replace(case.request, path_token=signature)
    elif forge_signature:
        if signature == case.request.headers[case.signature_header]:
            return  # the genuine signature, guessed: not a forgery
        forged = replace(case.request, headers={**case.request.headers, case.signature_header: signature})
    else:
        body = case.request.body
        index = at % (len(body) + 1)
        changed = body[:index] + edit + body[index + len(edit):]
        if changed == body:
            return
        forged = replace(case.request, body=changed)
    assert not case.verifier.verify(forged, case.secret, case.now)
