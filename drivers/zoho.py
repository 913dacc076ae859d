"""Zoho CRM driver (REST API v8 on the account's data centre: records, upsert, search, fields, Notes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

from drivers.base import (
    CreateResult,
    CrmObject,
    CustomerRecord,
    DeleteResult,
    FieldInfo,
    Record,
    UpsertItem,
    UpsertOutcome,
    appended,
    batch_marker,
    full_name,
    national_digits,
)
from drivers.errors import (
    DriverError,
    InvalidRequestError,
    NotFoundError,
)
from drivers.idempotency import ensure_same_request, provider_key, request_fingerprint
from drivers.zoho_account import MODULES, ZohoAccount

_MAX_PAGE = 200
RECYCLE_BIN_DAYS = 60  # Recycle Bin retention (reference: about 60 days, unverified)


class ZohoDriver(ZohoAccount):
    """Zoho CRM.

    API version: v8 (`/crm/v8/{Leads,Contacts,Deals,Cases,Notes}`, `/settings/fields`) on the account's data
    centre: the authorize redirect's `accounts-server` picks the token host (kept in settings), the token
    response's `api_domain` the API host (US, EU, IN, AU, JP, CN, CA, SA, AE, UK). Auth: OAuth2 authorization code
    with `Authorization: Zoho-oauthtoken …`; access tokens live 1 h, a refresh never rotates the refresh
    token, and the accounts server allows 10 access tokens per refresh token per 10 minutes (over it:
    "Access Denied", mapped to rate_limited so a refresh storm never marks the tenant for reconnect).
    Pagination: `page`/`per_page` (≤ 200) up to 2,000 records, then `info.next_page_token`; v8 list GETs
    require `fields`. Rate limits: 24-hour API credits per org plus a concurrency cap; over either, 429
    TOO_MANY_REQUESTS (Retry-After when sent, else config `limit_retry_after_seconds`, default 60).

    Idempotent create: read by the key field (`X-EXTERNAL: {Module}.Crm_Sor_Key`, an External ID field our
    installer adds: a consistent read, unlike the lagging search index), then `/upsert` with
    `duplicate_check_fields` on it, the request fingerprint in `Crm_Sor_Fingerprint`. Transcripts are Notes on
    the Contact, found again by their batch marker. Delete moves to the Recycle Bin; `hard` also purges it
    there. Phone search uses `?phone=` (all phone fields).
    """

    supported_objects: ClassVar[frozenset[CrmObject]] = frozenset(MODULES)
    hard_delete_supported = True
    idempotency_field = "Crm_Sor_Key"
    fingerprint_field = "Crm_Sor_Fingerprint"
    extra_fields_key: ClassVar[str | None] = "fields"
    keyed_objects: ClassVar[frozenset[CrmObject]] = frozenset(MODULES) - {CrmObject.NOTE}  # notes: no keys
    default_field_catalog: ClassVar[dict[str, str]] = {
        "customer.first_name": "First_Name", "customer.last_name": "Last_Name", "customer.email": "Email",
        "customer.phone": "Phone", "customer.mobile_phone": "Mobile", "customer.title": "Title",
        "customer.city": "Mailing_City",
        "lead.first_name": "First_Name", "lead.last_name": "Last_Name", "lead.email": "Email",
        "lead.phone": "Phone", "lead.company": "Company", "lead.status": "Lead_Status",
        "lead.source": "Lead_Source", "lead.city": "City", "lead.message": "Description",
        "deal.name": "Deal_Name", "deal.amount": "Amount", "deal.stage": "Stage", "deal.close_date": "Closing_Date",
        "deal.description": "Description",
        "case.subject": "Subject", "case.description": "Description", "case.status": "Status",
        "case.priority": "Priority", "case.origin": "Case_Origin",
        "note.subject": "Note_Title", "note.body": "Note_Content",
    }

    # ----- verbs -------------------------------------------------------------------------------

    async def get_record(self, object: CrmObject, external_id: str) -> Record:
        obj = self._require(object)
        return self._record(obj, await self._get_row(obj, external_id))

    async def search_records(self, object: CrmObject, query: str, limit: int = 20) -> list[Record]:
        obj = self._require(object)
        if len(query.strip()) < 2:
            raise InvalidRequestError("search needs at least two characters", provider=self.slug)
        return [self._record(obj, r) for r in await self._search(obj, {"word": query.strip()}, limit)]

    async def list_recent(self, object: CrmObject, since: datetime, limit: int = 100) -> list[Record]:
        obj = self._require(object)
        headers = {"If-Modified-Since": since.astimezone(UTC).isoformat(timespec="seconds")}
        params: dict[str, Any] = {"fields": ",".join(self._fields(obj)), "sort_by": "Modified_Time",
                                  "sort_order": "asc", "per_page": min(max(limit, 1), _MAX_PAGE), "page": 1}
        rows: list[dict[str, Any]] = []
        while len(rows) < limit:
            response = await self._request("GET", f"/crm/v8/{MODULES[obj]}", params=params, headers=headers)
            if response.status_code in (204, 304):  # nothing (more) modified since
                break
            body = self._json("GET", response)
            rows.extend(body.get("data") or [])
            info = body.get("info") or {}
            if not info.get("more_records"):
                break
            # Past 2,000 records only the page token continues; use it whenever it is offered.
            token = info.get("next_page_token")
            params = {k: v for k, v in params.items() if k != "page"} | (
                {"page_token": token} if token else {"page": int(info.get("page", params.get("page", 1))) + 1})
        return [self._record(obj, r) for r in rows[:limit]]

    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        obj = self._require(object)
        if obj is CrmObject.NOTE:
            raise InvalidRequestError("notes are written with append_note", provider=self.slug)
        key, fingerprint = provider_key(idempotency_key), request_fingerprint(obj, fields)
        existing = await self._by_key(obj, key)
        if existing is not None:
            ensure_same_request(self.slug, existing.get(self._fingerprint_field), fingerprint, str(existing["id"]))
            return CreateResult(external_id=existing["id"], record_url=self._url(obj, existing["id"]), created=False)
        outcome = (await self._upsert(obj, [dict(fields) | {self._key_field: key,
                                                             self._fingerprint_field: fingerprint}]))[0]
        if outcome.error is not None:
            raise outcome.error
        assert outcome.external_id is not None
        return CreateResult(external_id=outcome.external_id, record_url=self._url(obj, outcome.external_id),
                            created=outcome.created)

    async def upsert_many(self, object: CrmObject, items: Sequence[UpsertItem]) -> list[UpsertOutcome]:
        """Known ids go to one bulk update; new items are read by key in one COQL query (a retried batch finds
        what it wrote: replayed, or a ConflictError for other fields), the rest go to one `/upsert`."""
        obj = self._require(object)
        if len(items) > self.batch_size:
            raise InvalidRequestError(f"at most {self.batch_size} records per batch", provider=self.slug)
        outcomes: list[UpsertOutcome | None] = [None] * len(items)
        updates = [(i, it) for i, it in enumerate(items) if it.external_id is not None]
        creates = [(i, it) for i, it in enumerate(items) if it.external_id is None]
        if updates:
            rows = [dict(it.fields) | {"id": it.external_id} for _, it in updates]
            for (i, it), got in zip(updates, await self._write("PUT", obj, rows), strict=True):
                outcomes[i] = got if got.error else UpsertOutcome(external_id=it.external_id, created=False)
        # Keys already written (a retried batch) are replayed or refused by fingerprint, never overwritten.
        known = await self._keyed(obj, [provider_key(it.idempotency_key) for _, it in creates])
        fresh: list[tuple[int, dict[str, Any]]] = []
        for i, it in creates:
            key, fingerprint = provider_key(it.idempotency_key), request_fingerprint(obj, it.fields)
            if key not in known:
                fresh.append((i, dict(it.fields) | {self._key_field: key, self._fingerprint_field: fingerprint}))
                continue
            try:
                ensure_same_request(self.slug, known[key].get(self._fingerprint_field), fingerprint,
                                    str(known[key]["id"]))
                outcomes[i] = UpsertOutcome(external_id=str(known[key]["id"]), created=False)
            except DriverError as exc:
                outcomes[i] = UpsertOutcome(error=exc)
        if fresh:
            for (i, _), got in zip(fresh, await self._upsert(obj, [row for _, row in fresh]), strict=True):
                outcomes[i] = got
        return [o for o in outcomes if o is not None]

    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        obj = self._require(object)
        path = f"/crm/v8/{MODULES[obj]}/{quote(external_id, safe='')}"
        await self._one("PUT", path, json={"data": [dict(fields)], "trigger": []})
        return None  # Zoho answers with the id and audit stamps only

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        obj = self._require(object)
        record_id = quote(external_id, safe="")
        await self._one("DELETE", f"/crm/v8/{MODULES[obj]}/{record_id}")
        if hard:  # the Recycle Bin keeps it otherwise; purging it there is permanent
            await self._one("DELETE", f"/crm/v8/settings/recycle_bin/{record_id}")
        return DeleteResult(deleted=True, hard_deleted=hard, purge_delay_days=None if hard else RECYCLE_BIN_DAYS)

    async def create_field(self, object: CrmObject, name: str, label: str, *, unique: bool) -> bool:
        """The fields API (`ZohoCRM.settings.fields.CREATE` scope); the label spelled so Zoho derives `name`."""
        module = MODULES[self._require(object)]
        item: dict[str, Any] = {"field_label": name.replace("_", " "), "api_name": name, "data_type": "text",
                                "length": 255}
        if unique:
            item["unique"] = {"casesensitive": False}
        # A refusal (also a field another run made meanwhile: INVALID_DATA) raises; the installer re-checks.
        await self._request("POST", "/crm/v8/settings/fields", params={"module": module}, json={"fields": [item]})
        return True

    async def describe_schema(self, object: CrmObject) -> list[FieldInfo]:
        obj = self._require(object)
        body = await self._request_json("GET", "/crm/v8/settings/fields", params={"module": MODULES[obj]})
        return [
            FieldInfo(name=f["api_name"], label=f.get("display_label") or f["api_name"],
                      type=f.get("data_type") or "text", required=bool(f.get("system_mandatory")),
                      read_only=bool(f.get("read_only") or f.get("field_read_only")))
            for f in body.get("fields", [])
        ]

    async def append_note(
        self, customer_external_id: str, note_external_id: str | None, text: str, *, batch_key: str
    ) -> CreateResult:
        if note_external_id is None:
            # Notes take no custom fields: a lost create is found again by its batch marker on the Contact.
            found = await self._note_with_marker(customer_external_id, batch_marker(batch_key))
            if found is not None:
                return CreateResult(external_id=found, record_url=self._url(CrmObject.NOTE, found), created=False)
            row = {"Note_Title": str(self.config.get("note_subject", "Conversation transcript")),
                   "Note_Content": appended(None, text, batch_key),
                   "Parent_Id": {"module": {"api_name": "Contacts"}, "id": customer_external_id}}
            outcome = (await self._write("POST", CrmObject.NOTE, [row]))[0]
            if outcome.error is not None:
                raise outcome.error
            assert outcome.external_id is not None
            return CreateResult(external_id=outcome.external_id, record_url=self._url(CrmObject.NOTE,
                                                                                      outcome.external_id))
        current = (await self._get_row(CrmObject.NOTE, note_external_id)).get("Note_Content")
        content = appended(current, text, batch_key)
        if content is not None:
            await self.update_record(CrmObject.NOTE, note_external_id, {"Note_Content": content})
        return CreateResult(external_id=note_external_id, record_url=self._url(CrmObject.NOTE, note_external_id),
                            created=False)

    # ----- provider hooks ----------------------------------------------------------------------

    async def _probe(self) -> None:
        await self._request("GET", "/crm/v8/users", params={"type": "CurrentUser"})

    async def _find_customer_by_phone(self, e164: str) -> CustomerRecord | None:
        # `phone` searches every phone field, ignoring formatting; the country code is checked here.
        for row in await self._search(CrmObject.CUSTOMER, {"phone": national_digits(e164)}, 10):
            if self._same_phone(e164, row.get("Phone"), row.get("Mobile")):
                return self._customer(row)
        return None

    async def _find_customer_by_email(self, email: str) -> CustomerRecord | None:
        rows = await self._search(CrmObject.CUSTOMER, {"email": email}, 1)
        return self._customer(rows[0]) if rows else None

    async def _get_customer(self, external_id: str) -> CustomerRecord:
        return self._customer(await self._get_row(CrmObject.CUSTOMER, external_id))

    # ----- helpers -----------------------------------------------------------------------------

    async def _get_row(self, obj: CrmObject, record_id: str, headers: dict[str, str] | None = None
                       ) -> dict[str, Any]:
        path = f"/crm/v8/{MODULES[obj]}/{quote(record_id, safe='')}"
        body = await self._request_json("GET", path, params={"fields": ",".join(self._fields(obj))}, headers=headers)
        if not body or not body.get("data"):  # 204: no such record (or it is in the Recycle Bin)
            raise NotFoundError("GET found no record", provider=self.slug, status_code=204)
        row: dict[str, Any] = body["data"][0]
        return row

    async def _by_key(self, obj: CrmObject, key: str) -> dict[str, Any] | None:
        try:
            return await self._get_row(obj, key, {"X-EXTERNAL": f"{MODULES[obj]}.{self._key_field}"})
        except NotFoundError:
            return None

    async def _note_with_marker(self, customer_id: str, marker: str) -> str | None:
        path = f"/crm/v8/Contacts/{quote(customer_id, safe='')}/Notes"
        body = await self._request_json("GET", path, params={"fields": "Note_Content", "per_page": _MAX_PAGE})
        for note in (body or {}).get("data") or []:
            if marker in (note.get("Note_Content") or ""):
                return str(note["id"])
        return None

    async def _search(self, obj: CrmObject, criteria: dict[str, str], limit: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 1
        while len(rows) < limit:
            params = criteria | {"fields": ",".join(self._fields(obj)), "per_page": min(limit, _MAX_PAGE),
                                 "page": page}
            body = await self._request_json("GET", f"/crm/v8/{MODULES[obj]}/search", params=params)
            if not body:  # 204 No Content: no match
                break
            rows.extend(body.get("data") or [])
            if not (body.get("info") or {}).get("more_records"):
                break
            page += 1
        return rows[:limit]

    def _fields(self, obj: CrmObject) -> list[str]:
        names = [v for k, v in self.default_field_catalog.items() if k.split(".")[0] == obj.value]
        extra = (self.config.get("fields") or {}).get(str(obj), [])
        keys = [] if obj is CrmObject.NOTE else [self._key_field, self._fingerprint_field]
        return list(dict.fromkeys(["id", *names, *extra, *keys, "Modified_Time"]))

    def _record(self, obj: CrmObject, row: dict[str, Any]) -> Record:
        stamp = row.get("Modified_Time")
        return Record(object=obj, external_id=str(row["id"]), fields=dict(row), url=self._url(obj, str(row["id"])),
                      updated_at=datetime.fromisoformat(stamp).astimezone(UTC) if stamp else None)

    def _customer(self, row: dict[str, Any]) -> CustomerRecord:
        return CustomerRecord(external_id=str(row["id"]), name=full_name(row.get("First_Name"), row.get("Last_Name")),
                              phone=row.get("Phone") or row.get("Mobile"), email=row.get("Email"), fields=dict(row),
                              url=self._url(CrmObject.CUSTOMER, str(row["id"])))
