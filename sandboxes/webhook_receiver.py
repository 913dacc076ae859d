"""A partner's endpoint for the custom webhook driver: verifies Standard Webhooks signatures and implements the
v1 event contract of docs/custom_webhook.md over an in-memory store.

It is what a tenant would build: one `POST /hooks/crm` that checks `webhook-signature` against every secret it
holds (so a rotation's overlap works), rejects stale or future timestamps (±5 min), dedupes creates by
idempotency key (409 when the same key comes with another fingerprint), and answers errors as
`{"error": "<code>"}` with 400/401/404/409/429(+Retry-After)/5xx.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import phonenumbers
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drivers.webhook_signing import SignatureError, new_secret, verify
from sandboxes.common import FaultAnswers, SandboxState, TokenIssuer, control_routes, with_faults

PATH = "/hooks/crm"
SCHEMA: dict[str, tuple[str, ...]] = {
    "customer": ("first_name", "last_name", "email", "phone", "company", "city"),
    "lead": ("first_name", "last_name", "email", "phone", "status", "message"),
    "deal": ("name", "amount", "stage", "description"),
    "case": ("subject", "description", "status", "priority"),
    "appointment": ("title", "starts_at", "duration_minutes"),
    "note": ("body", "customer_id"),
}


class ReceiverSecrets(TokenIssuer):
    """The signing secrets the receiver holds. `expire_all` is the receiver rotating on its own: our signatures
    stop verifying (the tenant must reconnect), like a revoked credential elsewhere."""

    def __init__(self) -> None:
        super().__init__("hook", None)
        self.held: list[str] = [new_secret()]

    def expire_all(self) -> None:
        self.held = [new_secret()]


@dataclass
class ReceiverState(SandboxState):
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in SCHEMA})
    rejected: Counter[str] = field(default_factory=Counter)  # signature failures by reason
    seen_ids: list[str] = field(default_factory=list)  # webhook-id of every verified request
    next_id: int = 101
    region: str = "US"  # the partner's own country: how it reads the national numbers its users typed

    @property
    def secrets(self) -> ReceiverSecrets:
        assert isinstance(self.tokens, ReceiverSecrets)
        return self.tokens

    def add(self, object: str, fields: dict[str, Any], key: str | None = None, fingerprint: str | None = None
            ) -> str:
        record_id = f"{object[:3]}_{self.next_id}"
        self.next_id += 1
        self.records[object][record_id] = {"id": record_id, "fields": dict(fields), "key": key,
                                           "fingerprint": fingerprint, "updated_at": self.now().isoformat()}
        return record_id

    def live(self, object: str) -> list[dict[str, Any]]:
        return list(self.records[object].values())


class Problem(Exception):
    def __init__(self, status: int, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.extra = status, code, extra


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "fields": row["fields"], "updated_at": row["updated_at"],
            "url": f"https://partner.example/records/{row['id']}"}


def _e164(raw: Any, region: str = "US") -> str | None:
    try:
        number = phonenumbers.parse(str(raw), region)
    except phonenumbers.NumberParseException:
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def handle(state: ReceiverState, event: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One event of the v1 contract: (status, body)."""
    if event == "connection.test":
        return 200, {"ok": True}
    if event == "customer.lookup":
        return 200, {"customer": _lookup(state, data)}
    obj = str(data.get("object"))
    if obj not in SCHEMA:
        raise Problem(400, "unsupported_object")
    rows = state.records[obj]
    if event == "schema.describe":
        return 200, {"fields": [{"name": n, "label": n.replace("_", " ").title(), "type": "string",
                                 "required": False, "read_only": False} for n in SCHEMA[obj]]}
    if event == "record.create":
        fields = _checked(obj, data.get("fields"))
        key, fingerprint = str(data.get("idempotency_key") or ""), data.get("fingerprint")
        for row in rows.values():
            if key and row["key"] == key:
                if row["fingerprint"] != fingerprint:
                    raise Problem(409, "idempotency_key_reused", id=row["id"])
                return 200, {"id": row["id"], "created": False, "url": _shown(row)["url"]}
        record_id = state.add(obj, fields, key or None, fingerprint)
        return 201, {"id": record_id, "created": True, "url": _shown(rows[record_id])["url"]}
    if event == "record.search":
        query = str(data.get("query") or "").lower()
        hits = [_shown(r) for r in rows.values() if any(query in str(v).lower() for v in r["fields"].values())]
        return 200, {"records": hits[: int(data.get("limit") or 20)]}
    if event == "record.list_recent":
        since = datetime.fromisoformat(str(data["since"]))
        recent = sorted((r for r in rows.values() if datetime.fromisoformat(r["updated_at"]) >= since),
                        key=lambda r: (r["updated_at"], r["id"]))
        start = int(data.get("cursor") or 0)
        size = state.page_size(int(data.get("limit") or 100), 100)
        page = recent[start:start + size]
        more = start + size < len(recent)
        return 200, {"records": [_shown(r) for r in page], "next_cursor": str(start + size) if more else None}
    found = rows.get(str(data.get("id")))
    if found is None:
        raise Problem(404, "not_found")
    row = found
    if event == "record.get":
        return 200, {"record": _shown(row)}
    if event == "record.update":
        row["fields"] |= _checked(obj, data.get("fields"))
        row["updated_at"] = state.now().isoformat()
        return 200, {"record": _shown(row)}
    if event == "record.delete":
        del rows[row["id"]]
        return 200, {"deleted": True, "hard_deleted": bool(data.get("hard"))}
    raise Problem(400, "unknown_event")


def _checked(obj: str, fields: Any) -> dict[str, Any]:
    if not isinstance(fields, dict):
        raise Problem(400, "invalid_fields")
    if any(name not in SCHEMA[obj] for name in fields):
        raise Problem(400, "unknown_field")
    return fields


def _lookup(state: ReceiverState, data: dict[str, Any]) -> dict[str, Any] | None:
    for row in state.records["customer"].values():
        fields = row["fields"]
        if ((data.get("external_id") and row["id"] == data["external_id"])
                or (data.get("email") and str(fields.get("email", "")).lower() == str(data["email"]).lower())
                or (data.get("phone") and fields.get("phone")
                    and _e164(fields["phone"], state.region) == data["phone"])):
            name = " ".join(p for p in (fields.get("first_name"), fields.get("last_name")) if p) or None
            return {"id": row["id"], "name": name, "email": fields.get("email"), "phone": fields.get("phone"),
                    "fields": fields, "url": _shown(row)["url"]}
    return None


def create_app(state: ReceiverState | None = None) -> Starlette:
    state = state or ReceiverState(tokens=ReceiverSecrets())

    answers = FaultAnswers(
        server_error=lambda status: JSONResponse({"error": "unavailable"}, status_code=status),
        rate_limited=lambda: JSONResponse({"error": "rate_limited"}, status_code=429,
                                          headers={"Retry-After": state.knobs.retry_after or "30"}))

    async def hook(request: Request) -> Response:
        raw = await request.body()
        failures = []
        for secret in state.secrets.held:  # any held secret may verify (rotation overlap on our side)
            try:
                verify(secret, dict(request.headers), raw)
                break
            except SignatureError as exc:
                failures.append(str(exc))
        else:
            state.rejected[failures[0] if failures else "no secret"] += 1
            return JSONResponse({"error": "invalid_signature"}, status_code=401)
        state.seen_ids.append(request.headers["webhook-id"])
        try:
            payload = await request.json()
            event, data = str(payload["type"]), dict(payload.get("data") or {})
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "malformed_event"}, status_code=400)
        async def run() -> Response:
            try:
                status, body = handle(state, event, data)
            except Problem as problem:
                return JSONResponse({"error": problem.code, **problem.extra}, status_code=problem.status)
            return JSONResponse(body, status_code=status)

        return await with_faults(state, f"POST {PATH} {event}", answers, run)

    app = Starlette(routes=[Route(PATH, hook, methods=["POST"]), *control_routes(state)])
    app.state.sandbox = state
    return app
