"""Following one event across services: W3C trace context in Kafka headers, and the event being
handled in every log line.

The consuming loop (`app.consume`) opens a `Handling` context for each record: it keeps the
record's trace (from its `traceparent` header, or a new one when it has none) and where the record
came from. Outputs sent meanwhile carry a `traceparent` of the same trace, so a stage change, the
ledger entry and the notification it led to share one trace id. Log records carry the context as
fields (`logs.JsonFormatter`): topic, partition, offset, event id, trace id, and the record key as
a short hash, never the customer id itself."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

TRACEPARENT = "traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _random_hex(bits: int) -> str:
    """A random id of `bits` bits as lowercase hex, never all zeros (W3C trace context). Ids
    need to be unique, not secret: Python's own generator, as OpenTelemetry's SDK uses, not the
    system's, which costs a system call per record."""
    return f"{random.getrandbits(bits) or 1:0{bits // 4}x}"


@dataclass
class Handling:
    """The record a worker is handling now."""

    topic: str
    partition: int
    offset: int
    trace_id: str
    key_hash: str | None
    event_id: str | None = None
    # This handling's own span: outputs name it as their parent.
    span_id: str = field(default_factory=lambda: _random_hex(64))

    def traceparent(self) -> bytes:
        return f"00-{self.trace_id}-{self.span_id}-01".encode()

    def log_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "trace_id": self.trace_id,
        }
        if self.key_hash:
            fields["key_hash"] = self.key_hash
        if self.event_id:
            fields["event_id"] = self.event_id
        return fields


CURRENT: ContextVar[Handling | None] = ContextVar("rapport_handling", default=None)


def trace_id_of(headers: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None) -> str | None:
    """The trace id of a valid `traceparent` header, if there is one."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    for name, value in items:
        if name.lower() == TRACEPARENT and value:
            found = _TRACEPARENT.match(bytes(value).decode("ascii", "replace").strip().lower())
            if found and found.group(1) != "0" * 32:
                return found.group(1)
    return None


@contextmanager
def handling(message: Any) -> Iterator[Handling]:
    """The context of one consumed record, for the outputs and logs made while it is handled."""
    current = Handling(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        trace_id=trace_id_of(message.headers) or _random_hex(128),
        key_hash=hashlib.sha256(message.key).hexdigest()[:12] if message.key else None,
    )
    token = CURRENT.set(current)
    try:
        yield current
    finally:
        CURRENT.reset(token)


def current_traceparent() -> str | None:
    """The `traceparent` an output of the record being handled carries (None outside one):
    for outputs sent later by someone else, such as the rewards outbox relay."""
    current = CURRENT.get()
    return None if current is None else current.traceparent().decode()


def output_headers() -> list[tuple[str, bytes]]:
    """Headers for an output of the record being handled (none outside a handling)."""
    current = CURRENT.get()
    return [] if current is None else [(TRACEPARENT, current.traceparent())]
