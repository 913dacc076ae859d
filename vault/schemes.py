"""The two encryption schemes a credential row can use, chosen per row at read time.

- `env`: AES-256-GCM under the process's `CRM_CREDENTIAL_ENCRYPTION_KEY` (dev/CI).
- `kms`: AES-256-GCM under a per-row data key that AWS KMS generated and wrapped (production).

Rows of both schemes coexist, which is what lets the backfill re-wrap env rows under KMS while reads go on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from vault.crypto import DecryptError, EnvKey, RowBinding, seal, unseal
from vault.kms import KmsEnvelope, KmsUnavailableError

SCHEMES = ("env", "kms")


@dataclass(frozen=True)
class Sealed:
    """Column values of an encrypted credential row."""

    scheme: str
    key_version: str
    nonce: bytes
    ciphertext: bytes
    wrapped_key: bytes | None


@dataclass(frozen=True)
class RowRef:
    tenant_id: uuid.UUID
    provider: str
    row_id: uuid.UUID

    def kms_context(self) -> dict[str, str]:
        return {"tenant": str(self.tenant_id), "provider": self.provider, "row": str(self.row_id)}


class Sealer:
    """Encrypts and decrypts credential rows under whichever scheme a row names."""

    def __init__(self, env_key: EnvKey | None, kms: KmsEnvelope | None) -> None:
        self.env_key, self.kms = env_key, kms

    @property
    def default_scheme(self) -> str:
        # New rows go to KMS whenever it is configured; env stays readable for the rows not yet re-wrapped.
        return "kms" if self.kms is not None else "env"

    async def seal(self, ref: RowRef, plaintext: bytes, scheme: str | None = None) -> Sealed:
        scheme = scheme or self.default_scheme
        if scheme == "env":
            env = self._env()
            nonce, ciphertext = seal(env.key, plaintext, self._binding(ref, "env", env.version))
            return Sealed("env", env.version, nonce, ciphertext, None)
        if scheme == "kms":
            kms = self._kms()
            data_key, wrapped = await kms.new_data_key(ref.kms_context())
            nonce, ciphertext = seal(data_key, plaintext, self._binding(ref, "kms", kms.key_version))
            return Sealed("kms", kms.key_version, nonce, ciphertext, wrapped)
        raise ValueError(f"unknown credential scheme {scheme!r}")

    async def open(self, ref: RowRef, sealed: Sealed) -> bytes:
        binding = self._binding(ref, sealed.scheme, sealed.key_version)
        if sealed.scheme == "env":
            env = self._env()
            if sealed.key_version != env.version:
                raise DecryptError(
                    f"credential row {ref.row_id} was written under env key {sealed.key_version}, "
                    f"but this process has {env.version}"
                )
            return unseal(env.key, sealed.nonce, sealed.ciphertext, binding)
        if sealed.scheme == "kms":
            if sealed.wrapped_key is None:
                raise DecryptError(f"credential row {ref.row_id} is a kms row without a wrapped key")
            data_key = await self._kms().unwrap(sealed.wrapped_key, ref.kms_context())
            return unseal(data_key, sealed.nonce, sealed.ciphertext, binding)
        raise DecryptError(f"credential row {ref.row_id} names an unknown scheme {sealed.scheme!r}")

    @staticmethod
    def _binding(ref: RowRef, scheme: str, key_version: str) -> RowBinding:
        return RowBinding(ref.tenant_id, ref.provider, ref.row_id, scheme, key_version)

    def _env(self) -> EnvKey:
        if self.env_key is None:
            raise DecryptError("this process has no env credential key (CRM_CREDENTIAL_ENCRYPTION_KEY)")
        return self.env_key

    def _kms(self) -> KmsEnvelope:
        if self.kms is None:
            raise KmsUnavailableError("this row uses KMS, but KMS is not configured (CRM_KMS__KEY_ID)")
        return self.kms
