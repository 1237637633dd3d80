"""faust's table manager as patched by services/runtime/faust_startup.py: it registers the
tables' changelogs and starts their recovery at once, not after faust's fixed second (with the
workaround taken out this test waits that second and fails)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.tables.manager import TableManager

from services.runtime.app import create_app
from services.runtime.settings import RuntimeSettings


async def test_the_table_manager_starts_without_a_seconds_wait() -> None:
    create_app("lifecycle", RuntimeSettings(instance="startup-test"))
    steps: list[str] = []

    async def update_channels() -> None:
        steps.append("channels")

    async def start_recovery() -> None:
        steps.append("recovery")

    manager = SimpleNamespace(
        should_stop=False,
        sleep=asyncio.sleep,
        _update_channels=update_channels,
        recovery=SimpleNamespace(start=start_recovery),
    )
    await asyncio.wait_for(TableManager.on_start(manager), timeout=0.5)  # type: ignore[arg-type]
    assert steps == ["channels", "recovery"]


async def test_a_stopping_manager_registers_nothing() -> None:
    create_app("lifecycle", RuntimeSettings(instance="startup-test"))
    manager = SimpleNamespace(should_stop=True, sleep=asyncio.sleep)
    await asyncio.wait_for(TableManager.on_start(manager), timeout=0.5)  # type: ignore[arg-type]
