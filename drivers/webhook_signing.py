"""Standard Webhooks signatures (standardwebhooks.com spec v1.0.0), implemented from the spec.

Signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`; the signature is `v1,` + base64(HMAC-SHA256)
keyed with the base64-decoded secret (`whsec_` + base64 of 24–64 random bytes). Several signatures travel
space-separated in `webhook-signature`, which is how a secret is rotated: during the overlap both the new
and the previous secret sign, and a receiver holding either one verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence

__all__ = ["PREFIX", "TOLERANCE_SECONDS", "SignatureError", "new_secret", "sign", "signature_header", "verify"]

PREFIX = "whsec_"
TOLERANCE_SECONDS = 300  # the spec's ±5 minutes


class SignatureError(ValueError):
    """A webhook that must be rejected; the message is one of the reference libraries' reasons."""


def new_secret(size: int = 32) -> str:
    """A fresh signing secret, `whsec_` + base64 of `size` random bytes (the spec allows 24–64)."""
    if not 24 <= size <= 64:
        raise ValueError("Standard Webhooks secrets are 24 to 64 bytes")
    return PREFIX + base64.b64encode(secrets.token_bytes(size)).decode()


def _key(secret: str) -> bytes:
    raw = secret[len(PREFIX):] if secret.startswith(PREFIX) else secret
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)  # tolerate unpadded secrets
    except binascii.Error as exc:
        raise SignatureError("Invalid webhook secret") from exc
    if not key:
        raise SignatureError("Empty webhook secret")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` over `{msg_id}.{timestamp}.{body}`."""
    if "." in msg_id:
        raise ValueError("a webhook id must not contain '.' (it delimits the signed content)")
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), content, hashlib.sha256).digest()).decode()


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one `v1` signature per secret (current first), space-separated."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> None:
    """Check one request as a receiver must; SignatureError with the reason when it fails."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lowered.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise SignatureError("Missing required headers")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("Invalid Signature Headers") from None
    current = time.time() if now is None else now
    if timestamp < current - TOLERANCE_SECONDS:
        raise SignatureError("Message timestamp too old")
    if timestamp > current + TOLERANCE_SECONDS:
        raise SignatureError("Message timestamp too new")
    expected = sign(secret, msg_id, timestamp, body).encode()
    for candidate in signatures.split(" "):
        version, _, _ = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureError("No matching signature found")
