"""KMS envelope encryption: a per-row data key from AWS KMS, wrapped by the KMS key and stored beside the row.

Plaintext credentials never reach KMS: KMS only generates and unwraps 32-byte data keys, and every call
carries an encryption context naming the tenant, provider and row, so a wrapped key copied to another row
is refused by KMS itself (and the row's AES-GCM associated data refuses it again).

boto3 is synchronous, so every call runs in a worker thread (`asyncio.to_thread`); its clients are
thread-safe. Unwrapped data keys are cached in-process, bounded by age and by uses, so a burst of
webhook-path decrypts does not call KMS each time; concurrent misses for one key share one KMS call.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from settings import KmsSettings
from vault.crypto import DecryptError

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

DEFAULT_CACHE_SECONDS = 300.0
DEFAULT_CACHE_MAX_USES = 1000
DEFAULT_CACHE_MAX_ENTRIES = 4096


class KmsUnavailableError(RuntimeError):
    """KMS could not be reached or refused the call; only kms-scheme rows are affected."""


@dataclass
class _Entry:
    key: bytes = field(repr=False)
    expires_at: float
    uses_left: int


class DataKeyCache:
    """Unwrapped data keys by (wrapped key, context) digest; an entry dies after `ttl` or `max_uses` reads."""

    def __init__(self, ttl_seconds: float = DEFAULT_CACHE_SECONDS, max_uses: int = DEFAULT_CACHE_MAX_USES,
                 max_entries: int = DEFAULT_CACHE_MAX_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds, self.max_uses, self.max_entries, self._clock = ttl_seconds, max_uses, max_entries, clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, digest: str) -> bytes | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry.expires_at <= self._clock() or entry.uses_left <= 0:
            del self._entries[digest]
            return None
        entry.uses_left -= 1
        self._entries.move_to_end(digest)
        return entry.key

    def put(self, digest: str, key: bytes) -> None:
        if self.ttl_seconds <= 0 or self.max_uses <= 0:
            return
        self._entries[digest] = _Entry(key, self._clock() + self.ttl_seconds, self.max_uses)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _digest(wrapped: bytes, context: Mapping[str, str]) -> str:
    material = wrapped + b"\x00" + "\x00".join(f"{k}={context[k]}" for k in sorted(context)).encode()
    return hashlib.sha256(material).hexdigest()


class KmsEnvelope:
    """Generates and unwraps per-row data keys under one KMS key.

    Attributes:
        calls: KMS API calls made, by operation name (`GenerateDataKey`, `Decrypt`); the bench reads it.
        key_version: the label stored in rows written under this key (`kms:<key id>`).
    """

    def __init__(self, client: KMSClient, key_id: str, *, cache: DataKeyCache | None = None) -> None:
        self._client, self.key_id = client, key_id
        self.cache = cache if cache is not None else DataKeyCache()
        self.calls: Counter[str] = Counter()
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        # Rows carry at most 64 characters of key version; the key's own id (not the ARN) fits.
        self.key_version = "kms:" + key_id.rsplit("/", 1)[-1][:60]

    @classmethod
    def from_settings(cls, kms: KmsSettings, **client_kwargs: Any) -> KmsEnvelope:
        if not kms.key_id:
            raise KmsUnavailableError("KMS is not configured (CRM_KMS__KEY_ID is empty)")
        # Short timeouts and few retries: a decrypt on the agent's hot path must fail fast when KMS is away.
        config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
        client = boto3.client("kms", region_name=kms.region, endpoint_url=kms.endpoint_url, config=config,
                              **client_kwargs)
        cache = DataKeyCache(kms.data_key_cache_seconds, kms.data_key_cache_max_uses)
        return cls(client, kms.key_id, cache=cache)

    async def new_data_key(self, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """(plaintext data key, KMS-wrapped data key) for a new ciphertext bound to `context`."""
        response = await self._call("GenerateDataKey", self._client.generate_data_key, KeyId=self.key_id,
                                    KeySpec="AES_256", EncryptionContext=dict(context))
        plaintext, wrapped = bytes(response["Plaintext"]), bytes(response["CiphertextBlob"])
        self.cache.put(_digest(wrapped, context), plaintext)
        return plaintext, wrapped

    async def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The plaintext data key for `wrapped`, from the cache or from KMS (one call per concurrent miss)."""
        digest = _digest(wrapped, context)
        cached = self.cache.get(digest)
        if cached is not None:
            return cached
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            response = await self._call("Decrypt", self._client.decrypt, CiphertextBlob=wrapped,
                                        EncryptionContext=dict(context))
            plaintext = bytes(response["Plaintext"])
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, and nobody else must warn about it
            raise
        else:
            future.set_result(plaintext)
            self.cache.put(digest, plaintext)
            return plaintext
        finally:
            del self._inflight[digest]

    async def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        self.calls[operation] += 1
        try:
            return await asyncio.to_thread(method, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            if code == "InvalidCiphertextException":
                # The wrapped key does not belong to this tenant/provider/row context.
                raise DecryptError(f"KMS refused to unwrap the data key ({code})") from None
            raise KmsUnavailableError(f"KMS {operation} failed: {code}") from None
        except BotoCoreError as exc:
            raise KmsUnavailableError(f"KMS {operation} failed: {type(exc).__name__} (is KMS reachable?)") from None
