"""Tables of inbound CRM events and CRM-triggered outbound calls (imported by store/models.py).

No table here holds customer content: events are ids and metadata, people are keyed hashes of their
normalized phone (`store/outbound.py: person_hash`), decisions are states and reasons.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base, created_at, utcnow, uuid_pk


def _classified(data_class: str, *args: Any) -> tuple[Any, ...]:
    return (*args, {"info": {"data_class": data_class}})


class InboundCrmEvent(Base):
    """A verified webhook delivery (or a polled change) from a CRM, normalized to ids.

    `event_id` dedupes redeliveries per (tenant, provider); `status`: received → dispatched → processed.
    """

    __tablename__ = "inbound_crm_events"
    __table_args__ = _classified("b", UniqueConstraint("tenant_id", "provider", "event_id"),
                                 Index("ix_inbound_events_status", "status", "received_at"))

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    provider: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(64))
    object: Mapped[str | None] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="received")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    kind: Mapped[str] = mapped_column(String(16), default="updated", server_default="updated")
    occurred_at: Mapped[datetime | None]
    changed_fields: Mapped[list[str]] = mapped_column(default=list)  # field names only, never values
    source: Mapped[str] = mapped_column(String(16), default="webhook", server_default="webhook")  # webhook | poll


class OutboundTrigger(Base):
    """Which CRM events prompt an outbound call, and for what purpose (operator-managed)."""

    __tablename__ = "outbound_triggers"
    __table_args__ = _classified("a")

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(200))
    object: Mapped[str] = mapped_column(String(64))
    kinds: Mapped[list[str]] = mapped_column(default=list)
    conditions: Mapped[list[Any]] = mapped_column(JSON, default=list)  # [{"field", "op", "value"}]: tenant config
    purpose: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16), default="voice")
    within_minutes: Mapped[int] = mapped_column(Integer, default=5)
    max_defer_hours: Mapped[int] = mapped_column(Integer, default=24)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboundPolicy(Base):
    """Per-tenant calling policy: the permitted local window (never wider than 08:00–21:00), caps, dialer."""

    __tablename__ = "outbound_policies"
    __table_args__ = _classified("a")

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    window_start: Mapped[str] = mapped_column(String(5), default="08:00")
    window_end: Mapped[str] = mapped_column(String(5), default="21:00")
    daily_attempt_cap: Mapped[int] = mapped_column(Integer, default=3)
    dialer_url: Mapped[str | None] = mapped_column(Text)  # None: the agent service pulls requests instead
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboundConsent(Base):
    """Consent to be called for a purpose on a channel: its source and time; revocable (revocation wins)."""

    __tablename__ = "outbound_consents"
    __table_args__ = _classified("a", UniqueConstraint("tenant_id", "person_hash", "purpose", "channel"))

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    person_hash: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(200))  # e.g. web_form:contact-us, recorded_call:<id>
    granted_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_source: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DoNotCall(Base):
    """The tenant's internal do-not-call list (keyed hashes)."""

    __tablename__ = "outbound_do_not_call"
    __table_args__ = _classified("a", UniqueConstraint("tenant_id", "person_hash"))

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    person_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_at()


class CallRequest(Base):
    """At most one outbound call per inbound event (`event_row_id` unique), with its gate state.

    status: pending | deferred | placed | blocked; `reason` says why (a code, no content).
    """

    __tablename__ = "outbound_call_requests"
    __table_args__ = _classified("b", UniqueConstraint("event_row_id"),
                                 Index("ix_call_requests_person", "tenant_id", "person_hash", "placed_at"))

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    event_row_id: Mapped[uuid.UUID]
    trigger_id: Mapped[uuid.UUID]
    provider: Mapped[str] = mapped_column(String(64))
    object: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    person_hash: Mapped[str | None] = mapped_column(String(64))
    time_zones: Mapped[list[str]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(String(64))
    not_before: Mapped[datetime | None]
    deadline: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()
    placed_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    pulled_at: Mapped[datetime | None]


class PollCursor(Base):
    """Where the polling schedule of a provider without webhooks left off, per (tenant, object)."""

    __tablename__ = "crm_poll_cursors"
    __table_args__ = _classified("b", UniqueConstraint("tenant_id", "object"))

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    object: Mapped[str] = mapped_column(String(64))
    since: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
