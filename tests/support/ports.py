"""Loopback ports for tests that start real servers or need a real connection refusal."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on right now (bound once, released): for a server to start on, or to be refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
