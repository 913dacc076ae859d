"""`crm-sor api` as a real process (uvicorn on loopback): what its access log records, and how it answers
bodies that are huge or nested without end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.auth import mint_token
from settings import Settings
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    log: Path
    settings: Settings


@pytest.fixture(scope="module")
def live_api(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    port = free_port()
    log = tmp_path_factory.mktemp("live-api") / "api.log"
    env = os.environ | {"CRM_ENV": "test", "CRM_DATABASE_URL": database_url, "CRM_REDIS_URL": redis_url,
                        "CRM_CREDENTIAL_ENCRYPTION_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                        "CRM_TEMPORAL__ADDRESS": "127.0.0.1:1"}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "cli.main", "api", "--host", "127.0.0.1", "--port",
                                    str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"crm-sor api did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield LiveApi(base_url, log, Settings(env="test", database_url=database_url))
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_access_log_keeps_no_query_string(live_api: LiveApi) -> None:
    code, state = f"code-{uuid.uuid4().hex}", f"state-{uuid.uuid4().hex}"
    callback = httpx.get(f"{live_api.base_url}/api/connect/oauth/callback",
                         params={"code": code, "state": state}, timeout=10)
    assert callback.status_code < 500
    lookup = httpx.get(f"{live_api.base_url}/healthz", params={"email": "ana@example.com", "phone": "+14155550100"},
                       timeout=10)
    assert lookup.status_code == 200
    time.sleep(0.2)  # the access log line is written after the answer went out
    text = live_api.log.read_text()
    assert "/api/connect/oauth/callback?…" in text and "GET /healthz?…" in text, text[-2000:]
    for secret in (code, state, "ana@example.com", "ana%40example.com", "4155550100"):
        assert secret not in text


def test_a_20_mb_body_without_expect_gets_the_413_problem(live_api: LiveApi) -> None:
    tenant = uuid.uuid4()
    token = mint_token(live_api.settings, subject="agent", role="agent", tenant_id=tenant)
    body = b'{"phone": "' + b"1" * (20 * 1024 * 1024) + b'"}'
    for headers in ({"authorization": f"Bearer {token}"}, {}):  # also when the route would refuse it as a 401
        response = httpx.post(f"{live_api.base_url}/api/tools/crm_lookup_customer", content=body,
                              headers=headers | {"content-type": "application/json"}, timeout=60)
        assert response.status_code == 413, response.text[:300]
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/body-too-large")


def test_a_large_chunked_body_gets_the_413_problem(live_api: LiveApi) -> None:
    tenant = uuid.uuid4()
    token = mint_token(live_api.settings, subject="agent", role="agent", tenant_id=tenant)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while reading
        yield b'{"phone": "'
        for _ in range(20):
            yield b"1" * (1024 * 1024)
        yield b'"}'

    response = httpx.post(f"{live_api.base_url}/api/tools/crm_lookup_customer", content=chunks(),
                          headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
                          timeout=60)
    assert response.status_code == 413 and response.json()["type"].endswith("/body-too-large")


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_json_is_a_400(live_api: LiveApi, depth: int) -> None:
    tenant = uuid.uuid4()
    token = mint_token(live_api.settings, subject="agent", role="agent", tenant_id=tenant)
    body = b'{"phone": ' + b"[" * depth + b"]" * depth + b"}"
    response = httpx.post(f"{live_api.base_url}/api/tools/crm_lookup_customer", content=body,
                          headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
                          timeout=30)
    assert response.status_code == 400 and response.json()["type"].endswith("/malformed-json")
    assert httpx.get(f"{live_api.base_url}/healthz", timeout=5).status_code == 200  # the worker is not stuck
