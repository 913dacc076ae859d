"""The consent gates as pure functions: callee-local quiet hours, several zones, caps, deadlines, reasons."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from activities.call_gates import Facts, Window, callee_zones, decide, next_permitted, parse_window

NY = ZoneInfo("America/New_York")
WINDOW, _ = parse_window("08:00", "21:00")
assert WINDOW is not None
OK = Facts(has_phone=True, do_not_call=False, consent="granted", zones=("America/New_York",), placed_today=0,
           daily_cap=3, deadline=datetime(2030, 1, 1, tzinfo=UTC))


def ny(hour: int, minute: int = 0, day: int = 10) -> datetime:
    return datetime(2026, 6, day, hour, minute, tzinfo=NY).astimezone(UTC)


def test_inside_the_window_places() -> None:
    assert decide(ny(10), OK, WINDOW).action == "place"


def test_at_2230_callee_time_defers_to_0800_next_day() -> None:
    decision = decide(ny(22, 30), OK, WINDOW)
    assert (decision.action, decision.reason) == ("defer", "quiet_hours")
    assert decision.until == ny(8, 0, day=11)


def test_before_0800_defers_to_0800_same_day() -> None:
    assert decide(ny(6, 59), OK, WINDOW).until == ny(8, 0)


def test_the_callee_zone_counts_not_ours() -> None:
    # 22:30 in New York is 19:30 in Los Angeles: permitted there.
    la = replace(OK, zones=("America/Los_Angeles",))
    assert decide(ny(22, 30), la, WINDOW).action == "place"


def test_several_zones_must_all_be_inside() -> None:
    both = replace(OK, zones=("America/Los_Angeles", "America/New_York"))
    decision = decide(ny(8, 30), both, WINDOW)  # 05:30 in LA
    assert decision.action == "defer"
    assert decision.until == datetime(2026, 6, 10, 8, 0, tzinfo=ZoneInfo("America/Los_Angeles")).astimezone(UTC)


@pytest.mark.parametrize(("facts", "reason"), [
    (replace(OK, has_phone=False), "no_phone"),
    (replace(OK, do_not_call=True), "do_not_call"),
    (replace(OK, consent="none"), "no_consent"),
    (replace(OK, consent="revoked"), "consent_revoked"),
    (replace(OK, zones=()), "unknown_time_zone"),
    (replace(OK, deadline=ny(23)), "window_missed"),
])
def test_never_permitted_blocks_with_its_reason(facts: Facts, reason: str) -> None:
    decision = decide(ny(22, 30), facts, WINDOW)
    assert (decision.action, decision.reason) == ("block", reason)


def test_revocation_wins_even_inside_the_window() -> None:
    assert decide(ny(12), replace(OK, consent="revoked"), WINDOW).reason == "consent_revoked"


def test_daily_cap_defers_to_the_next_local_day() -> None:
    decision = decide(ny(12), replace(OK, placed_today=3), WINDOW)
    assert (decision.action, decision.reason, decision.until) == ("defer", "daily_cap", ny(8, 0, day=11))


def test_stricter_tenant_window() -> None:
    strict, problems = parse_window("09:30", "18:00")
    assert strict is not None and not problems
    assert decide(ny(9), OK, strict).until == ny(9, 30)


@pytest.mark.parametrize(("start", "end"), [("07:00", "20:00"), ("09:00", "22:00"), ("12:00", "11:00"), ("x", "y")])
def test_a_window_wider_than_0800_2100_or_malformed_is_refused(start: str, end: str) -> None:
    window, problems = parse_window(start, end)
    assert window is None and problems


def test_zones_never_overlapping_return_none() -> None:
    narrow = Window(*parse_window("08:00", "09:00")[0].__dict__.values())  # type: ignore[union-attr]
    assert next_permitted(ny(12), ("America/New_York", "Asia/Tokyo"), narrow) is None


def test_callee_zone_from_record_else_phone_region() -> None:
    assert callee_zones("+12125550100", "Europe/Paris") == ["Europe/Paris"]
    assert callee_zones("+12125550100", None) == ["America/New_York"]
    assert callee_zones("+12125550100", "Not/AZone") == ["America/New_York"]
    assert callee_zones("+442079460000") == ["Europe/London"]
    assert callee_zones("+13105550100") == ["America/Los_Angeles"]


def test_a_region_spanning_guam_to_newfoundland_waits_for_a_moment_inside_all_zones() -> None:
    # A non-geographic +1 500 number maps to every NANP zone, Guam to St John's: only ~90 minutes a day fit.
    zones = tuple(callee_zones("+15005550006"))
    assert len(zones) > 10
    decision = decide(ny(12), replace(OK, zones=zones), WINDOW)
    assert decision.action == "defer" and decision.until is not None
    for zone in zones:
        local = decision.until.astimezone(ZoneInfo(zone)).time()
        assert WINDOW.start <= local < WINDOW.end, zone


def test_daylight_saving_day_is_local() -> None:
    # 2026-11-01: New York falls back; 08:00 local is 13:00 UTC (not 12:00).
    decision = decide(datetime(2026, 11, 1, 4, 0, tzinfo=UTC), OK, WINDOW)
    assert decision.until == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
    assert decision.until - datetime(2026, 11, 1, 4, 0, tzinfo=UTC) == timedelta(hours=9)
