"""The lifecycle worker's read model after a rebalance: every customer it now holds is queued
for it again, behind the customers that change from then on, and written a batch at a time, so
that a worker taking over many customers keeps taking events meanwhile."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.lifecycle import agents, read_model
from services.lifecycle.agents import Lifecycle
from services.lifecycle.config import LifecycleSettings
from services.runtime.app import create_app
from services.runtime.settings import RuntimeSettings


def _lifecycle(
    monkeypatch: pytest.MonkeyPatch, held: list[str]
) -> tuple[Lifecycle, list[list[str]]]:
    app = create_app("lifecycle", RuntimeSettings(instance="read-model-test"))
    lifecycle = Lifecycle(app, LifecycleSettings(), "sqlite://")
    written: list[list[str]] = []
    monkeypatch.setattr(agents, "_READ_MODEL_BATCH", 2000)
    # States stored as their customer's id, read back as it.
    stored = {customer_id: customer_id.encode() for customer_id in [*held, "NEW-1"]}
    monkeypatch.setattr(lifecycle.service, "store", stored)
    monkeypatch.setattr(agents, "decode_state", bytes.decode)
    monkeypatch.setattr(read_model, "profile_row", lambda customer_id: customer_id)
    monkeypatch.setattr(read_model, "write", lambda url, rows: written.append(list(rows)))
    # The customers a rebalance queues: those held, as the store lists them.
    monkeypatch.setattr(lifecycle.service, "customer_ids", lambda live=False: iter(held))
    return lifecycle, written


async def _catch_up(lifecycle: Lifecycle, written: list[list[str]]) -> None:
    while True:
        before = len(written)
        await lifecycle._write_changed()
        if len(written) == before:
            return


async def test_after_a_rebalance_the_read_model_catches_up_a_batch_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = [f"C{n:05d}" for n in range(5000)]
    lifecycle, written = _lifecycle(monkeypatch, held)

    lifecycle.resync()
    lifecycle.service.changed.update({"NEW-1", "C00001"})
    await lifecycle._write_changed()
    # The customers that changed first, then one batch of those the rebalance queued.
    assert sorted(written[0]) == ["C00001", "NEW-1"]
    assert len(written) == 2 and written[1] == held[:2000]

    await _catch_up(lifecycle, written)
    assert [len(rows) for rows in written] == [2, 2000, 2000, 1000]
    assert {c for rows in written for c in rows} == {*held, "NEW-1"}


async def test_a_batch_the_database_refused_is_written_next_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = [f"C{n:05d}" for n in range(3000)]
    lifecycle, written = _lifecycle(monkeypatch, held)
    refused = [True]

    def write(url: str, rows: list[str]) -> None:
        if refused.pop() if refused else False:
            raise OSError("database down")
        written.append(list(rows))

    monkeypatch.setattr(read_model, "write", write)
    lifecycle.resync()
    await lifecycle._write_changed()
    assert written == []
    await _catch_up(lifecycle, written)
    assert written == [held[:2000], held[2000:]]


async def test_a_rebalance_under_a_live_backlog_ends_it_quietly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = [f"C{n:05d}" for n in range(3000)]
    lifecycle, written = _lifecycle(monkeypatch, held)

    def store_changed_under_it(live: bool = False) -> Iterator[str]:
        yield from held[:2000]
        raise RuntimeError("dictionary changed size during iteration")

    monkeypatch.setattr(lifecycle.service, "customer_ids", store_changed_under_it)
    lifecycle.resync()
    await _catch_up(lifecycle, written)
    assert written == [held[:2000]]


def test_a_rocksdb_store_is_read_as_the_backlog_is_written_a_memory_store_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lifecycle, _ = _lifecycle(monkeypatch, ["C1", "C2"])
    asked: list[bool] = []
    monkeypatch.setattr(
        lifecycle.service, "customer_ids", lambda live=False: asked.append(live) or iter(())
    )
    lifecycle.resync()
    lifecycle.store_kind = "rocksdb"
    lifecycle.resync()
    assert asked == [False, True]
