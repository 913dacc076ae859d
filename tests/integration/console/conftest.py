"""Fixtures of the console's browser tests: Chromium (Debian's, through Playwright) and the served console."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from playwright.async_api import Browser, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from settings import Settings
from tests.support.console import Console, chromium_path, served_console


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def console(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
                  temporal_client: Client, task_queue: str) -> AsyncIterator[Console]:
    async with served_console(settings, engine, sessions, temporal_client, task_queue) as served:
        yield served
