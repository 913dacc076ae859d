"""Safe rendering of the generic REST connector's templates, and reading values out of answers.

Templates run in Jinja2's `SandboxedEnvironment` (no attribute access to internals, no code execution) with
`StrictUndefined` (a misspelt variable is an error, not an empty string). Values rendered into a path are
URL-quoted whole (an id cannot add path segments); rendered header values may not contain CR, LF or NUL
(no header injection); query values are encoded by httpx.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

ENV = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
_PATH_ENV = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined,
                                 finalize=lambda value: quote(str(value), safe=""))
_WHOLE = re.compile(r"^\{\{\s*(.+?)\s*\}\}$", re.DOTALL)
_LINK = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)


@lru_cache(maxsize=512)
def _template(source: str, path: bool) -> Template:
    return (_PATH_ENV if path else ENV).from_string(source)


def render(source: str, context: dict[str, Any]) -> str:
    return _template(source, False).render(context)


def render_path(source: str, context: dict[str, Any]) -> str:
    return _template(source, True).render(context)


def render_header(source: str, context: dict[str, Any]) -> str:
    value = render(source, context)
    if any(c in value for c in "\r\n\0"):
        raise ValueError("a rendered header value contains CR, LF or NUL")
    return value


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """A JSON body template: `{{ expr }}` alone keeps the expression's value, other strings render as text."""
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole and "{{" not in whole.group(1):
            return ENV.compile_expression(whole.group(1), undefined_to_none=False)(**context)
        return render(value, context)
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


def dig(data: Any, path: str | None) -> Any:
    """The value at a dotted path (`data.items`, `meta.next`, `0.id`); "" or None is the data itself."""
    if not path:
        return data
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def next_link(header: str | None) -> str | None:
    """The `rel="next"` target of an RFC 8288 Link header."""
    match = _LINK.search(header or "")
    return match.group(1) if match else None
