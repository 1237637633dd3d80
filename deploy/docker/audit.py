"""Audit Rapport's locked dependencies (and everything installed in the environment running it)
for known vulnerabilities: `.venv/bin/python deploy/docker/audit.py`; `./run test` runs it.

pip-audit cannot run here: it asks PyPI's JSON API or api.osv.dev, and only the package indexes
are reachable. The advisories come from a registry instead: the OSV snapshot of the PyPI
ecosystem that the wheel `cordon-scanner` carries as data (built from OSV's `PyPI/all.zip`). The
wheel is pinned by version and sha256 and opened as a zip; none of its code is imported or run.
The snapshot keeps the high and critical advisories, unrated ones and malware; moderate and low
ones are left out. Bump ADVISORIES when a newer release is out (docs/reliability.md).

Exit status: 0 nothing known, 1 an advisory applies (each is printed), 2 the data is unusable."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ADVISORIES = ("cordon-scanner", "0.6.0")
WHEEL_SHA256 = "03cac1cbc5adc0a2c149b3edce88665c405fe9139f99aa9f5c4602dfc624a475"
DATA = "cordon_scanner/intel/data/"
LOCK = Path(__file__).with_name("requirements.lock")


def fetch(cache: Path) -> Path:
    """The pinned wheel, downloaded once from the package index and checked."""
    name, version = ADVISORIES
    wheel = cache / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    if not wheel.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                f"{name}=={version}",
                "-d",
                str(cache),
            ],
            check=True,
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}")
    return wheel


def advisories(wheel: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Advisory ranges by canonical package name, and the snapshot's description."""
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(DATA + "advisories-pypi.json.gz")
        meta = orjson.loads(archive.read(DATA + "advisories-meta.json"))
        listed = orjson.loads(archive.read(DATA + "advisories-digests.json"))
    if listed.get("advisories-pypi.json.gz") != hashlib.sha256(raw).hexdigest():
        raise SystemExit("the advisory data does not match the wheel's own digest")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for record in orjson.loads(gzip.decompress(raw)):
        by_name.setdefault(canonicalize_name(record["name"]), []).append(record)
    return by_name, meta


def _version(text: str | None) -> Version | None:
    try:
        return None if text is None else Version(text)
    except InvalidVersion:
        return None


def affects(record: dict[str, Any], version: Version) -> bool:
    """OSV's ECOSYSTEM ranges for PyPI: explicit versions, or introduced..fixed/last_affected
    compared in PEP 440 order; a range with no end covers every later version."""
    if record.get("versions"):
        return any(_version(v) == version for v in record["versions"])
    if not {"introduced", "fixed", "last_affected"} & record.keys():
        return False
    introduced = _version(record.get("introduced") or "0")
    if introduced is None or version < introduced:
        return False
    if "fixed" in record:
        fixed = _version(record["fixed"])
        return fixed is not None and version < fixed
    if "last_affected" in record:
        last = _version(record["last_affected"])
        return last is not None and version <= last
    return True


def pinned(lock: Path, here: bool = True) -> dict[str, str]:
    """The lock file's exact pins and, with `here`, every distribution installed here (the dev
    tools too)."""
    pins: dict[str, str] = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in (metadata.distributions() if here else [])
    }
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "rapport" / "advisories"
    )
    parser.add_argument(
        "--lock-only",
        action="store_true",
        help="check the lock's pins alone, not this environment (e.g. an image's list)",
    )
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    by_name, meta = advisories(fetch(args.cache))
    pins = pinned(args.lock, here=not args.lock_only)
    # One advisory can come as several ranges; the fixed version is named by one of them.
    found: dict[tuple[str, str, str], tuple[str, str]] = {}
    for name, version in pins.items():
        parsed = _version(version)
        for record in by_name.get(name, []):
            if parsed is not None and affects(record, parsed):
                key = (name, version, record["id"])
                fixed = record.get("fixed") or found.get(key, ("", ""))[1]
                found[key] = (record.get("severity") or "unrated", fixed)
    print(
        f"{len(pins)} distributions checked against {sum(map(len, by_name.values()))} advisory "
        f"ranges (OSV PyPI snapshot of {meta.get('built_at')}, {ADVISORIES[0]} {ADVISORIES[1]})"
    )
    for (name, version, advisory), (severity, fixed) in sorted(found.items()):
        print(f"  {name}=={version}: {advisory} [{severity}], fixed in {fixed or 'no release'}")
    print(f"{len(found)} known vulnerabilities" if found else "no known vulnerability")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
