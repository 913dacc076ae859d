"""Text helpers every driver shares: phone normalization, names, and exactly-once transcript appends."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from typing import Any

import phonenumbers

__all__ = ["appended", "batch_marker", "full_name", "national_digits", "normalize_phone", "phone_formats", "region_of",
           "valid_region"]


DEFAULT_REGION = "US"

# Arabic-Indic (U+0660..0669) and Extended Arabic-Indic / Persian (U+06F0..06F9) digits, as MENA callers' numbers
# arrive from speech-to-text and keyboards. phonenumbers folds them too; folding first lets the `00` check see them.
_DIGITS = str.maketrans({chr(base + d): str(d) for base in (0x0660, 0x06F0) for d in range(10)})


def valid_region(code: str) -> bool:
    """Whether `code` is a region phonenumbers can parse national numbers for (ISO 3166 alpha-2, e.g. AE)."""
    return code.upper() in phonenumbers.SUPPORTED_REGIONS


def region_of(settings: Mapping[str, Any] | None) -> str:
    """A tenant's phone region: its `default_region` setting (set at tenant creation), else US."""
    code = str((settings or {}).get("default_region") or DEFAULT_REGION).upper()
    return code if valid_region(code) else DEFAULT_REGION


def normalize_phone(raw: str, default_region: str = DEFAULT_REGION) -> str | None:
    """E.164 form of `raw`, or None when it cannot be a phone number.

    National numbers are read in `default_region` (the tenant's: a trunk `0` is that region's, so `050 123 4567`
    is +971501234567 for an AE tenant). A leading `00` is the international prefix whatever the region's own
    (the US dials 011), and digits written without `+` or `00` (`971501234567`) that are too long to be a national
    number are read as international. Direction marks and Arabic-Indic or Persian digits are folded away.
    `is_possible_number` rather than `is_valid_number`: CRMs hold test and fictional (555) numbers that the
    validity tables reject, and matching them is still what the caller wants.
    """
    text = "".join(ch for ch in raw.translate(_DIGITS) if unicodedata.category(ch) != "Cf").strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    if text.startswith("00"):
        text = "+" + digits[2:]
    number = _parse(text, default_region)
    if number is not None and phonenumbers.is_possible_number(number):
        return _e164(number)
    if not text.startswith("+") and digits:
        international = _parse("+" + digits, default_region)
        if international is not None and phonenumbers.is_possible_number(international):
            return _e164(international)
    return None


def _parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _e164(number: phonenumbers.PhoneNumber) -> str:
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def national_digits(e164: str) -> str:
    """The national significant number of an E.164 phone: what phone-field searches match on."""
    return str(phonenumbers.parse(e164).national_number)


def phone_formats(e164: str) -> list[str]:
    """The spellings CRMs store one number in, for providers whose search matches stored strings exactly.

    E.164, international digits with `00` or no prefix, international and national as formatted by
    phonenumbers (`+971 50 123 4567`, `050 123 4567`, `(415) 555-2671`), the same with dashes or without
    separators (`0501234567`), and the bare national significant number. Most distinctive first.
    """
    number = phonenumbers.parse(e164)
    fmt = phonenumbers.PhoneNumberFormat
    international = phonenumbers.format_number(number, fmt.INTERNATIONAL)
    national = phonenumbers.format_number(number, fmt.NATIONAL)
    spelled = [e164, e164[1:], "00" + e164[1:], international, "00" + international[1:], national]
    spelled += [s.replace("(", "").replace(")", "").replace(" ", "-") for s in (international, national)]
    spelled += ["".join(ch for ch in national if ch.isdigit()), str(number.national_number)]
    return list(dict.fromkeys(s for s in spelled if s))


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
