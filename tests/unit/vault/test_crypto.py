from __future__ import annotations

import base64
import os
import uuid

import pytest
from pydantic import SecretStr

from cli.main import main as cli_main
from settings import Settings, get_settings
from vault.crypto import CredentialKeyError, DecryptError, EnvKey, RowBinding, load_env_key, parse_env_key, seal, unseal


def binding(**overrides: object) -> RowBinding:
    values: dict[str, object] = {"tenant_id": uuid.UUID(int=1), "provider": "hubspot", "row_id": uuid.UUID(int=2),
                                 "scheme": "env", "key_version": "env:abc"}
    values.update(overrides)
    return RowBinding(**values)  # type: ignore[arg-type]


def test_seal_round_trips_with_a_fresh_12_byte_nonce_and_16_byte_tag() -> None:
    key = os.urandom(32)
    nonce, ciphertext = seal(key, b'{"token":"t"}', binding())
    again, _ = seal(key, b'{"token":"t"}', binding())
    assert len(nonce) == 12 and nonce != again
    assert len(ciphertext) == len(b'{"token":"t"}') + 16
    assert unseal(key, nonce, ciphertext, binding()) == b'{"token":"t"}'


@pytest.mark.parametrize("field,value", [("tenant_id", uuid.UUID(int=9)), ("provider", "salesforce"),
                                         ("row_id", uuid.UUID(int=9)), ("scheme", "kms"), ("key_version", "env:x")])
def test_a_ciphertext_fails_under_any_other_binding(field: str, value: object) -> None:
    key = os.urandom(32)
    nonce, ciphertext = seal(key, b"secret", binding())
    with pytest.raises(DecryptError) as info:
        unseal(key, nonce, ciphertext, binding(**{field: value}))
    assert "secret" not in str(info.value)


def test_env_key_parses_standard_and_urlsafe_base64() -> None:
    raw = bytes(range(256))[-32:]  # contains bytes that encode to + and / in standard base64
    assert parse_env_key(base64.b64encode(raw).decode()).key == raw
    assert parse_env_key(base64.urlsafe_b64encode(raw).decode()).key == raw
    assert parse_env_key(base64.b64encode(raw).decode()).version == EnvKey.from_bytes(raw).version


@pytest.mark.parametrize("value,message", [("not base64!!", "not valid base64"),
                                           (base64.b64encode(b"short").decode(), "must decode to 32 bytes")])
def test_malformed_env_key_is_a_clear_error_in_every_env(value: str, message: str) -> None:
    for env in ("dev", "production"):
        with pytest.raises(CredentialKeyError, match=message):
            load_env_key(Settings(env=env, credential_encryption_key=SecretStr(value)))


def test_missing_env_key_is_a_startup_error_outside_dev() -> None:
    with pytest.raises(CredentialKeyError, match="required when CRM_ENV='production'"):
        load_env_key(Settings(env="production", credential_encryption_key=None))


def test_missing_env_key_in_dev_is_a_throwaway_key() -> None:
    first = load_env_key(Settings(env="dev", credential_encryption_key=None))
    second = load_env_key(Settings(env="dev", credential_encryption_key=None))
    assert len(first.key) == 32 and first.key != second.key


@pytest.mark.parametrize("command", ["api", "worker"])
def test_processes_refuse_to_start_without_a_usable_key(command: str, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CRM_ENV", "production")
    monkeypatch.delenv("CRM_CREDENTIAL_ENCRYPTION_KEY", raising=False)
    monkeypatch.delenv("CRM_KMS__KEY_ID", raising=False)
    get_settings.cache_clear()
    try:
        assert cli_main([command]) == 2
    finally:
        get_settings.cache_clear()
    assert "CRM_CREDENTIAL_ENCRYPTION_KEY is required when CRM_ENV='production'" in capsys.readouterr().err
