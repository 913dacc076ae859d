"""Contract plumbing: Retry-After parsing, error rendering, phones, fingerprints, provider keys, registry."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from drivers import errors, registry
from drivers.base import CrmObject, normalize_phone
from drivers.errors import parse_retry_after
from drivers.idempotency import provider_key, request_fingerprint

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", timedelta(seconds=7)),
        (" 120 ", timedelta(seconds=120)),
        ("0", timedelta(0)),
        ("-3", timedelta(0)),
        ("Sun, 01 Mar 2026 12:01:30 GMT", timedelta(seconds=90)),  # IMF-fixdate
        ("Sunday, 01-Mar-26 12:00:10 GMT", timedelta(seconds=10)),  # obsolete RFC 850 form
        ("Sun, 01 Mar 2026 11:00:00 GMT", timedelta(0)),  # already passed
        ("soon", None),
        ("inf", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: timedelta | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_error_classes_declare_code_and_retryability() -> None:
    table = {
        errors.AuthError: ("auth_error", False),
        errors.NotFoundError: ("not_found", False),
        errors.InvalidRequestError: ("invalid_request", False),
        errors.RateLimitedError: ("rate_limited", True),
        errors.UnavailableError: ("unavailable", True),
        errors.DeleteUnsupportedError: ("delete_unsupported", False),
        errors.ConflictError: ("conflict", False),
    }
    for cls, (code, retryable) in table.items():
        assert issubclass(cls, errors.DriverError) and (cls.code, cls.retryable) == (code, retryable)
    exc = errors.RateLimitedError(
        "GET failed", provider="hubspot", status_code=429, retry_after=timedelta(seconds=10), provider_code="RATE_LIMIT"
    )
    assert str(exc) == "hubspot: rate_limited: GET failed status=429 provider_code=RATE_LIMIT retry_after=10s"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("(415) 555-0100", "+14155550100"),
        ("415.555.0100", "+14155550100"),
        ("+1 415 555 0100", "+14155550100"),
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("12", None),
        ("call me", None),
    ],
)
def test_normalize_phone(raw: str, e164: str | None) -> None:
    assert normalize_phone(raw) == e164


def test_normalize_phone_uses_the_default_region() -> None:
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"


def test_request_fingerprint_is_canonical() -> None:
    a = request_fingerprint(CrmObject.LEAD, {"x": 1, "y": {"b": 2, "a": [1, "2"]}})
    assert a == request_fingerprint("lead", {"y": {"a": [1, "2"], "b": 2}, "x": 1})
    assert len(a) == 64 and a != request_fingerprint("deal", {"x": 1, "y": {"b": 2, "a": [1, "2"]}})
    assert request_fingerprint("lead", {"x": 1}) != request_fingerprint("lead", {"x": "1"})
    assert request_fingerprint("lead", {"d": date(2026, 1, 2)}) != request_fingerprint("lead", {"d": "2026-01-02"})
    assert request_fingerprint("lead", {"m": Decimal("1.50")}) == request_fingerprint("lead", {"m": Decimal("1.50")})
    assert request_fingerprint("lead", {"t": NOW}) == request_fingerprint("lead", {"t": NOW})


def test_provider_key_keeps_safe_keys_and_hashes_the_rest() -> None:
    assert provider_key("conv-1:lead") == "conv-1:lead"
    hashed = provider_key("tenant/1 conv?x")
    assert hashed == provider_key("tenant/1 conv?x") and hashed.startswith("sha256-") and len(hashed) == 71
    assert provider_key("x" * 81).startswith("sha256-")


def test_unknown_slug_lists_the_drivers() -> None:
    listed = "drivers exist for: .*hubspot, .*salesforce.*known providers: hubspot"
    with pytest.raises(registry.UnknownProviderError, match=listed):
        registry.get_driver_class("pipedrive")


def test_planned_slug_says_its_driver_is_not_built() -> None:
    with pytest.raises(registry.UnknownProviderError, match="'zoho' is a known provider whose driver is not built"):
        registry.get_driver_class("zoho")
    assert set(registry.DRIVERS) <= set(registry.KNOWN_SLUGS) and len(registry.KNOWN_SLUGS) == 10


def test_registry_checks_class_and_slug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.DRIVERS, "hubspot2", "drivers.hubspot:HubSpotDriver")
    monkeypatch.setitem(registry.DRIVERS, "oops", "drivers.errors:AuthError")
    with pytest.raises(TypeError, match="declares slug 'hubspot'"):
        registry.get_driver_class("hubspot2")
    with pytest.raises(TypeError, match="not a BaseDriver"):
        registry.get_driver_class("oops")
