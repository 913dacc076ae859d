"""Phone normalization for MENA callers: the tenant's region, trunk 0, 00, Arabic-Indic and Persian digits."""

from __future__ import annotations

import pytest

from drivers.text import normalize_phone, phone_formats, region_of, valid_region


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("050 123 4567", "AE", "+971501234567"),  # trunk 0 of the tenant's region
        ("٠٥٠١٢٣٤٥٦٧", "AE", "+971501234567"),  # Arabic-Indic digits
        ("۰۵۰ ۱۲۳ ۴۵۶۷", "AE", "+971501234567"),  # Persian (extended Arabic-Indic) digits
        ("00971 50 123 4567", "US", "+971501234567"),  # 00 is international even where the IDD is 011
        ("٠٠٩٧١٥٠١٢٣٤٥٦٧", "EG", "+971501234567"),
        ("\u200f+971 50 123 4567", "US", "+971501234567"),  # a right-to-left mark before the number
        ("971501234567", "US", "+971501234567"),  # country code without + or 00: too long to be national
        ("0551234567", "SA", "+966551234567"),
        ("01001234567", "EG", "+201001234567"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("011 971 50 123 4567", "US", "+971501234567"),
        ("not a phone", "AE", None),
    ],
)
def test_normalize_phone_reads_national_numbers_in_the_tenant_region(raw: str, region: str, e164: str | None) -> None:
    assert normalize_phone(raw, region) == e164


def test_the_same_national_number_differs_by_region() -> None:
    assert normalize_phone("050 123 4567", "AE") != normalize_phone("050 123 4567", "SA")


def test_phone_formats_spell_the_number_as_crms_store_it() -> None:
    spellings = phone_formats("+971501234567")
    for stored in ("+971501234567", "971501234567", "00971501234567", "+971 50 123 4567", "050 123 4567",
                   "050-123-4567", "0501234567", "501234567"):
        assert stored in spellings
    assert all(normalize_phone(s, "AE") == "+971501234567" for s in spellings)
    assert {"(415) 555-2671", "415-555-2671", "+1 415-555-2671", "4155552671"} <= set(phone_formats("+14155552671"))


def test_region_of_a_tenant() -> None:
    assert region_of({"default_region": "ae"}) == "AE"
    assert region_of({}) == region_of(None) == region_of({"default_region": "XX"}) == "US"
    assert valid_region("EG") and not valid_region("EGY")
