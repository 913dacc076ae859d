"""athenahealth driver (athenaOne proprietary REST API: patients and appointments of one practice)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import Field

from drivers.athenahealth_webhooks import AthenaVerifier
from drivers.auth import TokenSet, json_or_empty
from drivers.base import (
    BaseDriver,
    CreateResult,
    CrmObject,
    CustomerRecord,
    DeleteResult,
    FieldInfo,
    Record,
    full_name,
    national_digits,
)
from drivers.errors import (
    AuthError,
    ConflictError,
    DeleteUnsupportedError,
    InvalidRequestError,
    RateLimitedError,
    UnavailableError,
)
from drivers.idempotency import ensure_same_request, provider_key, request_fingerprint
from drivers.provider import CredentialForm, RateLimit

HOSTS = {"production": "https://api.platform.athenahealth.com", "preview": "https://api.preview.platform.athenahealth.com"}
TOKEN_PATH = "/oauth2/v1/token"
SCOPE = "athena/service/Athenanet.MDP.*"
_PATIENT_FIELDS = ("patientid", "firstname", "lastname", "dob", "email", "homephone", "mobilephone", "status",
                   "departmentid", "lastupdated")
_AUTOMATCH = 26  # enhancedbestmatch score at which athena itself merges a new registration into a patient


class AthenahealthCredentials(CredentialForm):
    """A practice's athenaOne API app: client credentials, the practice id and which environment issued them."""

    client_id: str = Field(min_length=4, max_length=128, pattern=r"^\S+$")
    client_secret: str = Field(min_length=8, max_length=256, pattern=r"^\S+$")
    practice_id: str = Field(pattern=r"^[0-9]{1,10}$")
    environment: Literal["preview", "production"] = "production"

    def secret(self) -> dict[str, Any]:
        return {"auth": "token", "client_id": self.client_id, "client_secret": self.client_secret}

    def settings(self) -> dict[str, Any]:
        return {"practice_id": self.practice_id, "environment": self.environment}


class AthenahealthDriver(BaseDriver):
    """athenahealth (athenaOne).

    API version: proprietary REST `/v1/{practiceid}/…` (patients, appointments, changed-data feeds) on the
    production or preview host (tenant setting `environment`). Auth: OAuth 2.0 client credentials (Basic
    client auth at `/oauth2/v1/token`, scope `athena/service/Athenanet.MDP.*`), 1-hour bearer tokens cached
    until just before expiry (`expires_in` may be a string); a 401 gets one new token and one resend. Writes are
    form-encoded, answers JSON. Pagination: `limit`/`offset` with the answer's `next` path. Rate limits: the
    token endpoint allows 50 calls a minute in production and 5 in preview (429, blocked for the rest of the
    minute), API calls a daily quota reset at midnight GMT; 429 Retry-After when sent.

    Patients have no deletion in the API (erasure records a divergence: DeleteUnsupportedError); appointments
    are cancelled, not deleted, so they raise it too. There is no note object for transcripts. Idempotent
    patient create: our key in a practice custom field (config `key_customfield_id`, fingerprint in
    `fingerprint_customfield_id`), else enhancedbestmatch (score ≥ 26) before writing — so a create whose
    answer was lost is found by reading, not written twice; POST /patients itself also returns a best match.
    """

    slug = "athenahealth"
    webhook_verifier = AthenaVerifier()  # drivers/athenahealth_webhooks.py
    base_url = HOSTS["production"]
    token_url = HOSTS["production"] + TOKEN_PATH
    credential_form = AthenahealthCredentials
    rate_limits = (
        RateLimit(50, 60.0, scope="token", source="athenahealth authentication guide: 50 token calls/min (production)"),
        RateLimit(100, 1.0, source="athenahealth best practices: per-second API rate (flagged unverified)"),
    )
    supported_objects: ClassVar[frozenset[CrmObject]] = frozenset({CrmObject.CUSTOMER, CrmObject.APPOINTMENT})
    deletable_objects: ClassVar[frozenset[CrmObject] | None] = frozenset()  # patients and appointments are kept
    default_field_catalog: ClassVar[dict[str, str]] = {
        "customer.first_name": "firstname", "customer.last_name": "lastname", "customer.email": "email",
        "customer.phone": "mobilephone", "customer.home_phone": "homephone", "customer.birth_date": "dob",
        "customer.department": "departmentid",
        "appointment.slot": "appointmentid", "appointment.patient": "patientid", "appointment.date": "date",
        "appointment.start": "starttime", "appointment.type": "appointmenttypeid",
        "appointment.department": "departmentid",
    }

    @classmethod
    def api_base_url(cls, config: Mapping[str, Any] | None = None) -> str:
        config = config or {}
        return str(config.get("base_url") or HOSTS[str(config.get("environment") or "production")])

    @classmethod
    def oauth_token_url(cls, config: Mapping[str, Any] | None = None) -> str | None:
        config = config or {}
        return str(config.get("token_url") or HOSTS[str(config.get("environment") or "production")] + TOKEN_PATH)

    @classmethod
    async def grant_token(cls, http: httpx.AsyncClient, secret: Mapping[str, Any], config: Mapping[str, Any],
                          client: tuple[str, str] | None) -> TokenSet:
        """The client-credentials grant with the blob's own client (Basic auth, as athena documents)."""
        if not secret.get("client_id") or not secret.get("client_secret"):
            raise AuthError("the stored credential has no client id and secret", provider=cls.slug)
        try:
            response = await http.post(str(cls.oauth_token_url(config)),
                                       data={"grant_type": "client_credentials", "scope": SCOPE},
                                       auth=(str(secret["client_id"]), str(secret["client_secret"])))
        except httpx.TransportError as exc:
            raise UnavailableError(f"token endpoint unreachable ({type(exc).__name__})", provider=cls.slug) from None
        body = json_or_empty(response)
        code = str(body["error"]) if body.get("error") else None
        if response.status_code == 429:  # blocked for the rest of the minute
            wait = response.headers.get("Retry-After")
            raise RateLimitedError("token endpoint throttled", provider=cls.slug, status_code=429, provider_code=code,
                                   retry_after=timedelta(seconds=float(wait) if wait and wait.isdigit() else 60))
        if response.status_code >= 500:
            raise UnavailableError("token endpoint failed", provider=cls.slug, status_code=response.status_code)
        if response.status_code != 200 or not body.get("access_token"):
            raise AuthError("client credentials refused", provider=cls.slug, status_code=response.status_code,
                            provider_code=code)
        return TokenSet.from_response(body)

    @property
    def _v1(self) -> str:
        practice = str(self.config.get("practice_id") or "")
        if not practice.isdigit():
            raise InvalidRequestError("the tenant has no athenahealth practice id", provider=self.slug)
        return f"/v1/{practice}"

    # ----- verbs -------------------------------------------------------------------------------

    async def get_record(self, object: CrmObject, external_id: str) -> Record:
        obj = self._require(object)
        kind = "patients" if obj is CrmObject.CUSTOMER else "appointments"
        rows = await self._request_json("GET", f"{self._v1}/{kind}/{quote(external_id, safe='')}",
                                        params={"showcustomfields": "true"} if kind == "patients" else None)
        return self._record(obj, rows[0])

    async def search_records(self, object: CrmObject, query: str, limit: int = 20) -> list[Record]:
        obj = self._require(object)
        if obj is not CrmObject.CUSTOMER or len(query.strip()) < 2:
            raise InvalidRequestError("search covers patients, with at least two characters", provider=self.slug)
        body = await self._request_json("GET", f"{self._v1}/patients/search",
                                        params={"searchterm": query.strip(), "limit": limit})
        return [self._record(obj, p) for p in (body or {}).get("patients", [])][:limit]

    async def list_recent(self, object: CrmObject, since: datetime, limit: int = 100) -> list[Record]:
        """The changed-data feed (the practice's subscription), left unprocessed and replayed from `since`."""
        obj = self._require(object)
        kind = "patients" if obj is CrmObject.CUSTOMER else "appointments"
        params: dict[str, Any] | None = {
            "leaveunprocessed": "true", "limit": min(max(limit, 1), 5000),
            "showprocessedstartdatetime": since.astimezone(UTC).strftime("%m/%d/%Y %H:%M:%S")}
        url, rows = f"{self._v1}/{kind}/changed", list[dict[str, Any]]()
        while len(rows) < limit:
            page = await self._request_json("GET", url, params=params)
            rows.extend(page.get(kind) or [])
            if not page.get("next"):
                break
            url, params = page["next"], None  # `next` is a path with the query already in it
        return [self._record(obj, r) for r in rows[:limit]]

    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        obj = self._require(object)
        if obj is CrmObject.APPOINTMENT:
            return await self._book(fields)
        key, fingerprint = provider_key(idempotency_key), request_fingerprint(obj, fields)
        found = await self._by_key(key)
        if found is not None:
            ensure_same_request(self.slug, self._custom(found, "fingerprint_customfield_id"), fingerprint,
                                str(found["patientid"]))
            return CreateResult(external_id=str(found["patientid"]), created=False)
        # A create whose answer was lost (or a person already registered) is found by reading first.
        match = await self._best_match(fields)
        patient_id = match or (await self._request_json("POST", f"{self._v1}/patients", data=dict(fields)))[0][
            "patientid"]
        custom = [{"customfieldid": self._cf("key_customfield_id"), "customfieldvalue": key},
                  {"customfieldid": self._cf("fingerprint_customfield_id"), "customfieldvalue": fingerprint}]
        await self._request("PUT", f"{self._v1}/patients/{patient_id}/customfields",
                            data={"customfields": json.dumps(custom)})
        return CreateResult(external_id=str(patient_id), created=match is None)

    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        obj = self._require(object)
        if obj is CrmObject.APPOINTMENT:  # moving a booking is a reschedule onto another open slot
            new_slot = fields.get("appointmentid")
            if not new_slot or set(fields) - {"appointmentid", "patientid"}:
                raise InvalidRequestError("an appointment update moves it to another slot (appointmentid)",
                                          provider=self.slug)
            current = await self.get_record(obj, external_id)
            await self._request("PUT", f"{self._v1}/appointments/{quote(external_id, safe='')}/reschedule",
                                data={"newappointmentid": new_slot, "patientid": current.fields.get("patientid")})
            return None
        await self._request("PUT", f"{self._v1}/patients/{quote(external_id, safe='')}", data=dict(fields))
        return None

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        self._require(object)
        raise DeleteUnsupportedError("athenahealth keeps patients and appointments: an operator must act in the "
                                     "practice", provider=self.slug)

    async def describe_schema(self, object: CrmObject) -> list[FieldInfo]:
        obj = self._require(object)
        names = [v for k, v in self.default_field_catalog.items() if k.startswith(f"{obj.value}.")]
        # athenaOne publishes no field metadata endpoint: the documented fields the driver writes.
        return [FieldInfo(name=n, label=n, type="string", required=n in ("firstname", "lastname", "dob"))
                for n in names]

    async def append_note(
        self, customer_external_id: str, note_external_id: str | None, text: str, *, batch_key: str
    ) -> CreateResult:
        raise InvalidRequestError("object note is not supported: athenahealth has no record for conversation "
                                  "transcripts", provider=self.slug)

    # ----- provider hooks ----------------------------------------------------------------------

    async def _probe(self) -> None:
        await self._request("GET", f"{self._v1}/ping")

    async def _find_customer_by_phone(self, e164: str) -> CustomerRecord | None:
        body = await self._request_json("GET", f"{self._v1}/patients", params={"anyphone": national_digits(e164)})
        for patient in (body or {}).get("patients", []):
            if self._same_phone(e164, patient.get("mobilephone"), patient.get("homephone")):
                return self._customer(patient)
        return None

    async def _find_customer_by_email(self, email: str) -> CustomerRecord | None:
        body = await self._request_json("GET", f"{self._v1}/patients", params={"email": email})
        patients = (body or {}).get("patients", [])
        return self._customer(patients[0]) if patients else None

    async def _get_customer(self, external_id: str) -> CustomerRecord:
        rows = await self._request_json("GET", f"{self._v1}/patients/{quote(external_id, safe='')}")
        return self._customer(rows[0])

    def _provider_code(self, response: httpx.Response) -> str | None:
        body = response.json()
        code = body.get("error") if isinstance(body, dict) else None
        return str(code) if code else None

    def _retry_after(self, response: httpx.Response) -> timedelta | None:
        stated = super()._retry_after(response)
        return stated if stated is not None else timedelta(seconds=1)  # a per-second rate unless told

    # ----- helpers -----------------------------------------------------------------------------

    async def _book(self, fields: Mapping[str, Any]) -> CreateResult:
        slot, patient = str(fields.get("appointmentid") or ""), str(fields.get("patientid") or "")
        if not slot or not patient:
            raise InvalidRequestError("booking needs an open slot (appointmentid) and a patientid", provider=self.slug)
        path = f"{self._v1}/appointments/{quote(slot, safe='')}"
        current = (await self._request_json("GET", path))[0]
        if current.get("appointmentstatus") != "o":  # already booked: ours on a retry, else someone else's
            if str(current.get("patientid")) != patient:
                raise ConflictError("the slot is booked for another patient", provider=self.slug)
            return CreateResult(external_id=slot, record_url=None, created=False)
        await self._request_json("PUT", path, data={k: str(v) for k, v in fields.items() if k != "appointmentid"})
        return CreateResult(external_id=slot, record_url=None, created=True)

    async def _by_key(self, key: str) -> dict[str, Any] | None:
        path = f"{self._v1}/patients/customfields/{self._cf('key_customfield_id')}/{quote(key, safe='')}"
        response = await self._request_or_none("GET", path, params={"showcustomfields": "true"})
        patients = (self._json("GET", response) or {}).get("patients", []) if response is not None else []
        return patients[0] if patients else None

    async def _best_match(self, fields: Mapping[str, Any]) -> str | None:
        if not all(fields.get(k) for k in ("firstname", "lastname", "dob")):
            return None
        wanted = ("firstname", "lastname", "dob", "email", "mobilephone", "homephone", "zip")
        params = {k: str(fields[k]) for k in wanted if fields.get(k)} | {"returnbestmatches": "true"}
        found = await self._request_json("GET", f"{self._v1}/patients/enhancedbestmatch", params=params)
        best = [p for p in found or [] if float(p.get("score", 0)) >= _AUTOMATCH]
        return str(best[0]["patientid"]) if best else None

    def _cf(self, name: str) -> str:
        return str(self.config.get(name) or {"key_customfield_id": "9001", "fingerprint_customfield_id": "9002"}[name])

    def _custom(self, patient: dict[str, Any], name: str) -> str | None:
        wanted = self._cf(name)
        return next((str(c.get("customfieldvalue")) for c in patient.get("customfields") or []
                     if str(c.get("customfieldid")) == wanted), None)

    def _record(self, obj: CrmObject, row: dict[str, Any]) -> Record:
        record_id = str(row["patientid"] if obj is CrmObject.CUSTOMER else row["appointmentid"])
        stamp = row.get("lastupdated") or row.get("lastmodified")
        updated = datetime.strptime(stamp, "%m/%d/%Y %H:%M:%S").replace(tzinfo=UTC) if stamp else None
        return Record(object=obj, external_id=record_id, fields=dict(row), updated_at=updated)

    def _customer(self, row: dict[str, Any]) -> CustomerRecord:
        return CustomerRecord(external_id=str(row["patientid"]), name=full_name(row.get("firstname"),
                                                                                 row.get("lastname")),
                              phone=row.get("mobilephone") or row.get("homephone"), email=row.get("email"),
                              fields={k: row.get(k) for k in _PATIENT_FIELDS if k in row})
