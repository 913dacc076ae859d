"""Every provider sandbox of `crm-sor dev`: stable loopback ports, state kept in `.crm-sor/sandboxes/`.

Each sandbox listens on `CRM_DEV__SANDBOX_PORT_BASE` + its offset (its place in `sandboxes.serve.SANDBOXES`,
an append-only list), so a URL stored in a tenant's settings still answers after a restart; its state (the
records, the tokens it issued) is pickled after every write and loaded at the next start, so the sandbox CRM
still holds what our rows say was synced. `.crm-sor/sandboxes.json` lists, per sandbox, its URL and what a
tenant needs to connect to it (`crm-sor tenant connect TENANT --sandbox SLUG` reads it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from settings import STATE_DIR

INDEX_NAME = "sandboxes.json"


def port_for(slug: str, base: int) -> int:
    from sandboxes.serve import SANDBOXES

    return base + 1 + list(SANDBOXES).index(slug)


def index_path(state_dir: Path = STATE_DIR) -> Path:
    return state_dir / INDEX_NAME


def read_index(state_dir: Path = STATE_DIR) -> dict[str, Any]:
    """What the last `crm-sor dev` in this directory served; {} when it never ran here."""
    try:
        loaded: dict[str, Any] = json.loads(index_path(state_dir).read_text())
    except FileNotFoundError:
        return {}
    return loaded


def _require_free(slug: str, port: int, port_base: int) -> None:
    """Say which port is taken before uvicorn fails in its thread with a traceback."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT after a restart is fine
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            from cli.main import CliError

            raise CliError(f"the {slug} sandbox cannot listen on port {port} (in use: another `crm-sor dev`?); "
                           f"stop what holds it, or set CRM_DEV__SANDBOX_PORT_BASE (now {port_base})") from None


def start_all(port_base: int, state_dir: Path = STATE_DIR) -> tuple[dict[str, Any], list[Any]]:
    """Serve every sandbox; returns the index written to `.crm-sor/sandboxes.json` and the served handles."""
    import importlib

    from sandboxes.connect import NOT_CONNECTABLE, connection, long_lived
    from sandboxes.persist import PersistState, load_state, save_state
    from sandboxes.serve import SANDBOXES, serve_in_thread

    index: dict[str, Any] = {}
    served = []
    for slug, module in SANDBOXES.items():
        path = state_dir / "sandboxes" / f"{slug}.pickle"
        state = load_state(path)
        app = importlib.import_module(module).create_app(state)
        state = app.state.sandbox
        long_lived(state)
        port = port_for(slug, port_base)
        _require_free(slug, port, port_base)
        handle = serve_in_thread(PersistState(app, state, path), port=port, state=state)
        served.append(handle)
        index[slug] = {"base_url": handle.base_url}
        if slug not in NOT_CONNECTABLE:
            index[slug] |= connection(slug, state, handle.base_url)
            save_state(state, path)  # the tokens `connection` issued are known after a restart too
    path = index_path(state_dir)
    path.write_text(json.dumps(index, indent=1, sort_keys=True))
    path.chmod(0o600)  # dev sandbox tokens only, but tokens nonetheless
    return index, served
