"""The generic REST configuration an operator would post for the sandbox's flat API (sandboxes/generic_rest.py):
API key in a header, offset pagination, root arrays, 429 signalled by X-RateLimit-Reset.

Here, beside the sandbox, so that `crm-sor dev` can connect a tenant to it (sandboxes/connect.py) and the tests
describe the same account.
"""

from __future__ import annotations

from typing import Any

from sandboxes.generic_rest import OBJECTS, PREFIX, RestState

FLAT_URL = "https://api.flatcrm.example" + PREFIX["flat"]
SINGULAR = {"customers": "customer", "leads": "lead", "deals": "deal", "cases": "case", "notes": "note"}


def _flat_object(plural: str) -> dict[str, Any]:
    page = {"type": "offset"}
    verbs: dict[str, Any] = {
        "get": {"path": f"/{plural}/{{{{ id }}}}", "record_path": ""},
        "search": {"path": f"/{plural}", "query": {"q": "{{ query }}"}, "records_path": "", "pagination": page},
        "create": {"method": "POST", "path": f"/{plural}", "body": "{{ fields }}", "record_path": ""},
        "update": {"method": "PATCH", "path": f"/{plural}/{{{{ id }}}}", "body": "{{ fields }}", "record_path": ""},
        "delete": {"method": "DELETE", "path": f"/{plural}/{{{{ id }}}}"},
        "list_recent": {"path": f"/{plural}", "since_param": "updated_since", "records_path": "", "pagination": page},
        "find_by_key": {"path": f"/{plural}", "query": {"crm_key": "{{ key }}"}, "records_path": ""},
    }
    if plural == "customers":
        verbs["lookup_phone"] = {"path": "/customers", "query": {"phone_digits": "{{ digits }}"}, "records_path": ""}
        verbs["lookup_email"] = {"path": "/customers", "query": {"email": "{{ email }}"}, "records_path": ""}
    return {"verbs": verbs, "key_field": "crm_key", "fingerprint_field": "crm_fingerprint",
            "schema_name": plural[:-1].title(), "record_url": f"https://app.flatcrm.example/{plural}/{{{{ id }}}}"}


def flat_config(state: RestState, base_url: str = FLAT_URL) -> dict[str, Any]:
    """The connect form for the flat API served at `base_url` (the sandbox's URL + /flat/v1 when served)."""
    return {
        "base_url": base_url,
        "auth": {"type": "api_key", "key": state.creds.api_key, "name": "X-Api-Key"},
        "test": {"path": "/customers", "query": {"limit": "1"}},
        "objects": {SINGULAR[p]: _flat_object(p) for p in OBJECTS},
        "errors": [{"status": [429], "action": "rate_limited", "retry_after_header": "X-RateLimit-Reset"}],
        "openapi_url": f"{base_url}/openapi.json",
    }
