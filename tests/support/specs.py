"""Where the providers' own spec files are: `shared/provider-specs/` beside the repository (not shipped in it:
some of them may not be redistributed), or `CRM_SHARED_DIR`.

A spec-conformance test calls `provider_spec(...)`. In CI (`CI` set) a missing folder fails the test: CI always
has shared/ beside its clone, so a missing one is a broken checkout, not a reason to skip. On a newcomer's clone
without shared/ the test is skipped with that reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    return Path(os.environ.get("CRM_SHARED_DIR") or REPO.parent / "shared")


def provider_spec(*parts: str) -> Path:
    """The path of a file or folder under `shared/provider-specs/` (skip or fail as above when absent)."""
    path = shared_dir().joinpath("provider-specs", *parts)
    if not path.exists():
        message = f"provider spec {path} is missing (set CRM_SHARED_DIR to the shared/ folder)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
