"""How Rapport's topics are replicated on each kind of cluster (deploy/kafka/environments.toml):
read by the local broker, by `rapport topics create` and by the Kubernetes generator."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# The repository's file; an installed Rapport (the container image) is told where its copy is.
ENVIRONMENTS_FILE = Path(
    os.environ.get(
        "RAPPORT_KAFKA_ENVIRONMENTS_FILE",
        Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "environments.toml",
    )
)


@dataclass(frozen=True)
class KafkaEnvironment:
    """One kind of cluster: the fewest brokers it has, and how its topics are replicated."""

    name: str
    brokers: int
    replication_factor: int
    min_insync_replicas: int


@cache
def environments() -> dict[str, KafkaEnvironment]:
    raw = tomllib.loads(ENVIRONMENTS_FILE.read_text(encoding="utf-8"))
    found = {name: KafkaEnvironment(name=name, **values) for name, values in raw.items()}
    for env in found.values():
        if not 1 <= env.min_insync_replicas <= env.replication_factor <= env.brokers:
            raise ValueError(
                f"{ENVIRONMENTS_FILE}: [{env.name}] needs 1 <= min_insync_replicas <= "
                "replication_factor <= brokers"
            )
    return found


def environment(name: str) -> KafkaEnvironment:
    """The environment called `name`; a clear error naming the known ones otherwise."""
    known = environments()
    if name not in known:
        raise ValueError(
            f"unknown Kafka environment {name!r}; {ENVIRONMENTS_FILE} has {', '.join(known)}"
        )
    return known[name]


def environment_for(brokers: int) -> KafkaEnvironment:
    """The environment of the most brokers that a cluster of `brokers` has at least."""
    fitting = [env for env in environments().values() if env.brokers <= brokers]
    if not fitting:
        raise ValueError(f"no Kafka environment in {ENVIRONMENTS_FILE} fits {brokers} brokers")
    return max(fitting, key=lambda env: env.brokers)
