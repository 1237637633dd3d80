"""Workaround for faust-streaming 0.15.3's table manager, which waits a fixed second at every
worker start before it registers the tables' changelogs (`faust/tables/manager.py`,
`TableManager.on_start`: `await self.sleep(1.0)`, no setting reaches it; inherited from
robinhood/faust, no upstream issue). Remove this when a release drops the wait or makes it a
setting.

What the second is for. A table made just after the worker started (in an agent's body, say)
would still be registered; one made later raises ("Too late to add tables at this point").
Rapport's workers make every table in `build_app`, before faust starts, so the tables are all
there when the manager starts, and a table made too late still raises.

Where it bit. The conductor subscribes the consumer only once the tables are registered, so
every worker, with tables or without, joined its group a second later than it could: a fifth of
a lifecycle worker's restart with its RocksDB store kept (5.0 s at 30,000 customers,
docs/benchmarks.md, 2026-12-07, 21-24 h), against issue 23's 5 s.
"""

from __future__ import annotations

from typing import Any

from faust.tables.manager import TableManager


async def _on_start(self: Any) -> None:
    if not self.should_stop:
        await self._update_channels()
        await self.recovery.start()


def install() -> None:
    """Patch faust's table manager to start without the wait."""
    TableManager.on_start = _on_start  # type: ignore[method-assign]
