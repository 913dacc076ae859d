"""What one mirror pass did, table by table, and whether it must stop (an account-wide failure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drivers.errors import DriverError


@dataclass
class Tally:
    synced: int = 0
    failed: int = 0
    stop: DriverError | None = None  # a rate limit or an auth error: no more CRM calls this pass
    failures: list[tuple[str, Any, BaseException]] = field(default_factory=list)  # (table, row, error)
