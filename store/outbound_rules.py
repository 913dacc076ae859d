"""Rules a tenant's outbound configuration must satisfy: the calling window and trigger conditions.

Pure functions, shared by the operator routes (validation) and the activities (evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any

CONDITION_OPS = ("eq", "ne", "in", "exists", "changed")


@dataclass(frozen=True)
class Window:
    start: time
    end: time


DEFAULT_WINDOW = (time(8, 0), time(21, 0))  # the widest window a tenant may configure


def parse_window(start: str, end: str) -> tuple[Window | None, list[str]]:
    """A tenant's window, or the problems with it (it may only be stricter than 08:00–21:00)."""
    problems: list[str] = []
    try:
        begin, finish = time.fromisoformat(start), time.fromisoformat(end)
    except ValueError:
        return None, ["window_start and window_end must be HH:MM"]
    if begin < DEFAULT_WINDOW[0]:
        problems.append("window_start may not be earlier than 08:00")
    if finish > DEFAULT_WINDOW[1]:
        problems.append("window_end may not be later than 21:00")
    if begin >= finish:
        problems.append("window_start must be before window_end")
    return (None if problems else Window(begin, finish)), problems


def condition_problems(conditions: Sequence[Any]) -> list[str]:
    problems = []
    for index, condition in enumerate(conditions):
        if not isinstance(condition, dict) or not isinstance(condition.get("field"), str) or not condition["field"]:
            problems.append(f"conditions[{index}]: needs a field name")
            continue
        if condition.get("op") not in CONDITION_OPS:
            problems.append(f"conditions[{index}]: op must be one of {', '.join(CONDITION_OPS)}")
        elif condition["op"] == "in" and not isinstance(condition.get("value"), list):
            problems.append(f"conditions[{index}]: op 'in' needs a list value")
        elif condition["op"] in ("eq", "ne") and "value" not in condition:
            problems.append(f"conditions[{index}]: op {condition['op']!r} needs a value")
    return problems


