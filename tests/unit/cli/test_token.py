"""`crm-sor token --role operator` without `--tenant` mints a platform-wide token (no database needed) and says
what erasure needs; the API's 403 says the same (tests/unit/api/test_exact_answers.py)."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from cli.main import main


def test_a_platform_wide_operator_token_says_what_erasure_needs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no database here at all: none is needed
    assert main(["token", "--role", "operator"]) == 0
    out, err = capsys.readouterr()
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert claims["role"] == "operator" and "tenant" not in claims
    assert "--tenant TENANT_ID" in err and "/api/tenant/forget" in err
    assert not (tmp_path / ".crm-sor").exists()
