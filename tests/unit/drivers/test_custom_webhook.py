"""Custom webhook: Standard Webhooks signatures (shared test vectors, the reference library as an independent
receiver), secret rotation, and the driver's wire behaviour against the receiver sandbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pydantic
import pytest
import standardwebhooks
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from drivers import errors
from drivers.base import CrmObject
from drivers.custom_webhook import CustomWebhookDriver, CustomWebhookForm, active_secrets, rotate_signing_secret
from drivers.webhook_signing import SignatureError, new_secret, sign, verify
from sandboxes import webhook_receiver
from tests.support.specs import provider_spec

ENDPOINT = "https://hooks.partner.example/hooks/crm"


def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(provider_spec("standard-webhooks", "test-vectors.json").read_text())
    return data


def test_the_shared_vectors_sign_and_verify() -> None:
    data = vectors()
    for vector in data["vectors"]:
        body = vector["payload"].encode()
        assert sign(vector["secret"], vector["msg_id"], vector["timestamp"], body) == vector["expected_signature"]
        headers = {"webhook-id": vector["msg_id"], "webhook-timestamp": str(vector["timestamp"]),
                   "webhook-signature": vector["expected_signature"]}
        verify(vector["secret"], headers, body, now=vector["timestamp"])
        tampered, other_version = (c["webhook-signature"] for c in data["negative_cases"][:2])
        cases = {
            "invalid signature (one char changed)": ({"webhook-signature": tampered}, "No matching signature found"),
            "only another version": ({"webhook-signature": other_version}, "No matching signature found"),
            "missing": ({"webhook-id": ""}, "Missing required headers"),
            "bad timestamp": ({"webhook-timestamp": "hello"}, "Invalid Signature Headers"),
        }
        for _, (change, reason) in cases.items():
            with pytest.raises(SignatureError, match=reason):
                verify(vector["secret"], headers | change, body, now=vector["timestamp"])
        # A non-v1 entry is skipped and the v1 entry after it still verifies.
        mixed = headers | {"webhook-signature": f"{data['negative_cases'][1]['webhook-signature']} "
                                                f"{vector['expected_signature']}"}
        verify(vector["secret"], mixed, body, now=vector["timestamp"])
        for offset, reason in ((-301, "too new"), (301, "too old")):
            with pytest.raises(SignatureError, match=reason):
                verify(vector["secret"], headers, body, now=vector["timestamp"] + offset)
    for empty in ("", "whsec_"):
        with pytest.raises(SignatureError):
            sign(empty, "msg_1", 1, b"{}")


def test_unpadded_secrets_sign_like_the_reference_library() -> None:
    stamp = datetime.fromtimestamp(1614265330, tz=UTC)
    for case in vectors()["secret_padding_cases"]:
        secret = "whsec_" + case["secret_unpadded"]
        reference = standardwebhooks.Webhook(secret).sign("msg_1", stamp, '{"a":1}')
        assert sign(secret, "msg_1", 1614265330, b'{"a":1}') == reference


class LibraryReceiver:
    """A receiver built on the Standard Webhooks reference library: it verifies what our driver really sends."""

    def __init__(self, secret: str) -> None:
        self.hook, self.verified, self.bodies = standardwebhooks.Webhook(secret), 0, []

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                self.hook.verify(raw, dict(request.headers))
            except standardwebhooks.webhooks.WebhookVerificationError:
                return JSONResponse({"error": "invalid_signature"}, status_code=401)
            self.verified += 1
            self.bodies.append(json.loads(raw))
            return JSONResponse({"ok": True, "id": "r1", "created": True})

        return Starlette(routes=[Route("/hooks/crm", endpoint, methods=["POST"])])


@asynccontextmanager
async def driver_for(app: Starlette, blob: dict[str, Any]) -> AsyncIterator[CustomWebhookDriver]:
    config = {"endpoint_url": ENDPOINT}
    auth = CustomWebhookDriver.build_auth(blob, config, lambda: None)
    async with httpx.AsyncClient(base_url=ENDPOINT, auth=auth, transport=httpx.ASGITransport(app=app)) as client:
        yield CustomWebhookDriver(client, config)


async def test_the_reference_library_verifies_our_requests_through_a_rotation() -> None:
    old = new_secret()
    blob = {"auth": "webhook", "signing_secrets": [old]}
    rotated, new = rotate_signing_secret(blob)
    for receiver_secret in (old, new):  # during the overlap a receiver holding either secret accepts us
        receiver = LibraryReceiver(receiver_secret)
        async with driver_for(receiver.app(), rotated) as driver:
            assert (await driver.test_connection()).ok
            created = await driver.create_record(CrmObject.LEAD, {"email": "a@example.com"}, "conv-1:lead")
        assert receiver.verified == 2 and created.external_id == "r1"
        assert receiver.bodies[1]["type"] == "record.create" and receiver.bodies[1]["data"]["fields"] == {
            "email": "a@example.com"}
    expired = rotated | {"previous_until": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
    assert active_secrets(expired) == [new]
    async with driver_for(LibraryReceiver(old).app(), expired) as driver:
        check = await driver.test_connection()
    assert not check.ok and check.reason is not None and "auth_error" in check.reason


async def test_a_lost_create_is_retried_under_the_same_webhook_id() -> None:
    app = webhook_receiver.create_app()
    state: webhook_receiver.ReceiverState = app.state.sandbox
    state.knobs.fail_after_next, state.knobs.fail_after_route = 1, f"POST {webhook_receiver.PATH} record.create"
    async with driver_for(app, {"auth": "webhook", "signing_secrets": list(state.secrets.held)}) as driver:
        with pytest.raises(errors.UnavailableError):
            await driver.create_record(CrmObject.DEAL, {"name": "Loft"}, "conv-2:deal")
        retried = await driver.create_record(CrmObject.DEAL, {"name": "Loft"}, "conv-2:deal")
        with pytest.raises(errors.ConflictError):
            await driver.create_record(CrmObject.DEAL, {"name": "Other"}, "conv-2:deal")
    assert not retried.created and len(state.live("deal")) == 1
    assert state.seen_ids[0] == state.seen_ids[1] and state.seen_ids[0].startswith("msg_")
    assert "conv-2" not in state.seen_ids[0]  # a digest of the key, not the key


async def test_the_receiver_rejects_a_foreign_signature_as_an_auth_error() -> None:
    app = webhook_receiver.create_app()
    state: webhook_receiver.ReceiverState = app.state.sandbox
    async with driver_for(app, {"auth": "webhook", "signing_secrets": [new_secret()]}) as driver:
        with pytest.raises(errors.AuthError) as refused:
            await driver.get_record(CrmObject.DEAL, "x")
    assert refused.value.provider_code == "invalid_signature" and state.rejected["No matching signature found"] == 1


@pytest.mark.parametrize(("status", "kind", "code"), [(302, errors.InvalidRequestError, "redirect"),
                                                      (410, errors.AuthError, "gone")])
async def test_redirects_are_not_followed_and_gone_endpoints_need_a_human(status: int, kind: type, code: str) -> None:
    async def endpoint(request: Request) -> Response:
        if status == 302:
            return RedirectResponse("http://169.254.169.254/", 302)
        return JSONResponse({"error": "gone"}, status_code=410)

    app = Starlette(routes=[Route("/hooks/crm", endpoint, methods=["POST"])])
    async with driver_for(app, {"auth": "webhook", "signing_secrets": [new_secret()]}) as driver:
        with pytest.raises(kind) as failure:
            await driver.get_record(CrmObject.DEAL, "x")
    assert failure.value.provider_code == code


def test_the_form_generates_a_secret_shown_once_or_keeps_the_operators() -> None:
    form = CustomWebhookForm(endpoint_url=ENDPOINT)
    shown = form.reveal()
    assert shown is not None and shown.startswith("whsec_") and form.secret()["signing_secrets"] == [shown]
    assert form.settings() == {"endpoint_url": ENDPOINT}
    assert "whsec_" not in repr(form) or shown not in repr(form)
    mine = new_secret()
    kept = CustomWebhookForm(endpoint_url=ENDPOINT, signing_secret=mine)
    assert kept.reveal() is None and kept.secret()["signing_secrets"] == [mine]
    for bad in ({"endpoint_url": "hooks.example"}, {"endpoint_url": ENDPOINT, "signing_secret": "abc"},
                {"endpoint_url": ENDPOINT, "extra": 1}):
        with pytest.raises(pydantic.ValidationError):
            CustomWebhookForm.model_validate(bad)
