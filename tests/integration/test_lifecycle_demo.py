"""The `crm-sor dev` demo hook: the printed curl records a conversation that reaches the loopback sandbox."""

from __future__ import annotations

import json
import shlex
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

import worker
from api.app import create_app
from api.context import AppContext
from api.lifecycle import SWEEP_SCHEDULE_ID
from api.temporal import TemporalGateway
from cli import demo, dev
from settings import Settings
from tests.support.dev_stack import free_port_base
from tests.support.lifecycle import eventually, synced

pytestmark = [pytest.mark.integration]


def _curl(line: str) -> tuple[str, dict[str, str], str]:
    """(url, headers, body) of a printed `curl -X POST URL -H … -d …` line."""
    words = shlex.split(line)
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    return next(w for w in words if w.startswith("http")), headers, words[words.index("-d") + 1]


async def test_demo_hook_prints_a_curl_that_reaches_the_sandbox(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dev.DEV_HOOKS.index(demo.setup_sandboxes) < dev.DEV_HOOKS.index(demo.setup_demo)
    monkeypatch.chdir(tmp_path)  # `.crm-sor/` of a fresh clone
    target = temporal_client.service_client.config.target_host
    settings = settings.model_copy(update={
        "temporal": settings.temporal.model_copy(update={"address": target, "task_queue": task_queue}),
        "dev": settings.dev.model_copy(update={"sandbox_port_base": free_port_base()})})
    try:
        sandbox_lines = await demo.setup_sandboxes(settings)
        lines = await demo.setup_demo(settings)
        lines_again = await demo.setup_demo(settings)  # a second `crm-sor dev` reuses the tenant
    finally:
        await temporal_client.get_schedule_handle(SWEEP_SCHEDULE_ID).delete()
    assert any("tenant connect TENANT_ID --sandbox" in line for line in sandbox_lines)
    assert any(".crm-sor/sandboxes" in line for line in sandbox_lines)
    assert lines_again[0].startswith(f"demo tenant  {demo.DEMO_TENANT_ID}")
    url, headers, body = _curl(next(line.strip() for line in lines_again if line.strip().startswith("curl -s -X")))
    assert url.endswith("/api/agent/conversations") and json.loads(body) == demo.conversation_example()

    context = AppContext(settings=settings, engine=engine, sessions=sessions,
                         temporal=TemporalGateway(settings.temporal, client=temporal_client))
    app = create_app(context=context)
    async with worker.build_worker(temporal_client, settings, activities=worker.build_activities(settings, engine),
                                   task_queue=task_queue), app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
        response = await api.post("/api/agent/conversations", headers=headers, content=body)
        assert response.status_code == 201, response.text
        conversation_id = uuid.UUID(response.json()["id"])
        conversation = await eventually(
            lambda: synced(sessions, "conversations", demo.DEMO_TENANT_ID, conversation_id), within=60)

    contacts_line, notes_line = (line.strip().removeprefix("see the CRM").strip() for line in lines_again
                                 if "/crm/v3/objects/" in line)
    sandbox_headers = {"Authorization": shlex.split(contacts_line)[3].removeprefix("Authorization: ")}
    async with httpx.AsyncClient() as http:
        contacts = (await http.get(shlex.split(contacts_line)[-1], headers=sandbox_headers)).json()["results"]
        notes = (await http.get(shlex.split(notes_line)[-1], headers=sandbox_headers)).json()["results"]
    assert [c["properties"]["lastname"] for c in contacts] == ["Lovelace"]
    assert [n["id"] for n in notes] == [conversation.crm_external_id]
    assert "Thursday works, thanks." in notes[0]["properties"]["hs_note_body"]
    assert lines[0] == lines_again[0]  # the same sandbox URL: stable ports
    for handle in demo._served:
        handle.stop()
    demo._served.clear()



def test_the_cli_keeps_crm_request_urls_out_of_its_logs() -> None:
    """CRM lookups put phones and emails into URLs, and httpx logs each URL at INFO."""
    import logging

    from cli import main

    with pytest.raises(SystemExit):
        main.main(["--help"])
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
