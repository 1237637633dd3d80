"""A worker keeps its tables' local stores only after a clean stop (services/runtime/worker.py)."""

from __future__ import annotations

from pathlib import Path

from services.runtime.worker import keep_local_state


def stores(tmp_path: Path) -> tuple[Path, Path]:
    datadir = tmp_path / "rapport-lifecycle"
    tabledir = datadir / "v1" / "tables"
    (tabledir / "lifecycle-state-0.db").mkdir(parents=True)
    return datadir, tabledir


def test_stores_are_kept_after_a_clean_stop_and_the_mark_is_taken_away(tmp_path: Path) -> None:
    datadir, tabledir = stores(tmp_path)
    (datadir / "clean-stop").touch()
    marker, kept = keep_local_state(datadir, tabledir)
    assert kept is True
    assert (tabledir / "lifecycle-state-0.db").exists()
    # A crash from here on must not find it.
    assert not marker.exists()
    assert marker == datadir / "clean-stop"


def test_stores_are_removed_when_the_last_stop_was_not_clean(tmp_path: Path) -> None:
    datadir, tabledir = stores(tmp_path)
    marker, kept = keep_local_state(datadir, tabledir)
    assert kept is False
    assert not tabledir.exists()
    assert not marker.exists()


def test_nothing_to_keep_or_remove_on_a_first_start(tmp_path: Path) -> None:
    datadir = tmp_path / "rapport-lifecycle"
    _, kept = keep_local_state(datadir, datadir / "v1" / "tables")
    assert kept is None


def test_a_worker_without_local_stores_keeps_nothing_after_a_clean_stop(tmp_path: Path) -> None:
    datadir = tmp_path / "rapport-lifecycle"
    (datadir / "v1" / "tables").mkdir(parents=True)
    (datadir / "clean-stop").touch()
    marker, kept = keep_local_state(datadir, datadir / "v1" / "tables")
    assert kept is None
    assert not marker.exists()
