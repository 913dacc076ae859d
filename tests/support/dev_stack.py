"""Helpers for tests of the `crm-sor dev` stack: a free block of ports for its sandboxes."""

from __future__ import annotations

import socket

from sandboxes.serve import SANDBOXES


def free_port_base(attempts: int = 50) -> int:
    """A base B such that B+1 … B+len(SANDBOXES) are all free right now (ephemeral range, never fixed)."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + len(SANDBOXES) >= 65_000:
            continue
        if all(_free(base + offset) for offset in range(1, len(SANDBOXES) + 1)):
            return base
    raise RuntimeError("no free block of ports for the dev sandboxes")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
