"""Boundary models of the credential re-wrap workflow: counts and cursors (row ids), nothing secret."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RewrapCredentialsInput(BaseModel):
    """Start (or, after continue-as-new, resume) the env → KMS backfill at `cursor`."""

    model_config = ConfigDict(frozen=True)

    batch_size: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = None
    scanned_so_far: int = 0
    rewrapped_so_far: int = 0
    unreadable_so_far: list[str] = []


class RewrapCredentialsResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    scanned: int
    rewrapped: int
    unreadable: list[str]  # credential row ids left on the env scheme (another env key wrote them)
