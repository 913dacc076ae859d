"""Text helpers every driver shares: phone normalization, names, and exactly-once transcript appends."""

from __future__ import annotations

import hashlib

import phonenumbers

__all__ = ["appended", "batch_marker", "full_name", "national_digits", "normalize_phone"]


def normalize_phone(raw: str, default_region: str = "US") -> str | None:
    """E.164 form of `raw`, or None when it cannot be a phone number.

    `is_possible_number` rather than `is_valid_number`: CRMs hold test and fictional (555) numbers that
    the validity tables reject, and matching them is still what the caller wants.
    """
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def national_digits(e164: str) -> str:
    """The national significant number of an E.164 phone: what phone-field searches match on."""
    return str(phonenumbers.parse(e164).national_number)


def full_name(*parts: str | None) -> str | None:
    return " ".join(p for p in parts if p) or None


def batch_marker(batch_key: str) -> str:
    """The short tag that closes one appended batch in a note, so a retry can find it wherever it stands.

    A digest, not the key: the key is ours (conversation + turn ids) but has no business in a CRM note.
    """
    return f"[crm-sor {hashlib.sha256(batch_key.encode()).hexdigest()[:16]}]"


def appended(current: str | None, text: str, batch_key: str) -> str | None:
    """`current` with `text` and its batch marker on new lines, or None when the batch is already in it.

    None means a retried append already landed, even if something (a later batch, a summary) was
    appended after it: the marker is looked for anywhere in the note, not only at its end.
    """
    current = current or ""
    marker = batch_marker(batch_key)
    if marker in current:
        return None
    block = f"{text}\n{marker}"
    return f"{current}\n{block}" if current else block
