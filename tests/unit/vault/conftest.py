from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.vault.support import KmsServer, moto_kms


@pytest.fixture(scope="session")
def kms_server() -> Iterator[KmsServer]:
    with moto_kms() as server:
        yield server
