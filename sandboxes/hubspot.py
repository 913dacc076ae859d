"""HubSpot CRM v3 sandbox: contacts/deals/tickets/notes, search, properties, GDPR delete, OAuth v1/v3
(v1 retirable).

Wire facts from ../shared/reference (HubSpot section): Bearer tokens that expire after 1800 s, refresh
grant with client credentials in the form body, `{"status":"error","category":...}` error bodies,
429 + `X-HubSpot-RateLimit-*` headers, search with filterGroups and `paging.next.after`, archive on
DELETE (GET then 404 unless `archived=true`), and permanent `gdpr-delete` for contacts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drivers.hubspot import ARCHIVE_PURGE_DAYS  # the provider's fact, declared once in its driver
from sandboxes import hubspot_schema as schema
from sandboxes.common import SandboxState, TokenIssuer, control_routes, guarded, iso_ms, oauth_routes
from sandboxes.hubspot_batch import batch_handlers
from sandboxes.hubspot_search import SearchIndex, SecondlyLimit, filter_problem, matches, sort_key
from sandboxes.hubspot_webhooks import HubSpotWebhooks, webhook_routes
from sandboxes.hubspot_wire import (
    HsRecord,
    HubSpotWire,
    as_property,
    conflict,
    error,
    public,
    secondly_limited,
    validate,
    wanted,
)

OBJ = "/crm/v3/objects/{object_type}"
SEARCH_LAG_SECONDS = 2.0  # "a few seconds" (shared/reference HubSpot 1.5): long enough to bite a repeat call
SEARCH_PER_SECOND = 4
NOTE_TO_CONTACT = 202  # HUBSPOT_DEFINED association type id


@dataclass
class HubSpotState(SandboxState):
    portal_id: int = 62515
    records: dict[str, dict[str, HsRecord]] = field(default_factory=dict)
    next_id: int = 1001
    # HubSpot retires the v1 OAuth endpoints on 2027-02-16 (changelog "v1-oauth-api-deprecation"): set this
    # to answer /oauth/v1/token as HubSpot will after that date, while /oauth/v3/token keeps working.
    v1_oauth_retired: bool = False
    webhooks: HubSpotWebhooks = field(default_factory=HubSpotWebhooks)  # app subscriptions + signed deliveries
    _header_window: list[float] = field(default_factory=list)

    def count_unlimited_call(self) -> int:
        """Calls in the current window while no limit is enforced (for the rate-limit headers only)."""
        now = self.tokens.clock()
        self._header_window = [t for t in self._header_window if now - t < self.knobs.interval_seconds] + [now]
        return len(self._header_window)

    # Properties the portal's admin (or our installer, through the properties API) created: type → definitions.
    custom_properties: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # False: a fresh portal without the crm_sor_* properties our installer creates (schema.INSTALLER_PROPERTIES).
    installed: bool = True
    # False: the app's token lacks the crm.schemas.*.write scopes, so property creation is refused (403).
    schema_write: bool = True

    def property_definitions(self, object_type: str) -> list[dict[str, Any]]:
        builtin = [p for p in schema.property_definitions(object_type)
                   if self.installed or p["name"] not in schema.INSTALLER_PROPERTIES]
        return [*builtin, *self.custom_properties.get(object_type, [])]

    def property_names(self, object_type: str) -> set[str]:
        return {p["name"] for p in self.property_definitions(object_type)}

    # Search fidelity (sandboxes/hubspot_search.py): the index lags API writes by `search_index.lag_seconds`
    # (default on; 0 turns it off), and search has its own per-second limit (`search_limit.per_second`, None: off).
    search_index: SearchIndex = field(init=False)
    search_limit: SecondlyLimit = field(init=False)

    def __post_init__(self) -> None:
        self.search_index = SearchIndex(SEARCH_LAG_SECONDS, self.tokens.clock)
        self.search_limit = SecondlyLimit(SEARCH_PER_SECOND, self.tokens.clock)

    def instant_search(self) -> HubSpotState:
        """No index lag and no per-second search limit: for tests and demos about something else."""
        self.search_index.lag_seconds, self.search_limit.per_second = 0.0, None
        return self

    def add(self, object_type: str, properties: dict[str, Any]) -> HsRecord:
        """Create a record as the API would (also used by tests to seed data without API calls)."""
        now = iso_ms(self.now())
        record_id = str(self.next_id)
        self.next_id += 1
        props = {k: as_property(v) for k, v in properties.items()}
        props |= {"hs_object_id": record_id, schema.CREATED_PROPERTY[object_type]: now}
        record = HsRecord(record_id, object_type, props, now, now)
        self._touch(record, now)
        self.records.setdefault(object_type, {})[record_id] = record
        self.webhooks.emit(object_type, record_id, "creation", _ms(now))
        return record

    def _touch(self, record: HsRecord, now: str) -> None:
        record.updated_at = now
        record.properties[schema.MODIFIED_PROPERTY[record.object_type]] = now
        if record.object_type == "contacts":
            for source, target in (("phone", "phone_number"), ("mobilephone", "mobile_number")):
                record.properties[f"hs_searchable_calculated_{target}"] = schema.searchable_phone(
                    record.properties.get(source)
                )

    def update(self, record: HsRecord, properties: dict[str, Any]) -> None:
        record.properties.update({k: as_property(v) for k, v in properties.items()})
        now = iso_ms(self.now())
        self._touch(record, now)
        for name in properties:
            self.webhooks.emit(record.object_type, record.id, "propertyChange", _ms(now), name,
                               record.properties.get(name))

    def purge_archived(self) -> None:
        """What HubSpot does by itself: an archived record is restorable (and readable with archived=true) for
        90 days, then gone for good."""
        horizon = self.now() - timedelta(days=ARCHIVE_PURGE_DAYS)
        for records in self.records.values():
            # getattr: a record pickled by an older `crm-sor dev` (.crm-sor/sandboxes/) has no archived_at yet.
            for record_id in [r.id for r in records.values() if (getattr(r, "archived_at", None) or horizon) < horizon]:
                del records[record_id]

    def find(self, object_type: str, value: str, id_property: str | None, archived: bool) -> HsRecord | None:
        self.purge_archived()
        for record in self.records.get(object_type, {}).values():
            if record.archived != archived:
                continue
            if (id_property is None and record.id == value) or (
                id_property is not None and (record.properties.get(id_property) or "").lower() == value.lower()
            ):
                return record
        return None


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _paged(items: list[dict[str, Any]], start: int, size: int, **extra: Any) -> JSONResponse:
    out: dict[str, Any] = extra | {"results": items[start : start + size]}
    if start + size < len(items):
        out["paging"] = {"next": {"after": str(start + size), "link": f"?after={start + size}"}}
    return JSONResponse(out)


def create_app(state: HubSpotState | None = None) -> Starlette:
    """The HubSpot sandbox app; `app.state.sandbox` is the HubSpotState tests inspect and steer."""
    st = state or HubSpotState(tokens=TokenIssuer("hubspot", 1800))
    st.tokens.echo_refresh_token = True
    st.webhooks.client_secret, st.webhooks.portal_id = st.tokens.client_secret, st.portal_id
    wire = HubSpotWire()

    def typed(handler: Callable[[Request, str], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Resolve {object_type} once, answering HubSpot's error for an unknown type."""

        async def endpoint(request: Request) -> Response:
            object_type = request.path_params.get("object_type", "contacts")
            if object_type not in schema.OBJECT_TYPE_IDS:
                return error(400, "VALIDATION_ERROR", f"Unable to infer object type from: {object_type}")
            return await handler(request, object_type)

        return endpoint

    def not_found() -> Response:
        return error(404, "OBJECT_NOT_FOUND", "resource not found")

    @typed
    async def create(request: Request, object_type: str) -> Response:
        body = await request.json()
        props = body.get("properties") or {}
        problem = validate(object_type, props, creating=True, state=st) or conflict(st, object_type, props, None)
        if problem:
            return problem
        record = st.add(object_type, props)
        st.search_index.written(object_type, record.id, None)
        for assoc in body.get("associations") or []:
            for kind in assoc.get("types", []):
                record.associations.append(("contacts", str(assoc["to"]["id"]), int(kind["associationTypeId"])))
        return JSONResponse(public(record, None), status_code=201)

    @typed
    async def read(request: Request, object_type: str) -> Response:
        q = request.query_params
        archived = q.get("archived", "false") == "true"
        record = st.find(object_type, request.path_params["record_id"], q.get("idProperty"), archived)
        if record is None:
            return not_found()
        body = public(record, wanted(request))
        if "associations" in q:
            body["associations"] = {
                "contacts": {"results": [{"id": i, "type": "note_to_contact"} for _, i, _ in record.associations]}
            }
        return JSONResponse(body)

    @typed
    async def patch(request: Request, object_type: str) -> Response:
        record = st.find(object_type, request.path_params["record_id"], request.query_params.get("idProperty"), False)
        if record is None:
            return not_found()
        props = (await request.json()).get("properties") or {}
        problem = validate(object_type, props, creating=False, state=st) or conflict(st, object_type, props, record.id)
        if problem:
            return problem
        before = dict(record.properties)
        st.update(record, props)
        st.search_index.written(object_type, record.id, before)
        return JSONResponse(public(record, None))

    @typed
    async def archive(request: Request, object_type: str) -> Response:
        record = st.find(object_type, request.path_params["record_id"], None, False)
        if record is not None:  # HubSpot answers 204 for an unknown or already archived id too
            record.archived, record.archived_at = True, st.now()
            record.updated_at = iso_ms(record.archived_at)
            st.webhooks.emit(object_type, record.id, "deletion", _ms(record.updated_at))
        return Response(status_code=204)

    @typed
    async def gdpr_delete(request: Request, object_type: str) -> Response:
        body = await request.json()
        value, id_property = str(body.get("objectId", "")), body.get("idProperty")
        record = st.find("contacts", value, id_property, False) or st.find("contacts", value, id_property, True)
        if record is None:
            return not_found()
        del st.records["contacts"][record.id]  # permanent: not even in the archive
        return Response(status_code=204)

    @typed
    async def search(request: Request, object_type: str) -> Response:
        if not st.search_limit.take():
            return secondly_limited()
        body = await request.json()
        limit = int(body.get("limit", 10))
        if limit > 200:
            return error(400, "VALIDATION_ERROR", "limit must be less than or equal to 200")
        problem = filter_problem(body)
        if problem:
            return error(400, "VALIDATION_ERROR", problem)
        rows = [r for r in st.records.get(object_type, {}).values() if not r.archived]
        views = ((r, st.search_index.view(object_type, r, r.id)) for r in rows)
        searched = schema.QUERY_PROPERTIES[object_type]
        hits = [r for r, seen in views if seen is not None and matches(seen, body, searched)]
        for sort in reversed(body.get("sorts") or []):
            hits.sort(key=sort_key(sort), reverse=str(sort.get("direction", "ASCENDING")) == "DESCENDING")
        names = list(dict.fromkeys([*schema.DEFAULT_PROPERTIES[object_type], *(body.get("properties") or [])]))
        start, size = int(body.get("after") or 0), st.page_size(limit, 200)
        return _paged([public(r, names) for r in hits], start, size, total=len(hits))

    @typed
    async def list_objects(request: Request, object_type: str) -> Response:
        q = request.query_params
        archived = q.get("archived", "false") == "true"
        st.purge_archived()
        hits = [r for r in st.records.get(object_type, {}).values() if r.archived == archived]
        start, size = int(q.get("after") or 0), st.page_size(int(q.get("limit", 10)), 100)
        return _paged([public(r, wanted(request)) for r in hits], start, size)

    @typed
    async def properties(request: Request, object_type: str) -> Response:
        return JSONResponse({"results": st.property_definitions(object_type)})

    @typed
    async def create_property(request: Request, object_type: str) -> Response:
        if not st.schema_write:
            return error(403, "MISSING_SCOPES", "This app hasn't been granted all required scopes to make this call.",
                         errors=[{"message": "One or more of the following scopes are required.",
                                  "context": {"requiredGranularScopes": [f"crm.schemas.{object_type}.write"]}}])
        body = await request.json()
        problem = schema.property_problem(body, st.property_names(object_type))
        if problem is not None:
            return error(*problem)
        created = schema.custom_property(object_type, body)
        st.custom_properties.setdefault(object_type, []).append(created)
        return JSONResponse(created, status_code=201)

    api = [
        ("POST", "/crm/v3/objects/contacts/gdpr-delete", gdpr_delete),
        ("POST", OBJ + "/search", search),
        ("GET", OBJ, list_objects),
        ("POST", OBJ, create),
        ("GET", OBJ + "/{record_id}", read),
        ("PATCH", OBJ + "/{record_id}", patch),
        ("DELETE", OBJ + "/{record_id}", archive),
        ("GET", "/crm/v3/properties/{object_type}", properties),
        ("POST", "/crm/v3/properties/{object_type}", create_property),
    ]
    api += [("POST", OBJ + f"/batch/{verb}", typed(handler)) for verb, handler in batch_handlers(st).items()]
    v1_token, v3_token, authorize = oauth_routes(st, wire, token_paths=["/oauth/v1/token", "/oauth/v3/token"],
                                                 authorize_path="/oauth/authorize")

    async def token_v1(request: Request) -> Response:
        if st.v1_oauth_retired:
            st.calls["POST /oauth/v1/token"] += 1
            return error(404, "OBJECT_NOT_FOUND", "The OAuth v1 API has been retired; use /oauth/v3/token.")
        answer: Response = await v1_token.endpoint(request)
        return answer

    routes = [
        Route("/oauth/v1/token", token_v1, methods=["POST"]), v3_token, authorize,
        *control_routes(st),
        *webhook_routes(st.webhooks),
        *(guarded(st, wire, method, path, handler) for method, path, handler in api),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = st
    return app
