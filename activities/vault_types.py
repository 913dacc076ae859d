"""Boundary models of the vault activities: row ids and counts only, never credential material."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RewrapBatchInput(BaseModel):
    """Re-wrap up to `batch_size` env-scheme credential rows whose id sorts after `after`."""

    model_config = ConfigDict(frozen=True)

    after: str | None = None
    batch_size: int = Field(default=50, ge=1, le=1000)


class RewrapBatchResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    next_cursor: str | None  # None: no env rows remain after this batch
    scanned: int
    rewrapped: int
    unreadable: list[str] = []  # row ids the env key cannot open: they stay env, for an operator
