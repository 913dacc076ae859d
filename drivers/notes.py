"""Transcripts for drivers whose notes are ordinary records with a `body` (custom webhook, generic REST)."""

from __future__ import annotations

from drivers.base import BaseDriver, CreateResult, CrmObject, appended


async def append_to_note_record(driver: BaseDriver, customer_external_id: str, note_external_id: str | None,
                                text: str, *, batch_key: str) -> CreateResult:
    """`append_note` over the driver's record verbs: the note is created under `batch_key` (idempotent like any
    create) with `body` and `customer_id`, and later batches are read, marked with `appended`, and written back."""
    if note_external_id is None:
        fields = {"body": appended(None, text, batch_key), "customer_id": customer_external_id}
        return await driver.create_record(CrmObject.NOTE, fields, batch_key)
    note = await driver.get_record(CrmObject.NOTE, note_external_id)
    body = appended(note.fields.get("body"), text, batch_key)
    if body is not None:
        await driver.update_record(CrmObject.NOTE, note_external_id, {"body": body})
    return CreateResult(external_id=note_external_id, record_url=note.url, created=False)
