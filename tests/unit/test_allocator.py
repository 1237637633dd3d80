"""The workers' allocator: jemalloc preloaded where the host has it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import supervisor
from services.runtime import allocator
from services.runtime.allocator import with_jemalloc
from services.runtime.settings import RuntimeSettings


def _allocator_of(env: dict[str, str]) -> str:
    """What a new Python process started with `env` runs on."""
    return subprocess.run(
        [sys.executable, "-c", "from services.runtime.allocator import in_use; print(in_use())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_a_process_started_with_the_workers_environment_runs_on_jemalloc() -> None:
    """This host has Debian's libjemalloc2 (`./run setup` installs it): a process started as
    the workers are runs on it, and one told not to stays on glibc's malloc."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.OPT_OUT)}
    assert allocator.jemalloc_library() is not None, "libjemalloc2 is not installed"
    assert _allocator_of(with_jemalloc(env)) == "jemalloc"
    assert _allocator_of(with_jemalloc({**env, allocator.OPT_OUT: "glibc"})) == "glibc malloc"
    assert _allocator_of(env) == "glibc malloc"


def test_the_preload_is_added_once_and_only_where_jemalloc_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(allocator, "jemalloc_library", lambda: "libjemalloc.so.2")
    assert with_jemalloc({})["LD_PRELOAD"] == "libjemalloc.so.2"
    # Another preload is kept, after it.
    assert with_jemalloc({"LD_PRELOAD": "libx.so"})["LD_PRELOAD"] == "libjemalloc.so.2 libx.so"
    preloaded = {"LD_PRELOAD": "/opt/lib/libjemalloc.so.2"}
    assert with_jemalloc(preloaded) == preloaded
    assert "LD_PRELOAD" not in with_jemalloc({allocator.OPT_OUT: "glibc"})
    monkeypatch.setattr(allocator, "jemalloc_library", lambda: None)
    assert with_jemalloc({"A": "1"}) == {"A": "1"}


def test_rapport_up_starts_its_processes_with_jemalloc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(allocator.OPT_OUT, raising=False)
    monkeypatch.setenv("RAPPORT_HOME", str(tmp_path))
    env = supervisor._environment(RuntimeSettings())
    assert "jemalloc" in env["LD_PRELOAD"]
