"""`crm-sor dev`'s sandboxes: every provider on a stable port, state that survives a restart, long-lived tokens;
`crm-sor tenant connect TENANT --sandbox SLUG` connects any tenant to any of them, and `tenant update` edits one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli import dev_sandboxes
from cli.main import main
from sandboxes.connect import NOT_CONNECTABLE
from sandboxes.serve import SANDBOXES
from settings import get_settings
from tests.support.dev_stack import free_port_base


def _stop(served: list[Any]) -> None:
    for handle in served:
        handle.stop()


@pytest.fixture
def dev_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh clone's working directory: `.crm-sor/` state, SQLite, the dev credential key."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRM_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / '.crm-sor' / 'crm-sor.db'}")
    monkeypatch.setenv("CRM_ENV", "dev")
    monkeypatch.delenv("CRM_CREDENTIAL_ENCRYPTION_KEY", raising=False)
    (tmp_path / ".crm-sor").mkdir()
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_every_sandbox_serves_on_its_stable_port_and_keeps_its_records_across_a_restart(dev_dir: Path) -> None:
    base = free_port_base()
    index, served = dev_sandboxes.start_all(base, dev_dir / ".crm-sor")
    try:
        assert sorted(index) == sorted(SANDBOXES)
        for slug in SANDBOXES:
            assert index[slug]["base_url"] == f"http://127.0.0.1:{dev_sandboxes.port_for(slug, base)}"
        hubspot = index["hubspot"]
        auth = {"Authorization": f"Bearer {hubspot['secret']['access_token']}"}
        created = httpx.post(f"{hubspot['base_url']}/crm/v3/objects/contacts", headers=auth,
                             json={"properties": {"email": "ada@example.com", "lastname": "Lovelace"}})
        assert created.status_code == 201, created.text
    finally:
        _stop(served)

    again, served = dev_sandboxes.start_all(base, dev_dir / ".crm-sor")
    try:
        assert again["hubspot"]["base_url"] == hubspot["base_url"]  # the URL a tenant stored still answers
        # The token handed out before the restart still works (dev tokens never expire), and the record is there.
        found = httpx.get(f"{hubspot['base_url']}/crm/v3/objects/contacts/{created.json()['id']}", headers=auth)
        assert found.status_code == 200 and found.json()["properties"]["lastname"] == "Lovelace"
    finally:
        _stop(served)
    assert (dev_dir / ".crm-sor" / "sandboxes" / "hubspot.pickle").exists()


def _tenant_id(out: str) -> str:
    line = next(line for line in out.splitlines() if line.startswith("tenant "))
    return line.split()[1]


def test_any_tenant_connects_to_any_sandbox_with_one_command(dev_dir: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    index, served = dev_sandboxes.start_all(free_port_base(), dev_dir / ".crm-sor")
    try:
        assert main(["tenant", "create", "--name", "Acme", "--provider", "hubspot"]) == 0
        tenant = _tenant_id(capsys.readouterr().out)
        assert NOT_CONNECTABLE == {}  # every sandbox, the generic REST one included
        for slug in sorted(SANDBOXES):
            assert main(["tenant", "connect", tenant, "--sandbox", slug]) == 0, slug
            out = capsys.readouterr().out
            assert f"connected to the {slug} sandbox" in out and out.rstrip().endswith("active"), out
        assert main(["tenant", "show", tenant]) == 0
        shown = capsys.readouterr().out
        assert "provider    zoho" in shown and "status      active" in shown
        # Without a slug, the tenant's own provider's sandbox.
        assert main(["tenant", "update", tenant, "--settings", "{}"]) == 0
        capsys.readouterr()
        assert main(["tenant", "connect", tenant, "--sandbox"]) == 0
        assert "zoho sandbox" in capsys.readouterr().out
        assert main(["tenant", "connect", tenant, "--sandbox", "opentable"]) == 2  # no such sandbox: says which exist
        assert "sandboxes: athenahealth, custom_webhook" in capsys.readouterr().err
    finally:
        _stop(served)


def test_connect_without_a_dev_stack_says_what_to_run(dev_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert main(["tenant", "create", "--name", "Acme", "--provider", "hubspot"]) == 0
    tenant = _tenant_id(capsys.readouterr().out)
    assert main(["tenant", "connect", tenant, "--sandbox"]) == 2
    assert "start `crm-sor dev`" in capsys.readouterr().err


def test_tenant_update_changes_settings_name_and_status_and_says_when_nothing_changed(
        dev_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert main(["tenant", "create", "--name", "Acme", "--provider", "hubspot", "--settings",
                 '{"portal_id": 1, "note_subject": "x"}']) == 0
    tenant = _tenant_id(capsys.readouterr().out)
    assert main(["tenant", "update", tenant, "--name", "Acme Realty", "--status", "disabled",
                 "--set", "portal_id=62515", "--set", "default_region=GB", "--unset", "note_subject"]) == 0
    assert "updated (name, status, settings)" in capsys.readouterr().out
    assert main(["tenant", "show", tenant]) == 0
    shown = capsys.readouterr().out
    assert "Acme Realty" in shown and "disabled" in shown
    assert json.dumps({"default_region": "GB", "portal_id": 62515}, sort_keys=True) in shown
    assert main(["tenant", "update", tenant, "--set", "portal_id=62515"]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert main(["tenant", "update", tenant, "--settings", "[1]"]) == 2
    assert "JSON object" in capsys.readouterr().err


def test_a_taken_sandbox_port_is_a_clear_error(dev_dir: Path) -> None:
    from cli.main import CliError

    base = free_port_base()
    _, served = dev_sandboxes.start_all(base, dev_dir / ".crm-sor")
    try:
        with pytest.raises(CliError, match="CRM_DEV__SANDBOX_PORT_BASE"):
            dev_sandboxes.start_all(base, dev_dir / ".crm-sor")
    finally:
        _stop(served)
