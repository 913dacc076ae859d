"""uvicorn's access log without query strings.

Query strings carry what must never reach a log file: the OAuth callback's `code` and `state`, and any
GET a client sends with a phone or an email in it. The access log keeps method, path, status and client;
the query string becomes `?…` so an operator still sees that one was sent. Used by `crm-sor api` and
`crm-sor dev` through `uvicorn_log_config()`.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import uvicorn.config

ACCESS_LOGGER = "uvicorn.access"


def strip_query(target: str) -> str:
    """`/path?secret=1` → `/path?…`; a target without a query is unchanged."""
    path, sep, _ = target.partition("?")
    return f"{path}?…" if sep else path


class DropQueryString(logging.Filter):
    """Rewrites uvicorn access records (args: client, method, path with query, HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], strip_query(args[2]), args[3], args[4])
        elif isinstance(record.msg, str) and "?" in record.msg and not args:
            record.msg = " ".join(strip_query(word) if "?" in word else word for word in record.msg.split(" "))
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging config with `DropQueryString` on the access logger and its handler."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config.setdefault("filters", {})["drop_query_string"] = {"()": f"{__name__}.DropQueryString"}
    config["handlers"]["access"].setdefault("filters", []).append("drop_query_string")
    config["loggers"][ACCESS_LOGGER].setdefault("filters", []).append("drop_query_string")
    return config


def install() -> None:
    """Attach the filter to the access logger of this process (when uvicorn's config is not ours)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, DropQueryString) for f in logger.filters):
        logger.addFilter(DropQueryString())
