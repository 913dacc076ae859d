"""Alembic environment: runs migrations through the same async engine the app uses."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import store.models  # noqa: F401
from store.base import Base
from store.session import create_engine

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


def _run_in_fresh_loop() -> None:
    # Alembic is synchronous; when called from inside a running loop (tests), use a worker thread.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_run_async())
        return
    import threading

    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(_run_async())
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


_run_in_fresh_loop()
