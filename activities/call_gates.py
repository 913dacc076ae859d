"""The consent gates of an outbound call, as pure functions (no I/O): the activity feeds them facts.

Order of the checks, each a recorded reason: no phone → `no_phone`; on the tenant's do-not-call list →
`do_not_call`; no consent for this purpose and channel → `no_consent`; consent revoked → `consent_revoked`
(revocation wins over anything pending); callee's time zone unknown → `unknown_time_zone` (never guess: a
wrong guess is a call at 23:00); then the attempt cap per person per callee-local day and the quiet hours:
outside the window → `defer` to the next permitted moment, unless that is past the trigger's deadline →
`window_missed`.

Quiet hours hold in the **callee's** local time: the record's IANA time zone when the CRM has one, else every
zone of the phone number's region (`phonenumbers.timezone`); with several zones, a moment is permitted only if
it is inside the window in all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones

from store.outbound_rules import DEFAULT_WINDOW, Window, parse_window

__all__ = ["DEFAULT_WINDOW", "Decision", "Facts", "Window", "callee_zones", "decide", "local_day", "next_permitted",
           "parse_window"]

def valid_zone(name: object) -> str | None:
    if not isinstance(name, str) or not name or name.startswith("Etc/Unknown"):
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def callee_zones(e164: str, record_zone: object = None) -> list[str]:
    """The record's zone when valid, else the phone number's zones (empty: unknown)."""
    zone = valid_zone(record_zone)
    if zone:
        return [zone]
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return []
    return sorted({z for z in phone_timezones.time_zones_for_number(number) if valid_zone(z)})


def _inside(moment: datetime, zone: str, window: Window) -> bool:
    local = moment.astimezone(ZoneInfo(zone)).time()
    return window.start <= local < window.end


def _next_start(moment: datetime, zone: str, window: Window) -> datetime:
    local = moment.astimezone(ZoneInfo(zone))
    day = local.date() if local.time() < window.start else local.date() + timedelta(days=1)
    return datetime.combine(day, window.start, ZoneInfo(zone)).astimezone(UTC)


def next_permitted(now: datetime, zones: Sequence[str], window: Window) -> datetime | None:
    """The first moment ≥ now inside the window in every zone; None when the zones never share one."""
    candidate = now
    for _ in range(16):  # each step moves to some zone's next opening; a week of steps means never
        outside = [z for z in zones if not _inside(candidate, z, window)]
        if not outside:
            return candidate
        candidate = max(_next_start(candidate, z, window) for z in outside)
    return None


def local_day(moment: datetime, zone: str) -> tuple[datetime, datetime]:
    """The callee-local calendar day containing `moment`, as UTC bounds (for attempt caps)."""
    tz = ZoneInfo(zone)
    start = datetime.combine(moment.astimezone(tz).date(), time(0), tz)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


@dataclass(frozen=True)
class Facts:
    """What the activity read, right before the call: ids and flags only."""

    has_phone: bool
    do_not_call: bool
    consent: str  # granted | revoked | none
    zones: tuple[str, ...]
    placed_today: int
    daily_cap: int
    deadline: datetime


@dataclass(frozen=True)
class Decision:
    action: str  # place | defer | block
    reason: str
    until: datetime | None = None


def decide(now: datetime, facts: Facts, window: Window) -> Decision:
    if not facts.has_phone:
        return Decision("block", "no_phone")
    if facts.do_not_call:
        return Decision("block", "do_not_call")
    if facts.consent == "revoked":
        return Decision("block", "consent_revoked")
    if facts.consent != "granted":
        return Decision("block", "no_consent")
    if not facts.zones:
        return Decision("block", "unknown_time_zone")
    reason, earliest = "quiet_hours", now
    if facts.placed_today >= facts.daily_cap:
        reason, earliest = "daily_cap", local_day(now, facts.zones[0])[1]
    until = next_permitted(earliest, facts.zones, window)
    if until is None:
        return Decision("block", "no_common_window")
    if until == now:
        return Decision("place", "permitted")
    if until > facts.deadline:
        return Decision("block", "window_missed")
    return Decision("defer", reason, until)
