"""Activity failures that cannot carry customer content into Temporal history.

An exception's message is written into the workflow's history when an activity fails. Provider and database
errors can echo values (a duplicate-email message, a failed statement's parameters), so every activity is
`@contained`: an `ApplicationError` it raises on purpose passes unchanged (those are built from codes), and
anything else becomes one holding only the exception's type — retryable, since most are transient.

An expected CRM failure (an `ApplicationError` of category BENIGN, which the SDK logs at DEBUG without a
traceback) gets one WARNING line here instead: the error kind, the provider, the workflow and activity ids.
Tracebacks stay for bugs (anything not BENIGN, which the SDK logs with its stack).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from drivers.errors import DriverError

log = logging.getLogger("crm-sor.activities")

P = ParamSpec("P")
R = TypeVar("R")


def contained(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap an async activity (under `@activity.defn`) so unexpected exceptions carry their type only."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ApplicationError as exc:
            if exc.category == ApplicationErrorCategory.BENIGN:
                log_expected_failure(fn.__name__, exc)
            raise
        except Exception as exc:
            raise ApplicationError(f"{fn.__name__} failed: {type(exc).__name__}", type=type(exc).__name__) from None

    return wrapper


def log_expected_failure(name: str, exc: ApplicationError) -> None:
    """One line, ids and codes only (the ApplicationError's message is a code too: see its builders)."""
    cause = exc.__cause__ or exc.__context__
    provider = cause.provider if isinstance(cause, DriverError) else "-"
    where = "-"
    if activity.in_activity():
        info = activity.info()
        where = f"workflow={info.workflow_id} activity={info.activity_id} attempt={info.attempt}"
    log.warning("expected CRM failure in %s: %s (%s) provider=%s %s", name, exc.type, exc.message, provider, where)
