"""An erasure's scrub drops the subject's phone-index entries: by the hash of their number and by every CRM id the
request found for them; other callers' entries stay."""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.erasure import ErasureActivities
from activities.erasure_types import ErasureStepInput
from store import erasure_requests as requests
from store.erasure import Subject, subject_hash
from store.models import ErasureRequest
from store.phone_index import PhoneIndex, PhoneIndexEntry
from tests.support.tenants import create_tenant

KEY = "test-subject-hash-key"


class NoCrm:
    def open(self, tenant_id: uuid.UUID, actor: Any) -> AbstractAsyncContextManager[Any]:
        raise LookupError("the scrub needs no CRM")


async def test_the_scrub_forgets_the_subjects_numbers(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await create_tenant(sessions)
    index = PhoneIndex(sessions, KEY)
    await index.remember(tenant, "hubspot", "customer", "+971501234567", "1001")  # the subject's number
    await index.remember(tenant, "hubspot", "customer", "+966551234567", "1002")  # their other number, found in the CRM
    await index.remember(tenant, "hubspot", "customer", "+14155552671", "1003")  # someone else
    subject = Subject(phone="+971501234567")
    request_id = uuid.uuid4()
    async with sessions.begin() as session:
        session.add(ErasureRequest(
            id=request_id, tenant_id=tenant, subject_hash=subject_hash(KEY.encode(), tenant, subject),
            requested_by="operator:test", status=requests.RUNNING, local_rows_scrubbed=0,
            sealed_identifiers=requests.seal_subject(requests.sealing_key(KEY), tenant, request_id, subject)))
        await session.flush()
        await requests.add_targets(session, request_id, "hubspot", [("customer", "1002", "lookup")])
    acts = ErasureActivities(sessions, NoCrm(), KEY)  # type: ignore[arg-type]
    result = await ActivityEnvironment().run(acts.erasure_scrub, ErasureStepInput(request_id=request_id,
                                                                                   tenant_id=tenant))
    assert result.rows_deleted == 2
    async with sessions() as session:
        left = list(await session.scalars(select(PhoneIndexEntry.crm_external_id).where(
            PhoneIndexEntry.tenant_id == tenant)))
    assert left == ["1003"]
