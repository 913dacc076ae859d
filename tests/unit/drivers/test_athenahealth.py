"""athenahealth specifics: the token endpoint's per-minute limit, reconciling a create whose answer was lost,
booking, and the sandbox's answers compared by shape with go-athenahealth's recorded fixtures."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from drivers import errors
from drivers.athenahealth import AthenahealthCredentials, AthenahealthDriver
from drivers.base import CrmObject
from sandboxes.athenahealth import app as athena_sandbox
from tests.support.specs import provider_spec
from tests.unit.drivers.harness import athenahealth as athena_harness

PATIENT = {"firstname": "Ann", "lastname": "Lee", "dob": "01/15/1985", "departmentid": "1",
           "mobilephone": "(860) 555-5555", "email": "ann@example.com"}


def test_the_form_keeps_secrets_in_the_blob_and_the_practice_in_settings() -> None:
    form = AthenahealthCredentials(client_id="0oa1abcd", client_secret="s3cr3t-value", practice_id="195900",
                                   environment="preview")
    assert form.secret() == {"auth": "token", "client_id": "0oa1abcd", "client_secret": "s3cr3t-value"}
    assert form.settings() == {"practice_id": "195900", "environment": "preview"}


async def test_token_calls_stay_under_the_per_minute_limit() -> None:
    async with athena_harness() as h:
        patient = h.seed(CrmObject.CUSTOMER, PATIENT)
        for _ in range(5):  # preview allows 5 token calls a minute
            h.state.tokens.expire_all()
            await h.driver.get_record(CrmObject.CUSTOMER, patient)
        h.state.tokens.expire_all()
        with pytest.raises(errors.RateLimitedError) as blocked:
            await h.driver.get_record(CrmObject.CUSTOMER, patient)
        assert blocked.value.retryable and blocked.value.retry_after is not None and h.token_calls == 6


async def test_a_create_whose_answer_was_lost_is_reconciled_by_reading() -> None:
    async with athena_harness() as h:
        h.state.knobs.fail_after_next, h.state.knobs.fail_after_route = 1, "POST /v1/{practiceid}/patients"
        with pytest.raises(errors.UnavailableError):
            await h.driver.create_record(CrmObject.CUSTOMER, PATIENT, "conv-7:patient")
        assert len(h.state.patients) == 1  # athena did register the patient
        retried = await h.driver.create_record(CrmObject.CUSTOMER, PATIENT, "conv-7:patient")
        assert not retried.created and len(h.state.patients) == 1
        assert h.records_with_key(CrmObject.CUSTOMER, "conv-7:patient") == 1


async def test_booking_an_open_slot_is_idempotent_and_guards_other_patients() -> None:
    async with athena_harness() as h:
        patient, other = h.seed(CrmObject.CUSTOMER, PATIENT), h.seed(CrmObject.CUSTOMER, PATIENT | {"dob": "1/1/1990"})
        slot = h.state.add_slot()["appointmentid"]
        booking = {"appointmentid": slot, "patientid": patient, "appointmenttypeid": "82"}
        first = await h.driver.create_record(CrmObject.APPOINTMENT, booking, "conv-7:appt")
        again = await h.driver.create_record(CrmObject.APPOINTMENT, booking, "conv-7:appt")
        assert first.created and not again.created and again.external_id == slot
        assert h.state.appointments[slot]["appointmentstatus"] == "f"
        with pytest.raises(errors.ConflictError):
            await h.driver.create_record(CrmObject.APPOINTMENT, booking | {"patientid": other}, "conv-8:appt")


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _same_shape(ours: Any, recorded: Any) -> list[str]:
    """Keys we send must exist in the recording with the same JSON type (we may send fewer keys)."""
    problems: list[str] = []
    if isinstance(ours, dict) and isinstance(recorded, dict):
        for key, value in ours.items():
            if key in recorded:
                problems += [f"{key}.{p}" for p in _same_shape(value, recorded[key])]
        return problems
    if isinstance(ours, list) and isinstance(recorded, list):
        return _same_shape(ours[0], recorded[0]) if ours and recorded else []
    return [] if ours == recorded else [f"{ours} != {recorded}"]


@pytest.mark.parametrize(("fixture", "path", "method", "kind"), [
    ("GetPatient.json", "/patients/{patient}", "GET", list),
    ("CreatePatient.json", "/patients", "POST", list),
    ("UpdatePatient.json", "/patients/{patient}", "PUT", list),
    ("ListPatients.json", "/patients?email=ann@example.com", "GET", dict),
    ("ListChangedPatients.json", "/patients/changed?leaveunprocessed=true", "GET", dict),
    ("GetAppointment.json", "/appointments/{slot}", "GET", list),
    ("BookAppointment.json", "/appointments/{slot}", "PUT", list),
])
async def test_sandbox_answers_have_the_recorded_shapes(fixture: str, path: str, method: str, kind: type) -> None:
    recorded = json.loads(provider_spec("athenahealth", "go-athenahealth-fixtures", fixture).read_text())
    app = athena_sandbox.create_app()
    st: Any = app.state.sandbox
    patient = st.add_patient({**PATIENT, "lastname": "Smith"})["patientid"]
    slot = st.add_slot()["appointmentid"]
    url = f"/v1/{st.practice_id}" + path.format(patient=patient, slot=slot)
    data = {"PUT": {"patientid": patient, "appointmenttypeid": "82"} if "appointments" in path else {"zip": "02210"},
            "POST": PATIENT, "GET": None}[method]
    headers = {"Authorization": f"Bearer {st.tokens.issue_access()}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.preview.platform."
                                 "athenahealth.com", headers=headers) as api:
        answer = await api.request(method, url, data=data)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert isinstance(body, kind) and isinstance(recorded, kind)
    assert _same_shape(_shape(body), _shape(recorded)) == []
    shared = set(_shape(body)[0] if kind is list else _shape(body)) & set(_shape(recorded)[0] if kind is list
                                                                          else _shape(recorded))
    assert shared, "the answer shares no key with the recording"


async def test_the_environment_picks_the_host() -> None:
    assert AthenahealthDriver.api_base_url({"environment": "production"}) == "https://api.platform.athenahealth.com"
    assert AthenahealthDriver.oauth_token_url({"environment": "preview"}) == (
        "https://api.preview.platform.athenahealth.com/oauth2/v1/token")
    async with httpx.AsyncClient() as client:
        with pytest.raises(errors.InvalidRequestError):
            await AthenahealthDriver(client, {}).get_record(CrmObject.CUSTOMER, "1")  # no practice id: not /v1/None
