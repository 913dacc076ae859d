"""Odoo CRM driver (res.partner customers, crm.lead leads and opportunities, chatter transcripts)."""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

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
    national_digits,
)
from drivers.errors import AuthError, DriverError, InvalidRequestError, NotFoundError
from drivers.idempotency import ensure_same_request, request_fingerprint
from drivers.odoo_batch import create_many
from drivers.odoo_rpc import OdooCalls, OdooCredentials, OdooLogin

MODELS = {CrmObject.CUSTOMER: "res.partner", CrmObject.LEAD: "crm.lead", CrmObject.DEAL: "crm.lead",
          CrmObject.NOTE: "mail.message"}
_LEAD_TYPE = {CrmObject.LEAD: "lead", CrmObject.DEAL: "opportunity"}
MODULE = "crm_sor"  # the module of our external ids: crm_sor.k<key digest>f<fingerprint digest>
_STAMP = "%Y-%m-%d %H:%M:%S"  # Odoo's UTC datetime format (second precision)
_PRE = re.compile(r"^<pre>(.*)</pre>$", re.DOTALL)


def xmlid_name(key: str, fingerprint: str) -> str:
    """Our external id's name: digests only (a name is `[A-Za-z0-9_]`, and the key is ours, not the CRM's)."""
    return f"k{hashlib.sha256(key.encode()).hexdigest()[:32]}f{fingerprint[:16]}"


class OdooDriver(OdooCalls):
    """Odoo 16–19 (Community or Enterprise; self-hosted, Odoo.sh or Online "Custom" plans).

    API version: JSON-RPC `object.execute_kw` at `/jsonrpc` on 16–18 (XML-RPC at `/xmlrpc/2/object` on request),
    JSON-2 `/json/2/{model}/{method}` on 19+, chosen by a `common.version` probe (setting `odoo_protocol`).
    Auth: database + login + API key (or password) in every RPC call, after `common.authenticate` gave the uid;
    JSON-2 sends the key as `Authorization: bearer`. Keys do not refresh: a revoked key is an AuthError.
    Pagination: keyset on (`write_date`, `id`) with `order="write_date asc, id asc"` and `limit`.
    Rate limits: none in Odoo; hosting proxies answer 429 with Retry-After, which is honoured. Errors: HTTP 200
    with `error.data.name` (JSON-RPC), Faults 1–4 (XML-RPC), real statuses (JSON-2) — see drivers/odoo_rpc.py.

    Idempotent create: `load` with an external id `crm_sor.k<key digest>f<fingerprint>` (an upsert on repeat),
    found again through `ir.model.data` on retry; the same key with other fields is a ConflictError. Delete
    archives (`active=False`); hard delete is `unlink`. Transcripts are chatter messages (`mail.message`).
    """

    slug = "odoo"
    supported_objects: ClassVar[frozenset[CrmObject]] = frozenset(MODELS)
    hard_delete_supported = True
    batch_size = 200
    credential_form = OdooCredentials
    extra_fields_key: ClassVar[str | None] = "fields"
    default_field_catalog: ClassVar[dict[str, str]] = {
        "customer.name": "name", "customer.email": "email", "customer.phone": "phone",
        "customer.mobile_phone": "mobile", "customer.city": "city", "customer.job_title": "function",
        "customer.reference": "ref",
        "lead.name": "name", "lead.contact_name": "contact_name", "lead.company": "partner_name",
        "lead.email": "email_from", "lead.phone": "phone", "lead.stage": "stage_id", "lead.message": "description",
        "lead.expected_revenue": "expected_revenue",
        "deal.name": "name", "deal.amount": "expected_revenue", "deal.probability": "probability",
        "deal.stage": "stage_id", "deal.company": "partner_name", "deal.description": "description",
        "note.body": "body",
    }

    @classmethod
    def api_base_url(cls, config: Mapping[str, Any] | None = None) -> str:
        config = config or {}
        return str(config.get("instance_url") or config.get("base_url") or "")

    @classmethod
    def build_auth(cls, secret: Mapping[str, Any], config: Mapping[str, Any], tokens: Any) -> httpx.Auth:
        if not secret.get("api_key") or not secret.get("login"):
            raise AuthError("the stored credential has no Odoo login and key", provider=cls.slug)
        return OdooLogin(str(config.get("database") or ""), str(secret["login"]), str(secret["api_key"]))

    # ----- verbs -------------------------------------------------------------------------------

    async def get_record(self, object: CrmObject, external_id: str) -> Record:
        obj = self._require(object)
        rows = await self._read(obj, [["id", "=", self._id(external_id)]], 1)
        if not rows:
            raise NotFoundError("no such record", provider=self.slug, status_code=404, provider_code="MissingError")
        return self._record(obj, rows[0])

    async def search_records(self, object: CrmObject, query: str, limit: int = 20) -> list[Record]:
        obj = self._require(object)
        text = ["name", "email"] if obj is CrmObject.CUSTOMER else ["body"] if obj is CrmObject.NOTE else [
            "name", "contact_name", "email_from"]
        domain: list[Any] = ["|"] * (len(text) - 1) + [[f, "ilike", query] for f in text]
        return [self._record(obj, r) for r in await self._read(obj, domain, limit)]

    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        outcome = (await self.upsert_many(object, [UpsertItem(idempotency_key, fields)]))[0]
        if outcome.error is not None:
            raise outcome.error
        assert outcome.external_id is not None
        return CreateResult(external_id=outcome.external_id, created=outcome.created,
                            record_url=self._url(MODELS[self._require(object)], outcome.external_id))

    async def upsert_many(self, object: CrmObject, items: Sequence[UpsertItem]) -> list[UpsertOutcome]:
        """Creates go through `load` in as few calls as their column sets allow; known ids are `write`s."""
        obj = self._require(object)
        outcomes: dict[int, UpsertOutcome] = {}
        creates: list[tuple[int, UpsertItem]] = []
        for index, item in enumerate(items):
            if item.external_id is None:
                creates.append((index, item))
                continue
            try:
                await self._call(MODELS[obj], "write", [[self._id(item.external_id)], dict(item.fields)])
                outcomes[index] = UpsertOutcome(external_id=item.external_id, created=False)
            except DriverError as exc:
                outcomes[index] = UpsertOutcome(error=exc)
        outcomes |= await create_many(self, obj, creates)
        return [outcomes[i] for i in range(len(items))]

    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        obj = self._require(object)
        await self._call(MODELS[obj], "write", [[self._id(external_id)], dict(fields)])
        return None  # `write` answers only `true`

    async def list_recent(self, object: CrmObject, since: datetime, limit: int = 100) -> list[Record]:
        obj = self._require(object)
        page = int(self.config.get("page_size", 200))
        base: list[Any] = [["write_date", ">=", since.astimezone(UTC).strftime(_STAMP)]]
        out: list[Record] = []
        after: list[Any] = []
        while len(out) < limit:
            asked = min(page, limit - len(out))
            rows = await self._read(obj, base + after, asked, order="write_date asc, id asc")
            out.extend(self._record(obj, r) for r in rows)
            if len(rows) < asked:
                break
            last = rows[-1]  # keyset: stable under concurrent writes, unlike offsets
            after = ["|", ["write_date", ">", last["write_date"]], "&", ["write_date", "=", last["write_date"]],
                     ["id", ">", last["id"]]]
        return out[:limit]

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        obj = self._require(object)
        await self.get_record(obj, external_id)  # archived or unlinked records are not found
        ids = [self._id(external_id)]
        if hard or obj is CrmObject.NOTE:  # messages cannot be archived
            await self._call(MODELS[obj], "unlink", [ids])
            return DeleteResult(deleted=True, hard_deleted=True)
        await self._call(MODELS[obj], "write", [ids, {"active": False}])  # archived: restorable in Odoo
        return DeleteResult(deleted=True, hard_deleted=False)

    async def describe_schema(self, object: CrmObject) -> list[FieldInfo]:
        obj = self._require(object)
        attributes = ["string", "type", "required", "readonly"]
        found = await self._call(MODELS[obj], "fields_get", [], {"attributes": attributes})
        return [FieldInfo(name=name, label=spec.get("string") or name, type=spec.get("type") or "char",
                          required=bool(spec.get("required")), read_only=bool(spec.get("readonly")))
                for name, spec in found.items()]

    async def append_note(
        self, customer_external_id: str, note_external_id: str | None, text: str, *, batch_key: str
    ) -> CreateResult:
        if note_external_id is None:
            fields = {"model": "res.partner", "res_id": self._id(customer_external_id),
                      "body": _html(appended(None, text, batch_key) or ""), "message_type": "comment"}
            fingerprint = request_fingerprint(CrmObject.NOTE, {"customer": customer_external_id, "text": text})
            outcome = (await create_many(self, CrmObject.NOTE, [(0, UpsertItem(batch_key, fields))],
                                         fingerprints={0: fingerprint}))[0]
            if outcome.error is not None:
                raise outcome.error
            assert outcome.external_id is not None
            return CreateResult(external_id=outcome.external_id, created=outcome.created)
        note = await self.get_record(CrmObject.NOTE, note_external_id)
        body = appended(note.fields.get("body") or "", text, batch_key)
        if body is not None:
            await self._call("mail.message", "write", [[self._id(note_external_id)], {"body": _html(body)}])
        return CreateResult(external_id=note_external_id, created=False)

    # ----- provider hooks ----------------------------------------------------------------------

    async def _probe(self) -> None:
        await self._call("res.partner", "check_access_rights", ["read"], {"raise_exception": True})

    async def _find_customer_by_phone(self, e164: str) -> CustomerRecord | None:
        rows = await self._read(CrmObject.CUSTOMER, [["phone_mobile_search", "ilike", national_digits(e164)]], 10)
        return next((self._customer(r) for r in rows if self._same_phone(e164, r.get("phone"), r.get("mobile"))),
                    None)

    async def _find_customer_by_email(self, email: str) -> CustomerRecord | None:
        # `=ilike` treats _ and % as wildcards: confirm the exact address among the hits.
        rows = await self._read(CrmObject.CUSTOMER, [["email", "=ilike", email]], 10)
        return next((self._customer(r) for r in rows if str(r.get("email") or "").lower() == email.lower()), None)

    async def _get_customer(self, external_id: str) -> CustomerRecord:
        return self._customer((await self.get_record(CrmObject.CUSTOMER, external_id)).fields | {"id": external_id})


    # ----- helpers -----------------------------------------------------------------------------

    async def _read(self, obj: CrmObject, domain: list[Any], limit: int, order: str = "id asc") -> list[dict[str, Any]]:
        if obj in _LEAD_TYPE:
            domain = [["type", "=", _LEAD_TYPE[obj]], *domain]
        rows: list[dict[str, Any]] = await self._call(MODELS[obj], "search_read", [domain],
                                                      {"fields": self._fields(obj), "limit": limit, "order": order})
        return rows

    def _fields(self, obj: CrmObject) -> list[str]:
        names = [v for k, v in self.default_field_catalog.items() if k.split(".")[0] == obj.value]
        extra = (self.config.get("fields") or {}).get(obj.value, [])
        basics = ["model", "res_id", "write_date"] if obj is CrmObject.NOTE else ["write_date", "mobile"] if (
            obj is CrmObject.CUSTOMER) else ["write_date", "type"]
        return list(dict.fromkeys([*names, *extra, *basics]))

    def _id(self, external_id: str) -> int:
        if not str(external_id).isdigit():
            raise NotFoundError("no such record", provider=self.slug, status_code=404, provider_code="MissingError")
        return int(external_id)

    def _url(self, model: str, external_id: str) -> str:
        return f"{self.api_base_url(self.config).rstrip('/')}/web#id={external_id}&model={model}&view_type=form"

    def _record(self, obj: CrmObject, row: dict[str, Any]) -> Record:
        fields = {k: v for k, v in row.items() if k != "id"}
        if obj is CrmObject.NOTE and isinstance(fields.get("body"), str):
            fields["body"] = _text(fields["body"])
        stamp = row.get("write_date")
        return Record(object=obj, external_id=str(row["id"]), fields=fields, url=self._url(MODELS[obj], str(row["id"])),
                      updated_at=datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC) if stamp else None)

    def _customer(self, row: dict[str, Any]) -> CustomerRecord:
        def text(name: str) -> str | None:
            value = row.get(name)
            return value if isinstance(value, str) and value else None

        return CustomerRecord(external_id=str(row["id"]), name=text("name"), phone=text("phone") or text("mobile"),
                              email=text("email"), fields={k: v for k, v in row.items() if k != "id"},
                              url=self._url("res.partner", str(row["id"])))

    def replayed(self, found: Mapping[str, Any], fingerprint: str) -> str:
        """The record id of a found external id, after checking its fingerprint (ConflictError otherwise)."""
        ensure_same_request(self.slug, str(found["name"])[-16:], fingerprint[:16], str(found["res_id"]))
        return str(found["res_id"])


def _html(text: str) -> str:
    """A transcript as chatter HTML: preformatted, so its line breaks survive Odoo's sanitizer."""
    return f"<pre>{html.escape(text, quote=False)}</pre>"


def _text(body: str) -> str:
    match = _PRE.match(body.strip())
    return html.unescape(match.group(1)) if match else body


__all__ = ["MODULE", "MODELS", "InvalidRequestError", "OdooCredentials", "OdooDriver", "xmlid_name"]
