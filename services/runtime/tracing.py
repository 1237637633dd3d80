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
from typing import Any

TRACEPARENT = "traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _random_hex(bits: int) -> str:
    """A random id of `bits` bits as lowercase hex, never all zeros (W3C trace context). Ids
    need to be unique, not secret: Python's own generator, as OpenTelemetry's SDK uses, not the
    system's, which costs a system call per record."""
    return f"{random.getrandbits(bits) or 1:0{bits // 4}x}"


class Handling:
    """The record a worker is handling now. Its trace id, span id and key hash are worked out
    when first asked for (an output sent, a line logged): most records make neither, and making
    them for every record had been a tenth of the consume path's own time."""

    __slots__ = ("_key", "_message", "_span", "_trace", "event_id", "offset", "partition", "topic")

    def __init__(self, message: Any) -> None:
        self.topic: str = message.topic
        self.partition: int = message.partition
        self.offset: int = message.offset
        self.event_id: str | None = None
        self._message = message
        self._trace: str | None = None
        self._span: str | None = None
        self._key: tuple[str | None] | None = None

    @property
    def trace_id(self) -> str:
        if self._trace is None:
            self._trace = trace_id_of(self._message.headers) or _random_hex(128)
        return self._trace

    @property
    def span_id(self) -> str:
        """This handling's own span: outputs name it as their parent."""
        if self._span is None:
            self._span = _random_hex(64)
        return self._span

    @property
    def key_hash(self) -> str | None:
        if self._key is None:
            key = self._message.key
            self._key = (hashlib.sha256(key).hexdigest()[:12] if key else None,)
        return self._key[0]

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
    current = Handling(message)
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
