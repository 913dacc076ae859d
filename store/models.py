"""Every table crm-sor has, each with its data class (see store/base.py and DESIGN §2).

Class-(c) tables also declare `retention_days`: how long a row stays here after its CRM write succeeded.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base, BigIntPK, ContentRow, created_at, utcnow, uuid_pk
from store.console_sessions import ConsoleSession  # noqa: F401  (registered on Base.metadata)
from store.outbound_models import (  # noqa: F401  (registered on Base.metadata; re-exported)
    CallRequest,
    DoNotCall,
    InboundCrmEvent,
    OutboundConsent,
    OutboundPolicy,
    OutboundTrigger,
    PollCursor,
)
from store.phone_index import PhoneIndexEntry  # noqa: F401  (registered on Base.metadata; re-exported)


def classified(data_class: str, *args: Any, retention_days: int | None = None) -> tuple[Any, ...]:
    info: dict[str, Any] = {"data_class": data_class}
    if retention_days is not None:
        info["retention_days"] = retention_days
    return (*args, {"info": info})


# ---- (a) configuration ---------------------------------------------------------------------------


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = classified("a")

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | active | disabled
    status_reason: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # provider config: instance_url, portal id…
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TenantCredential(Base):
    """One encrypted secret blob per (tenant, provider); `version` is the compare-and-swap counter."""

    __tablename__ = "tenant_credentials"
    __table_args__ = classified("a", UniqueConstraint("tenant_id", "provider"))

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    scheme: Mapped[str] = mapped_column(String(8))  # env | kms
    key_version: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)  # kms scheme: the KMS-wrapped data key
    version: Mapped[int] = mapped_column(Integer, default=1)
    expires_at: Mapped[datetime | None]
    rotated_at: Mapped[datetime | None]
    needs_reconnect: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = created_at()


class TenantCrmFieldMapping(Base):
    __tablename__ = "tenant_crm_field_mapping"
    __table_args__ = classified("a", UniqueConstraint("tenant_id", "canonical_key", "kind"))

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    canonical_key: Mapped[str] = mapped_column(String(128))  # e.g. lead.budget_max
    provider_field: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default="write")  # read | write | object | trigger
    created_at: Mapped[datetime] = created_at()


class TenantCrmSchema(Base):
    """What the tenant's CRM said about one object's fields (describe_schema), kept for tool schemas and value
    coercion without a CRM round trip per call; refreshed by the operator's validate and by the installer."""

    __tablename__ = "tenant_crm_schema"
    __table_args__ = classified("a", UniqueConstraint("tenant_id", "object"))

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    object: Mapped[str] = mapped_column(String(32))  # canonical object
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # FieldInfo dicts (names, labels, types)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantCrmInstall(Base):
    """The installer's last report for a tenant: whether exactly-once create is possible in its CRM.

    `state`: complete | manual_steps (an admin must create fields; the tenant stays pending) | degraded (an
    operator accepted running without them; visible on the connection).
    """

    __tablename__ = "tenant_crm_installs"
    __table_args__ = classified("a")

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)  # per object: created / present / manual steps
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """Public API key: only a hash is stored; `prefix` finds the row without scanning hashes."""

    __tablename__ = "api_keys"
    __table_args__ = classified("a")

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary)
    scopes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = created_at()
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


# ---- (c) customer content: mirrored to the CRM, then purged --------------------------------------


class Customer(ContentRow, Base):
    __tablename__ = "customers"
    __table_args__ = classified("c", Index("ix_customers_tenant_phone", "tenant_id", "phone"), retention_days=30)

    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))  # E.164
    email: Mapped[str | None] = mapped_column(String(320))
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)  # canonical keys -> values


class Conversation(ContentRow, Base):
    __tablename__ = "conversations"
    __table_args__ = classified("c", retention_days=30)

    customer_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    channel: Mapped[str] = mapped_column(String(16), default="voice")  # voice | chat
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    summary: Mapped[str | None] = mapped_column(Text)


class Message(ContentRow, Base):
    """One turn of a conversation; mirrored as part of its conversation's transcript note."""

    __tablename__ = "messages"
    __table_args__ = classified("c", UniqueConstraint("conversation_id", "turn_id"), retention_days=7)

    conversation_id: Mapped[uuid.UUID] = mapped_column(index=True)
    turn_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))  # agent | customer
    text: Mapped[str] = mapped_column(Text)
    spoken_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lead(ContentRow, Base):
    __tablename__ = "leads"
    __table_args__ = classified("c", retention_days=30)

    customer_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    conversation_id: Mapped[uuid.UUID | None]
    source: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="new")
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)  # lead.budget_max, lead.property_type…


class QualificationState(ContentRow, Base):
    __tablename__ = "qualification_states"
    __table_args__ = classified("c", retention_days=30)

    lead_id: Mapped[uuid.UUID] = mapped_column(index=True, unique=True)
    stage: Mapped[str] = mapped_column(String(32), default="new")
    score: Mapped[int | None]
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Appointment(ContentRow, Base):
    __tablename__ = "appointments"
    __table_args__ = classified("c", retention_days=30)

    customer_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    conversation_id: Mapped[uuid.UUID | None]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    service: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32), default="booked")
    notes: Mapped[str | None] = mapped_column(Text)


class Case(ContentRow, Base):
    __tablename__ = "cases"
    __table_args__ = classified("c", retention_days=90)

    customer_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    conversation_id: Mapped[uuid.UUID | None]
    subject: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), default="open")
    priority: Mapped[str | None] = mapped_column(String(16))


# ---- (b) operational metadata: ids and states, no customer content -------------------------------


class MirrorOutbox(Base):
    """Mirror intents, written in the same transaction as the class-(c) row; the relay drains them."""

    __tablename__ = "mirror_outbox"
    # ix_outbox_row: the sweep asks "does this row already have an intent in flight?" per stuck row.
    __table_args__ = classified("b", Index("ix_outbox_unrelayed", "relayed_at", "id"),
                                Index("ix_outbox_row", "table_name", "row_id"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    table_name: Mapped[str] = mapped_column(String(64))
    row_id: Mapped[uuid.UUID]
    op: Mapped[str] = mapped_column(String(16))  # create | update | append
    created_at: Mapped[datetime] = created_at()
    relayed_at: Mapped[datetime | None]
    relay_attempts: Mapped[int] = mapped_column(Integer, default=0)


class IdempotencyRecord(Base):
    """(tenant, scope, key) -> the outcome of the first request with that key, and its fingerprint."""

    __tablename__ = "idempotency_ledger"
    __table_args__ = classified("b", UniqueConstraint("tenant_id", "scope", "key"))

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    scope: Mapped[str] = mapped_column(String(64))  # e.g. crm_object:hubspot, api:create-record
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical request
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done
    external_id: Mapped[str | None] = mapped_column(String(255))
    record_url: Mapped[str | None] = mapped_column(Text)
    response_status: Mapped[int | None]
    # Mirror writes: the row version (its updated_at) the CRM write carried, so a newer version is never
    # taken for written; the fingerprint is that version's content.
    row_updated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()
    completed_at: Mapped[datetime | None]


class Incident(Base):
    __tablename__ = "incidents"
    # At most one open incident per (tenant, kind, failure kind): the mirror and the sweep both escalate, and a
    # CRM down for a day is one incident carrying its row count, not one per row.
    __table_args__ = classified("b", Index("ix_incidents_tenant_status", "tenant_id", "status"),
                                Index("uq_incidents_open_kind", "tenant_id", "kind", "failure_kind",
                                      unique=True, postgresql_where=text("status = 'open'"),
                                      sqlite_where=text("status = 'open'")))

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(32))  # crm_sync_failure | …
    # The error code the affected rows share (unavailable, auth_error, rate_limited, unmapped_fields, …).
    failure_kind: Mapped[str | None] = mapped_column(String(32))
    row_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # rows affected right now
    table_name: Mapped[str | None] = mapped_column(String(64))  # unused since 0007 (incidents are per tenant)
    row_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | resolved
    last_error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]


class ErasureRequest(Base):
    """Proof that an erasure happened: the subject only as a keyed hash."""

    __tablename__ = "erasure_requests"
    __table_args__ = classified("b", Index("ix_erasure_requests_subject", "tenant_id", "subject_hash"))

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    subject_hash: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | completed | needs_attention
    created_at: Mapped[datetime] = created_at()
    completed_at: Mapped[datetime | None]
    workflow_id: Mapped[str | None] = mapped_column(String(200))
    # The identifiers, AES-GCM sealed under a key derived from subject_hash_key and bound to this row;
    # cleared once no CRM step is left to retry (store/erasure_requests.py).
    sealed_identifiers: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[str | None] = mapped_column(String(64))  # a step and error code, e.g. discover:auth_error
    local_rows_scrubbed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime | None] = mapped_column(onupdate=utcnow)


class ErasureOutcome(Base):
    __tablename__ = "erasure_outcomes"
    __table_args__ = classified("b", UniqueConstraint("request_id", "provider", "object", "external_id"))

    id: Mapped[uuid.UUID] = uuid_pk()
    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("erasure_requests.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    object: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))  # pending|deleted|archived|not_found|divergent|failed
    hard_deleted: Mapped[bool | None]
    # archived (soft-deleted) records: when the provider purges them by itself (None: it keeps them until someone
    # deletes them by hand, so an operator must).
    provider_purge_after: Mapped[datetime | None]
    needs_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    source: Mapped[str | None] = mapped_column(String(16))  # local | lookup | search: how it was found
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ErasureHold(Base):
    """A local row under erasure: the mirror guard turns CRM writes for it (and its children) into no-ops."""

    __tablename__ = "erasure_holds"
    __table_args__ = classified("b", UniqueConstraint("request_id", "row_id"),
                                Index("ix_erasure_holds_tenant_row", "tenant_id", "row_id"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("erasure_requests.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID]
    table_name: Mapped[str] = mapped_column(String(64))
    row_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = created_at()


class OAuthState(Base):
    """A pending OAuth authorize: the `state` is stored hashed and used once."""

    __tablename__ = "oauth_states"
    __table_args__ = classified("b")

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[uuid.UUID]
    provider: Mapped[str] = mapped_column(String(64))
    code_verifier: Mapped[str | None] = mapped_column(String(128))
    redirect_uri: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at()
    used_at: Mapped[datetime | None]


# ---- (d) audit / security: append-only --------------------------------------------------------------


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = classified("d", Index("ix_audit_tenant_at", "tenant_id", "at"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    tenant_id: Mapped[uuid.UUID | None]
    actor_type: Mapped[str] = mapped_column(String(32))  # tool | platform_operator | system | agent
    actor_id: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))  # credential.decrypt, erasure.crm_delete, …
    purpose: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(100))
    conversation_id: Mapped[str | None] = mapped_column(String(100))
    subject_hash: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


CONTENT_TABLES: tuple[type[ContentRow], ...] = (
    Conversation, Message, Customer, Lead, QualificationState, Appointment, Case,
)

# The tenant mirror's working set: a tenant's unsynced rows, oldest first. Partial, so it stays as small as the
# backlog however many synced rows wait out their window (the mirror, the sweep and escalation all ask for it).
for _model in CONTENT_TABLES:
    Index(f"ix_{_model.__tablename__}_unsynced", _model.tenant_id, _model.created_at,  # type: ignore[attr-defined]
          postgresql_where=text("sync_state <> 'synced'"), sqlite_where=text("sync_state <> 'synced'"))

# The purge's own index (migration 0006): only rows the guard can let go, in the order the sweep takes them.
# Partial, so a large backlog of pending rows costs the sweep nothing; its predicate is the literal part of
# `store.content.purgeable` (the planner uses it only for a query that states the same literals).
PURGEABLE_WHERE = "sync_state = 'synced' AND crm_external_id IS NOT NULL AND synced_at IS NOT NULL"
for _model in CONTENT_TABLES:
    Index(f"ix_{_model.__tablename__}_purgeable", _model.__table__.c.purge_after,  # type: ignore[attr-defined]
          postgresql_where=text(PURGEABLE_WHERE), sqlite_where=text(PURGEABLE_WHERE))
