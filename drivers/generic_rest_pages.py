"""Following a configured verb's pages: offset, page number, body cursor, or the RFC 8288 Link header."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from drivers.errors import InvalidRequestError, UnavailableError
from drivers.generic_rest_config import ObjectConfig
from drivers.generic_rest_render import dig, next_link

if TYPE_CHECKING:
    from drivers.generic_rest import GenericRestDriver


async def collect(driver: GenericRestDriver, cfg: ObjectConfig, verb: str, context: dict[str, Any],
                  limit: int) -> list[Any]:
    """Records of `verb` across pages until `limit` or the last page (one request per page)."""
    request = driver._verb(cfg, verb)
    paging = request.pagination
    cap = int(driver.config.get("page_size") or 0)  # an operator's (or a test's) smaller page size
    size = min(x for x in (paging.page_size if paging else limit, cap or limit, limit) if x)
    context = context | {"limit": size}
    query: dict[str, Any] = {}
    if request.since_param and "since" in context:
        query[request.since_param] = context["since"]
    out: list[Any] = []
    next_url: str | None = None
    cursor: Any = None
    page_number = paging.start if paging else 0
    while len(out) < limit:
        asked = min(size, limit - len(out))
        page_query = dict(query)
        if paging is not None:
            page_query[paging.limit_param] = asked
            if paging.type == "offset":
                page_query[paging.offset_param] = len(out)
            elif paging.type == "page":
                page_query[paging.page_param] = page_number
            elif paging.type == "cursor" and cursor is not None:
                page_query[paging.cursor_param] = cursor
        response = await driver.send_raw(cfg, verb, context, extra_query=page_query, url=next_url)
        body = driver._json("GET", response)
        records = dig(body, request.records_path)
        if not isinstance(records, list):
            raise UnavailableError("the answer holds no record list where the configuration says",
                                   provider=driver.slug)
        out.extend(records)
        if paging is None or not records:
            break
        if paging.type in ("offset", "page"):
            if len(records) < asked:
                break
            page_number += 1
        elif paging.type == "cursor":
            cursor = dig(body, paging.cursor_path)
            if cursor in (None, ""):
                break
        else:
            next_url = _same_origin(driver, response, next_link(response.headers.get("link")))
            if next_url is None:
                break
    return out[:limit]


def _same_origin(driver: GenericRestDriver, response: httpx.Response, link: str | None) -> str | None:
    """The next page's URL, only on the API's own origin: a Link elsewhere is not followed."""
    if link is None:
        return None
    target = response.request.url.join(link)
    if (target.scheme, target.host, target.port) != (response.request.url.scheme, response.request.url.host,
                                                     response.request.url.port):
        raise InvalidRequestError("a pagination link leaves the API's origin", provider=driver.slug,
                                  provider_code="foreign_link")
    return str(target)
