"""AES-256-GCM sealing of credential blobs, bound to their row, and the env-key scheme.

Every ciphertext carries associated data naming its tenant, provider, row id, scheme and key version, so a
ciphertext copied into another row (or another tenant's row) fails authentication instead of decrypting
to someone else's secret. Nonces are 12 random bytes per seal; the 16-byte GCM tag is appended to the
ciphertext by `cryptography`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from settings import Settings

log = logging.getLogger(__name__)

NONCE_BYTES = 12
KEY_BYTES = 32
AAD_VERSION = "crm-sor/credential/v1"


class CredentialKeyError(RuntimeError):
    """The env encryption key is missing or malformed: raised at startup, never silently defaulted."""


class DecryptError(Exception):
    """A ciphertext failed authentication: wrong key, wrong row, or tampered. Carries ids only."""


@dataclass(frozen=True)
class RowBinding:
    """What a ciphertext is bound to; any difference at decrypt time fails the GCM tag check."""

    tenant_id: uuid.UUID
    provider: str
    row_id: uuid.UUID
    scheme: str
    key_version: str

    def aad(self) -> bytes:
        # Fixed field order and a version prefix: the AAD format can evolve without ambiguity.
        return "|".join(
            (AAD_VERSION, f"tenant={self.tenant_id}", f"provider={self.provider}", f"row={self.row_id}",
             f"scheme={self.scheme}", f"key={self.key_version}")
        ).encode()


def seal(key: bytes, plaintext: bytes, binding: RowBinding) -> tuple[bytes, bytes]:
    """Encrypt under `key`; returns (nonce, ciphertext+tag)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, binding.aad())


def unseal(key: bytes, nonce: bytes, ciphertext: bytes, binding: RowBinding) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, binding.aad())
    except InvalidTag:
        raise DecryptError(
            f"credential row {binding.row_id} failed authentication (wrong key, or copied from another row)"
        ) from None


@dataclass(frozen=True)
class EnvKey:
    """The env scheme's 32-byte key and its version label (a fingerprint, so a rotated key is detectable)."""

    key: bytes = field(repr=False)
    version: str

    @classmethod
    def from_bytes(cls, key: bytes) -> EnvKey:
        # A one-way fingerprint names the key in rows without revealing anything about it.
        fingerprint = hashlib.sha256(b"crm-sor key fingerprint\x00" + key).hexdigest()[:16]
        return cls(key=key, version=f"env:{fingerprint}")


def parse_env_key(encoded: str) -> EnvKey:
    """Decode `CRM_CREDENTIAL_ENCRYPTION_KEY` (standard or URL-safe base64 of exactly 32 bytes)."""
    text = encoded.strip()
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise CredentialKeyError("CRM_CREDENTIAL_ENCRYPTION_KEY is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise CredentialKeyError(
            f"CRM_CREDENTIAL_ENCRYPTION_KEY must decode to {KEY_BYTES} bytes (got {len(raw)}); "
            "generate one with: python -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())'"
        )
    return EnvKey.from_bytes(raw)


def load_env_key(settings: Settings) -> EnvKey:
    """The env key from settings. Missing outside `env=dev` is a startup error; malformed always is.

    In dev a missing key becomes a per-process random one (with a warning): `crm-sor dev` persists its own
    key in .crm-sor/, so this only happens when someone runs pieces by hand, and losing those dev rows on
    restart is the honest outcome.
    """
    secret = settings.credential_encryption_key
    if secret is None or not secret.get_secret_value().strip():
        if settings.env == "dev":
            log.warning("CRM_CREDENTIAL_ENCRYPTION_KEY is not set: using a throwaway key for this process (dev)")
            return EnvKey.from_bytes(os.urandom(KEY_BYTES))
        raise CredentialKeyError(
            f"CRM_CREDENTIAL_ENCRYPTION_KEY is required when CRM_ENV={settings.env!r} "
            "(base64 of 32 random bytes); only env=dev may run without it"
        )
    return parse_env_key(secret.get_secret_value())
