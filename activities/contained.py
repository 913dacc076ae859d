"""Activity failures that cannot carry customer content into Temporal history.

An exception's message is written into the workflow's history when an activity fails. Provider and database
errors can echo values (a duplicate-email message, a failed statement's parameters), so every activity is
`@contained`: an `ApplicationError` it raises on purpose passes unchanged (those are built from codes), and
anything else becomes one holding only the exception's type — retryable, since most are transient.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError

P = ParamSpec("P")
R = TypeVar("R")


def contained(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap an async activity (under `@activity.defn`) so unexpected exceptions carry their type only."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ApplicationError:
            raise
        except Exception as exc:
            raise ApplicationError(f"{fn.__name__} failed: {type(exc).__name__}", type=type(exc).__name__) from None

    return wrapper
