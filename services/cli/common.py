"""What the `rapport` commands share: the console they print on and the local broker."""

from __future__ import annotations

from rich.console import Console

from services.runtime.broker import LocalBroker
from services.runtime.cluster import LocalCluster
from services.runtime.settings import RuntimeSettings

console = Console()


def local_broker(settings: RuntimeSettings) -> LocalBroker:
    return LocalBroker(settings.home, port=settings.broker_port, heap=settings.broker_heap)


def local_cluster(settings: RuntimeSettings, nodes: int | None = None) -> LocalCluster | None:
    """The local cluster of `nodes`, or the one made earlier in this home (None: none was)."""
    nodes = nodes or LocalCluster.nodes_made(settings.home, settings.broker_port)
    if nodes < 2:
        return None
    return LocalCluster(settings.home, settings.broker_port, nodes, settings.broker_heap)


def local_kafka(settings: RuntimeSettings) -> LocalBroker | LocalCluster:
    """What `rapport up` and the demo start: the local cluster if one was made, else the
    single broker."""
    return local_cluster(settings) or local_broker(settings)


def with_local_environment(settings: RuntimeSettings) -> RuntimeSettings:
    """The settings, naming the local broker's or cluster's Kafka environment unless they name
    one or another cluster: its size is known, where counting the brokers a cluster lists
    could miss one fenced for a moment and replicate the topics too little."""
    if settings.kafka_environment or external_cluster(settings):
        return settings
    name = local_kafka(settings).kafka_environment.name
    return settings.model_copy(update={"kafka_environment": name})


def external_cluster(settings: RuntimeSettings, nodes: int | None = None) -> bool:
    """Whether the settings name a cluster this home does not run (then it is left alone);
    `nodes`: of the local cluster about to be made."""
    local = {f"127.0.0.1:{settings.broker_port}"}
    if cluster := local_cluster(settings, nodes):
        local |= {node.bootstrap for node in cluster.nodes}
    return not set(settings.bootstrap_list) <= local


def redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
