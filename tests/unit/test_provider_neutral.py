"""vault/ and api/ hold no provider knowledge: every provider fact lives in its driver (STYLE.md 1.1).

Scans the code, comments and messages of vault/ and api/ for every registered or planned slug and every
driver's provider name; a hit means a provider table or special case crept back in.
"""

from __future__ import annotations

import re
from pathlib import Path

from drivers.registry import DRIVERS, KNOWN_SLUGS, PARTNERSHIP_ONLY, get_driver_class

ROOT = Path(__file__).resolve().parents[2]


def _names() -> set[str]:
    names = {*KNOWN_SLUGS, *DRIVERS, *PARTNERSHIP_ONLY}
    names |= {get_driver_class(slug).__name__.removesuffix("Driver") for slug in DRIVERS}
    # Slugs with underscores also appear in prose with spaces or joined ("generic rest", "CustomWebhook").
    names |= {n.replace("_", " ") for n in list(names)} | {n.replace("_", "") for n in list(names)}
    return {n for n in names if n}


def _pattern(names: set[str]) -> re.Pattern[str]:
    alternatives = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z])({alternatives})(?![A-Za-z])", re.IGNORECASE)


def test_vault_and_api_name_no_provider() -> None:
    pattern = _pattern(_names())
    hits = [f"{path.relative_to(ROOT)}:{n}: {m.group(0)}"
            for folder in ("vault", "api") for path in sorted((ROOT / folder).rglob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1) for m in pattern.finditer(line)]
    assert hits == []


def test_the_scan_sees_a_provider_name() -> None:
    # The pattern must catch what it is for: a slug or a provider's name in any case, in code or a comment.
    names = _names()
    assert {"zoho", "athenahealth", "Salesforce", "HubSpot"} <= names
    pattern = _pattern(names)
    assert pattern.search("config['is_sandbox']  # SALESFORCE sandbox orgs") is not None
    assert pattern.search("accounts-server of zoho's EU DC") is not None
    assert pattern.search("an ordinary sentence about tokens") is None
