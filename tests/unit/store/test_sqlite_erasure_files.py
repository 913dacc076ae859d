"""Right after an erasure's local scrub, the erased strings are in neither the SQLite database file nor its WAL:
`secure_delete` zeroes the deleted content, and the scrub checkpoints (TRUNCATE) the WAL once it committed."""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.erasure import ErasureActivities
from activities.erasure_types import ErasureStepInput
from settings import Settings
from store.erasure import Subject
from store.migrate import upgrade_to_head
from store.session import create_engine, session_factory
from tests.integration.forget_support import EMAIL, NAME, PHONE, SandboxDrivers, create_request, seed_subject

# What the subject's rows hold in clear: the name, the email (stored upper-cased) and the transcript text.
ERASED = [NAME.encode(), EMAIL.upper().encode(), f"My number is {PHONE}".encode()]
KEPT = [b"omar.keep@example.com", b"keep me"]


def _files(db: Path) -> bytes:
    """Every byte SQLite keeps for the database: the file, its WAL and shared-memory index."""
    return b"".join(path.read_bytes() for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
                    if path.exists())


async def test_erased_strings_leave_the_sqlite_files_at_once(tmp_path: Path, settings: Settings) -> None:
    db = tmp_path / "crm-sor.db"
    url = f"sqlite+aiosqlite:///{db}"
    upgrade_to_head(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        seeded = await seed_subject(sessions, SandboxDrivers())
        before = _files(db)
        assert all(value in before for value in ERASED + KEPT)  # the check below can fail

        forget = await create_request(sessions, settings, seeded.tenant_id, Subject(phone=PHONE, email=EMAIL))
        acts = ErasureActivities(sessions, SandboxDrivers(), settings.subject_hash_key.get_secret_value())
        scrubbed = await ActivityEnvironment().run(
            acts.erasure_scrub, ErasureStepInput(request_id=forget.request_id, tenant_id=seeded.tenant_id))
        assert scrubbed.rows_deleted == sum(len(ids) for ids in seeded.rows.values())

        after = _files(db)  # the engine is still open, as in a running `crm-sor dev`
        for value in ERASED:
            assert value not in after, f"{value!r} is still on disk"
        assert all(value in after for value in KEPT)  # only the subject was erased
        assert db.with_name(db.name + "-wal").stat().st_size == 0  # checkpointed and truncated
    finally:
        await engine.dispose()
