"""Request bodies of the outbound operator routes (pydantic, extra=forbid: a typo is a 422, not ignored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.errors import Problem
from drivers.base import CrmObject
from drivers.text import normalize_phone
from drivers.webhooks import EVENT_KINDS
from store.outbound_rules import condition_problems

OBJECTS = tuple(o.value for o in CrmObject if o is not CrmObject.NOTE)
CHANNELS = ("voice", "sms")
_NAME = r"^[a-z][a-z0-9_\-]{0,63}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TriggerBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    object: str
    kinds: list[str] = Field(min_length=1)
    conditions: list[dict[str, Any]] = Field(default_factory=list, max_length=20)
    purpose: str = Field(pattern=_NAME)  # e.g. new_web_lead_callback
    channel: str = "voice"
    within_minutes: int = Field(default=5, ge=1, le=1440)
    max_defer_hours: int = Field(default=24, ge=1, le=168)
    enabled: bool = True


class PolicyBody(_Body):
    window_start: str = "08:00"
    window_end: str = "21:00"
    daily_attempt_cap: int = Field(default=3, ge=1, le=10)
    dialer_url: str | None = Field(default=None, max_length=2000)
    rotate_dialer_secret: bool = False


class ConsentBody(_Body):
    phone: str = Field(min_length=3, max_length=40)
    purpose: str = Field(pattern=_NAME)
    channel: str = "voice"
    source: str = Field(min_length=1, max_length=200)  # where the consent was given, e.g. web_form:contact
    granted_at: datetime | None = None


class RevokeBody(_Body):
    phone: str = Field(min_length=3, max_length=40)
    purpose: str | None = Field(default=None, pattern=_NAME)  # None: every purpose
    channel: str | None = None  # None: every channel
    source: str = Field(min_length=1, max_length=200)


class DoNotCallBody(_Body):
    phone: str = Field(min_length=3, max_length=40)
    source: str = Field(min_length=1, max_length=200)


class WebhookConfigBody(_Body):
    secret: str | None = Field(default=None, min_length=8, max_length=512)
    org_id: str | None = Field(default=None, min_length=15, max_length=18, pattern=r"^[A-Za-z0-9]+$")


class PollingBody(_Body):
    objects: list[str] = Field(min_length=1, max_length=5)
    every_minutes: int = Field(default=2, ge=1, le=60)


def trigger_problems(body: TriggerBody) -> list[str]:
    problems = []
    if body.object not in OBJECTS:
        problems.append(f"object must be one of {', '.join(OBJECTS)}")
    problems += [f"kinds: {k!r} is not one of {', '.join(EVENT_KINDS)}" for k in body.kinds if k not in EVENT_KINDS]
    if body.channel not in CHANNELS:
        problems.append(f"channel must be one of {', '.join(CHANNELS)}")
    return problems + condition_problems(body.conditions)


def refuse(problems: list[str]) -> None:
    if problems:
        raise Problem(422, "invalid-body", "The request body is not valid.", errors=problems)


def e164_of(phone: str, region: str) -> str:
    e164 = normalize_phone(phone, region)
    if e164 is None:
        raise Problem(422, "invalid-body", "The request body is not valid.", errors=["phone is not a phone number"])
    return e164
