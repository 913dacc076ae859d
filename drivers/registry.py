"""Provider slug -> driver class, imported lazily so loading one driver never imports the others.

Adding a provider means one driver file, one line in DRIVERS, a sandbox and a contract-suite harness entry.
"""

from __future__ import annotations

import importlib

from drivers.base import BaseDriver
from drivers.provider import CredentialForm

__all__ = [
    "DRIVERS",
    "KNOWN_SLUGS",
    "PartnershipOnlyError",
    "UnknownProviderError",
    "credential_forms",
    "get_driver_class",
]

DRIVERS: dict[str, str] = {
    "hubspot": "drivers.hubspot:HubSpotDriver",
    "salesforce": "drivers.salesforce:SalesforceDriver",
    # issue 11: the OAuth family
    "zoho": "drivers.zoho:ZohoDriver",
    "athenahealth": "drivers.athenahealth:AthenahealthDriver",
    # issue 12: the vertical CRMs
    "mindbody": "drivers.mindbody:MindbodyDriver",
    "tekmetric": "drivers.tekmetric:TekmetricDriver",
    "toast": "drivers.toast:ToastDriver",
    # issue 13
    "odoo": "drivers.odoo:OdooDriver",
    "custom_webhook": "drivers.custom_webhook:CustomWebhookDriver",
    "generic_rest": "drivers.generic_rest:GenericRestDriver",
}

# Every slug the product knows (DESIGN.md §4), with or without a driver yet; used for validation messages.
KNOWN_SLUGS: tuple[str, ...] = (
    "hubspot",
    "salesforce",
    "zoho",
    "mindbody",
    "athenahealth",
    "tekmetric",
    "odoo",
    "toast",
    "generic_rest",
    "custom_webhook",
)

# Reserved slugs that can never have a driver, and what to use instead.
PARTNERSHIP_ONLY: dict[str, str] = {"opentable": "custom_webhook"}


class UnknownProviderError(LookupError):
    """The slug has no driver. The message lists the slugs that do."""

    def __init__(self, slug: str, message: str | None = None) -> None:
        self.slug = slug
        super().__init__(
            message
            or f"unknown CRM provider {slug!r}; drivers exist for: {', '.join(sorted(DRIVERS))}" + _planned_suffix(slug)
        )


class PartnershipOnlyError(UnknownProviderError):
    """The provider's API is open to commercial partners only, so there is no driver to build."""

    def __init__(self, slug: str) -> None:
        alternative = PARTNERSHIP_ONLY[slug]
        super().__init__(
            slug,
            f"{slug!r} has no public API: access is partnership-only. "
            f"Use {alternative!r} and have the venue's system forward bookings to our webhook instead.",
        )


def _planned_suffix(slug: str) -> str:
    if slug in KNOWN_SLUGS:
        return f" ({slug!r} is a known provider whose driver is not built yet)"
    return f" (known providers: {', '.join(KNOWN_SLUGS)})"


def get_driver_class(slug: str) -> type[BaseDriver]:
    """Import and return the driver class for `slug`, checking it really is that provider's driver."""
    if slug in PARTNERSHIP_ONLY:
        raise PartnershipOnlyError(slug)
    target = DRIVERS.get(slug)
    if target is None:
        raise UnknownProviderError(slug)
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, BaseDriver)):
        raise TypeError(f"{target} is not a BaseDriver subclass")
    if cls.slug != slug:
        raise TypeError(f"{target} declares slug {cls.slug!r}, registered as {slug!r}")
    return cls


def credential_forms() -> dict[str, type[CredentialForm]]:
    """Every provider's credential form, by slug (imports every driver: for API documentation and the console)."""
    forms = {slug: get_driver_class(slug).credential_form for slug in DRIVERS}
    return {slug: form for slug, form in forms.items() if form is not None}
