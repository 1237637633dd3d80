"""The lifecycle worker's read model after a rebalance: every customer it now holds is queued
for it again, behind the customers that change from then on, and written a batch at a time, so
that a worker taking over many customers keeps taking events meanwhile."""

from __future__ import annotations

import pytest

from services.lifecycle import agents, read_model
from services.lifecycle.agents import Lifecycle
from services.lifecycle.config import LifecycleSettings
from services.runtime.app import create_app
from services.runtime.settings import RuntimeSettings


async def test_after_a_rebalance_the_read_model_catches_up_a_batch_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app("lifecycle", RuntimeSettings(instance="read-model-test"))
    lifecycle = Lifecycle(app, LifecycleSettings(), "sqlite://")
    held = [f"C{n:05d}" for n in range(5000)]
    written: list[list[str]] = []
    monkeypatch.setattr(agents, "_READ_MODEL_BATCH", 2000)
    monkeypatch.setattr(lifecycle.service, "customer_ids", lambda: iter(held))
    # States stored as their customer's id, read back as it.
    stored = {customer_id: customer_id.encode() for customer_id in [*held, "NEW-1"]}
    monkeypatch.setattr(lifecycle.service, "store", stored)
    monkeypatch.setattr(agents, "decode_state", bytes.decode)
    monkeypatch.setattr(read_model, "profile_row", lambda customer_id: customer_id)
    monkeypatch.setattr(read_model, "write", lambda url, rows: written.append(list(rows)))

    lifecycle.resync()
    lifecycle.service.changed.update({"NEW-1", "C00001"})
    await lifecycle._write_changed()
    # The customers that changed first, then one batch of those the rebalance queued.
    assert sorted(written[0]) == ["C00001", "NEW-1"]
    assert len(written) == 2 and len(written[1]) == 2000
    assert len(lifecycle.read_model_backlog) == 5000 - 1 - 2000

    while lifecycle.read_model_backlog:
        await lifecycle._write_changed()
    everyone = {c for rows in written for c in rows}
    assert everyone == {*held, "NEW-1"}
    assert sum(len(rows) for rows in written) == 5001  # each written once
