"""Two generic REST configurations, for the two differently shaped sandbox APIs (sandboxes/generic_rest.py), as an
operator would post them to connect."""

from __future__ import annotations

from typing import Any

from sandboxes.generic_rest import OBJECTS, RestState
from sandboxes.generic_rest_flat import FLAT_URL, SINGULAR, flat_config

__all__ = ["FLAT_URL", "JSONAPI_URL", "SINGULAR", "flat_config", "jsonapi_config"]

JSONAPI_URL = "https://api.jsonapi.example/jsonapi"


def _jsonapi_object(plural: str) -> dict[str, Any]:
    cursor = {"type": "cursor", "cursor_param": "page[cursor]", "cursor_path": "meta.next_cursor",
              "limit_param": "page[size]"}
    document = {"data": {"type": plural, "attributes": "{{ fields }}"}}
    verbs: dict[str, Any] = {
        "get": {"path": f"/{plural}/{{{{ id }}}}", "record_path": "data"},
        "search": {"path": f"/{plural}", "query": {"filter[q]": "{{ query }}"}, "records_path": "data",
                   "pagination": cursor},
        "create": {"method": "POST", "path": f"/{plural}", "body": document, "record_path": "data",
                   "headers": {"Content-Type": "application/vnd.api+json"}},
        "update": {"method": "PATCH", "path": f"/{plural}/{{{{ id }}}}", "body": document, "record_path": "data"},
        "delete": {"method": "DELETE", "path": f"/{plural}/{{{{ id }}}}"},
        "list_recent": {"path": f"/{plural}", "since_param": "filter[updated_since]", "records_path": "data",
                        "pagination": {"type": "link", "limit_param": "page[size]"}},
        "find_by_key": {"path": f"/{plural}", "query": {"filter[key]": "{{ key }}"}, "records_path": "data"},
    }
    if plural == "customers":
        verbs["lookup_phone"] = {"path": "/customers", "query": {"filter[phone]": "{{ digits }}"},
                                 "records_path": "data"}
        verbs["lookup_email"] = {"path": "/customers", "query": {"filter[email]": "{{ email }}"},
                                 "records_path": "data"}
    return {"verbs": verbs, "fields_path": "attributes", "updated_path": "attributes.updated_at",
            "key_field": "crm_key", "fingerprint_field": "crm_fingerprint", "schema_name": plural[:-1].title(),
            "record_url": f"{JSONAPI_URL}/{plural}/{{{{ id }}}}"}


def jsonapi_config(state: RestState) -> dict[str, Any]:
    """OAuth2 client credentials, JSON:API documents, cursor and Link pagination, errors[0].code."""
    return {
        "base_url": JSONAPI_URL,
        "auth": {"type": "oauth2_client_credentials", "token_url": f"{JSONAPI_URL}/oauth/token",
                 "client_id": state.creds.client_id, "client_secret": state.creds.client_secret},
        "test": {"path": "/customers", "query": {"page[size]": "1"}},
        "objects": {SINGULAR[p]: _jsonapi_object(p) for p in OBJECTS},
        "error_code_path": "errors.0.code",
        "openapi_url": f"{JSONAPI_URL}/openapi.json",
    }
