"""The newcomer's first hour runs in the test command (tests/acceptance/newcomer.py has the steps).

It reuses this test run's venv (the clone's own code runs, through PYTHONPATH), so it takes about a minute;
`CRM_ACCEPTANCE_FRESH_VENV=1` makes it install into the clone exactly as README command 1 says, as the script
does by default when run on its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.acceptance import newcomer

pytestmark = [pytest.mark.integration]


def test_a_newcomer_gets_from_a_fresh_clone_to_an_erased_subject() -> None:
    venv = [] if os.environ.get("CRM_ACCEPTANCE_FRESH_VENV") == "1" else ["--venv", str(Path(sys.prefix))]
    assert newcomer.main(venv) == 0
