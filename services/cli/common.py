"""What the `rapport` commands share: the console they print on and the local broker."""

from __future__ import annotations

from rich.console import Console

from services.runtime.broker import LocalBroker
from services.runtime.settings import RuntimeSettings

console = Console()


def local_broker(settings: RuntimeSettings) -> LocalBroker:
    return LocalBroker(settings.home, port=settings.broker_port, heap=settings.broker_heap)


def external_cluster(settings: RuntimeSettings) -> bool:
    return settings.bootstrap_list != [f"127.0.0.1:{settings.broker_port}"]


def redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
