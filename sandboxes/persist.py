"""Sandbox state that outlives the process (the `crm-sor dev` stack): pickled to a file after every write.

A dev sandbox is a stand-in for the tenant's CRM, and the CRM is the system of record: when `crm-sor dev`
restarts, the sandbox must still hold what our rows say was synced. The state object (records, token
issuer, knobs) is pickled after each request that may have changed it and loaded on the next start.
Only for dev: tests keep their sandboxes in memory.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def load_state(path: Path) -> Any | None:
    """The state pickled at `path`, or None when there is none (or it no longer loads: start empty)."""
    try:
        with path.open("rb") as handle:
            return pickle.load(handle)  # noqa: S301 - our own file in .crm-sor/, written by save_state
    except FileNotFoundError:
        return None
    except Exception:  # an older layout of the state class: a fresh sandbox beats a crash at start
        path.rename(path.with_suffix(".unreadable"))
        return None


def save_state(state: Any, path: Path) -> None:
    """Write atomically (temp file + rename), so a crash mid-write leaves the previous state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    with temp.open("wb") as handle:
        pickle.dump(state, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temp, path)


class PersistState:
    """ASGI middleware: after a request that may write (any method but GET/HEAD/OPTIONS), save the state.

    Saved once the response has been sent, on the sandbox's own event loop, so no handler runs concurrently
    with the pickling of its state.
    """

    def __init__(self, app: ASGIApp, state: Any, path: Path) -> None:
        self.app, self.state, self.path = app, state, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http" and scope["method"] not in READ_METHODS:
            save_state(self.state, self.path)
