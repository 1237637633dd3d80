"""Write deploy/docker/requirements.lock: the exact versions of Rapport's runtime dependencies
(pyproject.toml without the dev extra, and everything they need) as installed in this
environment. Run it with the project's Python after changing dependencies and a green test run:
`.venv/bin/python deploy/docker/lock.py`."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

HEADER = (
    "# The service image's exact dependencies (the runtime closure of pyproject.toml, without the\n"
    "# dev extra), from the environment the tests passed in. Regenerate with\n"
    "# deploy/docker/lock.py after changing dependencies.\n"
)


def runtime_closure(root: str = "rapport") -> dict[str, str]:
    """Distribution name -> installed version, for `root`'s non-extra requirements and the
    extras they ask for (`psycopg[binary]`, `pyjwt[crypto]`), recursively."""
    found: dict[str, tuple[str, str]] = {}
    walked: set[tuple[str, str]] = set()

    def needed(requirements: list[str] | None, extras: set[str]) -> list[Requirement]:
        return [
            requirement
            for requirement in map(Requirement, requirements or [])
            if requirement.marker is None
            or any(requirement.marker.evaluate({"extra": e}) for e in {"", *extras})
        ]

    def walk(requirement: Requirement) -> None:
        key = re.sub(r"[-_.]+", "-", requirement.name).lower()
        for extra in {"", *requirement.extras}:
            if (key, extra) in walked:
                continue
            walked.add((key, extra))
            try:
                dist = metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError:
                return  # a requirement of another platform
            found[key] = (dist.metadata["Name"], dist.version)
            for child in needed(dist.requires, {extra} - {""}):
                walk(child)

    for requirement in needed(metadata.distribution(root).requires, set()):
        walk(requirement)
    return dict(found.values())


if __name__ == "__main__":
    pins = sorted(f"{name}=={version}" for name, version in runtime_closure().items())
    path = Path(__file__).with_name("requirements.lock")
    path.write_text(HEADER + "\n".join(pins) + "\n")
    print(f"{path}: {len(pins)} pinned")
