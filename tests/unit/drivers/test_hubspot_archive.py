"""HubSpot's archive, as the sandbox models it and the erasure reports it: an archived record is gone from normal
reads, readable with `archived=true`, and purged by HubSpot after 90 days."""

from __future__ import annotations

from datetime import timedelta

import httpx

from drivers.auth import BearerAuth
from drivers.base import CrmObject
from drivers.hubspot import ARCHIVE_PURGE_DAYS, HubSpotDriver
from sandboxes import hubspot as hubspot_sandbox


async def test_an_archived_note_is_readable_with_archived_true_until_hubspot_purges_it() -> None:
    app = hubspot_sandbox.create_app()
    state: hubspot_sandbox.HubSpotState = app.state.sandbox
    token = state.tokens.issue_access()
    note = state.add("notes", {"hs_note_body": "transcript", "hs_timestamp": "2026-01-01"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hubspot",
                                 auth=BearerAuth(token)) as http:
        result = await HubSpotDriver(http).delete_record(CrmObject.NOTE, note.id, hard=True)
        assert result.hard_deleted is False and result.purge_delay_days == ARCHIVE_PURGE_DAYS == 90
        assert (await http.get(f"/crm/v3/objects/notes/{note.id}")).status_code == 404
        assert (await http.get(f"/crm/v3/objects/notes/{note.id}?archived=true")).status_code == 200
        assert note.archived_at is not None
        note.archived_at -= timedelta(days=ARCHIVE_PURGE_DAYS, seconds=1)  # 90 days later
        assert (await http.get(f"/crm/v3/objects/notes/{note.id}?archived=true")).status_code == 404
        assert note.id not in state.records["notes"]
