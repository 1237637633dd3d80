"""`rapport up` and `rapport down`: the four workers and APIs as background processes on one
machine, with their pids and logs under RAPPORT_HOME/run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.runtime.allocator import with_jemalloc
from services.runtime.auth import Authenticator, AuthSettings, write_development_keys
from services.runtime.osutil import pid_alive, port_open, read_pid
from services.runtime.settings import SERVICE_NAMES, RuntimeSettings
from services.workbench.config import WorkbenchSettings
from services.workbench.session import SessionCookie


@dataclass(frozen=True)
class Process:
    """One supervised process: `rapport worker lifecycle`, `rapport api notify`..."""

    role: str  # worker | api
    service: str

    @property
    def name(self) -> str:
        """File-name-safe identity."""
        return f"{self.role}-{self.service}"

    def port(self, settings: RuntimeSettings) -> int:
        """Where it answers HTTP once it is up."""
        if self.role == "worker":
            return settings.metrics_port(self.service)
        return settings.api_port(self.service)


def all_processes() -> list[Process]:
    """Every worker and API of the stack."""
    return [
        *(Process(role, s) for s in SERVICE_NAMES for role in ("worker", "api")),
        Process("api", "workbench"),
    ]


def run_dir(settings: RuntimeSettings) -> Path:
    """Where pid files and logs go."""
    path = settings.home / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def development_keys_file(settings: RuntimeSettings) -> Path:
    """The API keys `rapport up` makes when no authentication is configured."""
    return run_dir(settings) / "api-keys.json"


def workbench_key_file(settings: RuntimeSettings) -> Path:
    """The workbench's session key `rapport up` makes when none is configured."""
    return run_dir(settings) / "workbench-session.key"


def _environment(settings: RuntimeSettings) -> dict[str, str]:
    """The children's environment. Without any authentication set up, the APIs take a fresh
    random key per role from an owner-only file (development only: docs/security.md), and
    jemalloc preloaded where the host has it (services/runtime/allocator.py)."""
    env = with_jemalloc(os.environ)
    if not Authenticator(AuthSettings()).configured:
        keys = development_keys_file(settings)
        write_development_keys(keys)
        env["RAPPORT_AUTH_API_KEYS_FILE"] = str(keys)
        env.setdefault("RAPPORT_WORKBENCH_SIGN_IN_LINKS", "true")
    # This machine's stack answers on plain http://127.0.0.1.
    env.setdefault("RAPPORT_WORKBENCH_SECURE_COOKIE", "false")
    workbench = WorkbenchSettings()
    if workbench.session_key is None and workbench.session_key_file is None:
        # The workbench's sessions outlive its restarts (an owner-only file, like the keys).
        session_key = workbench_key_file(settings)
        if not session_key.exists():
            session_key.touch(mode=0o600)
            session_key.write_bytes(SessionCookie.new_key())
        env["RAPPORT_WORKBENCH_SESSION_KEY_FILE"] = str(session_key)
    return env


def start(settings: RuntimeSettings, processes: list[Process], timeout: float = 60.0) -> None:
    """Start what is not running yet and wait until each answers on its port."""
    directory = run_dir(settings)
    env = _environment(settings)
    for proc in processes:
        pid_file = directory / f"{proc.name}.pid"
        if read_pid(pid_file) is not None:
            continue
        if port_open(settings.metrics_host, proc.port(settings)):
            raise RuntimeError(
                f"port {proc.port(settings)} for {proc.name} is taken by another process"
            )
        with (directory / f"{proc.name}.log").open("ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "services.cli", proc.role, proc.service],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        pid_file.write_text(str(child.pid))
    deadline = time.monotonic() + timeout
    for proc in processes:
        url = f"http://{settings.metrics_host}:{proc.port(settings)}/" + (
            "metrics" if proc.role == "worker" else "healthz"
        )
        while True:
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if read_pid(directory / f"{proc.name}.pid") is None:
                raise RuntimeError(f"{proc.name} exited; see {directory / (proc.name + '.log')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} did not answer at {url} within {timeout:.0f} s")
            time.sleep(0.2)


def stop(settings: RuntimeSettings, timeout: float = 30.0) -> list[str]:
    """SIGTERM every supervised process (SIGKILL after `timeout`); returns the names stopped."""
    directory = run_dir(settings)
    stopped = []
    pids = {}
    for proc in all_processes():
        pid = read_pid(directory / f"{proc.name}.pid")
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
            pids[proc.name] = pid
    deadline = time.monotonic() + timeout
    for name, pid in pids.items():
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        (directory / f"{name}.pid").unlink(missing_ok=True)
        stopped.append(name)
    return stopped
