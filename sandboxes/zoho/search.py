"""Zoho search and paging for the sandbox: `/search?email=|phone=|word=`, `page`/`per_page`/`page_token`, and
the COQL subset (`where … in (…)`) the driver's batch key read uses.

Phone search looks at every phone field and ignores formatting (digits only); `word` matches any text field.
Pages: `page` × `per_page` may reach 2,000 records, past that only `page_token` (issued in `info`) continues.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandboxes.zoho.state import MODULES, ZohoState
from sandboxes.zoho.wire import error, public

_PHONE_FIELDS = ("Phone", "Mobile")
_DISCRETE_LIMIT = 2000


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


def matching(rows: list[dict[str, Any]], request: Request) -> list[dict[str, Any]] | Response:
    q = request.query_params
    if email := q.get("email"):
        return [r for r in rows if str(r.get("Email") or "").lower() == email.lower()]
    if phone := q.get("phone"):
        wanted = _digits(phone)
        return [r for r in rows if wanted and any(
            _digits(r.get(f)) and (_digits(r.get(f)).endswith(wanted) or wanted.endswith(_digits(r.get(f))))
            for f in _PHONE_FIELDS)]
    if word := q.get("word"):
        if len(word.strip()) < 2:
            return error(400, "INVALID_QUERY", "invalid query formed", {"param_name": "word"})
        needle = word.strip().lower()
        return [r for r in rows if any(isinstance(v, str) and needle in v.lower()
                                       for k, v in r.items() if not k.startswith("_"))]
    return error(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                 {"param_name": "criteria"})


def paged(st: ZohoState, request: Request, rows: list[dict[str, Any]], names: list[str] | None) -> Response:
    q = request.query_params
    if q.get("sort_by") == "Modified_Time":
        rows = sorted(rows, key=lambda r: r["_modified"], reverse=q.get("sort_order") == "desc")
    per_page = int(q.get("per_page", 200))
    if per_page > 200:
        return error(400, "LIMIT_EXCEEDED", "Max field limit exceeded", {"limit": 200, "param_name": "per_page"})
    size = st.page_size(per_page, 200)
    signature = f"{request.url.path}|{q.get('fields')}|{q.get('sort_by')}|{request.headers.get('if-modified-since')}"
    if token := q.get("page_token"):
        cursor = st.cursors.get(token)
        if cursor is None:
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "page_token"})
        if cursor[0] != signature:
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "page_token"})
        start, page = cursor[1], cursor[1] // size + 1
    else:
        page = int(q.get("page", 1))
        start = (page - 1) * size
        if start + size > _DISCRETE_LIMIT:
            return error(400, "LIMIT_EXCEEDED", "Record count exceeded", {"limit": _DISCRETE_LIMIT})
    chunk = rows[start:start + size]
    more = start + size < len(rows)
    info: dict[str, Any] = {"per_page": size, "count": len(chunk), "page": page, "more_records": more,
                            "sort_by": q.get("sort_by", "id"), "sort_order": q.get("sort_order", "desc")}
    if more:
        token = secrets.token_hex(16)
        st.cursors[token] = (signature, start + size)
        info["next_page_token"] = token
    return JSONResponse({"data": [public(r, names) for r in chunk], "info": info})


_COQL = re.compile(r"^\s*select\s+(?P<fields>[\w\s,$]+?)\s+from\s+(?P<module>\w+)\s+where\s+(?P<column>\w+)\s+"
                   r"(?:in\s*\((?P<values>[^)]*)\)|=\s*'(?P<value>[^']*)')\s*(?:limit\s+(?P<limit>\d+))?\s*$",
                   re.IGNORECASE)


def coql(st: ZohoState, query: str) -> Response:
    """The COQL subset drivers use: `select … from Module where Field in ('a', 'b') | = 'a' [limit n]`."""
    match = _COQL.match(query or "")
    if match is None:
        return error(400, "SYNTAX_ERROR", "invalid query formed", {"clause": "where"})
    module, column = match["module"], match["column"]
    if module not in MODULES:
        return error(400, "INVALID_QUERY", "invalid query formed", {"clause": "from"})
    values = re.findall(r"'([^']*)'", match["values"]) if match["values"] is not None else [match["value"]]
    if len(values) > 50:
        return error(400, "LIMIT_EXCEEDED", "invalid query formed", {"clause": "where", "limit": 50})
    limit = int(match["limit"] or 200)
    if limit > 2000:
        return error(400, "LIMIT_EXCEEDED", "invalid query formed", {"clause": "limit", "limit": 2000})
    names = [f.strip() for f in match["fields"].split(",") if f.strip()]
    hits = [r for r in st.live(module) if str(r.get(column)) in values][:limit]
    if not hits:
        return Response(status_code=204)
    return JSONResponse({"data": [public(r, names) for r in hits],
                         "info": {"count": len(hits), "more_records": False}})
