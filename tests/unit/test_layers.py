"""The shared runtime sits under the services and the `rapport` command above them: the
runtime imports neither (it loads a service's agents or API by name, at run time), and no
service imports another."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
ABOVE_THE_RUNTIME = ("lifecycle", "referral", "rewards", "notify", "simulator", "bench", "cli")
PEERS = ("lifecycle", "referral", "rewards", "notify")


def imported(package: str) -> dict[str, set[str]]:
    """Each module of `package` and the `services.*` packages it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((SERVICES / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(SERVICES))] = {
            n.split(".")[1] for n in names if n.startswith("services.") and n.count(".") >= 1
        }
    return found


def test_the_runtime_imports_no_service_and_not_the_command() -> None:
    wrong = {
        module: sorted(packages & set(ABOVE_THE_RUNTIME))
        for module, packages in imported("runtime").items()
        if packages & set(ABOVE_THE_RUNTIME)
    }
    assert wrong == {}


def test_no_service_imports_another() -> None:
    wrong = {
        module: sorted(packages & (set(PEERS) - {service}))
        for service in PEERS
        for module, packages in imported(service).items()
        if packages & (set(PEERS) - {service})
    }
    assert wrong == {}
