"""Dead-letter routing: a record no consumer can accept goes to `<topic>.dlq`, unchanged, with
the reason and its source position in headers, so nothing is dropped and it can be replayed."""

from __future__ import annotations

import logging
from typing import Any

import faust

from schemas.topics import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SERVICE,
    DLQ_HEADER_SOURCE_OFFSET,
    DLQ_HEADER_SOURCE_PARTITION,
    DLQ_HEADER_SOURCE_TOPIC,
    DLQ_SUFFIX,
)
from services.runtime import tracing
from services.runtime.codec import Rejection
from services.runtime.metrics import EVENTS_DEAD_LETTERED

log = logging.getLogger(__name__)

# Headers are for people and tools reading the DLQ; a runaway message must not bloat them.
MAX_ERROR_CHARS = 1000


def dead_letter_headers(
    rejection: Rejection, *, service: str, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """Headers of a dead-letter record."""
    return [
        (DLQ_HEADER_ERROR, rejection.message[:MAX_ERROR_CHARS].encode("utf-8")),
        (DLQ_HEADER_REASON, rejection.reason.value.encode()),
        (DLQ_HEADER_SOURCE_TOPIC, topic.encode()),
        (DLQ_HEADER_SOURCE_PARTITION, str(partition).encode()),
        (DLQ_HEADER_SOURCE_OFFSET, str(offset).encode()),
        (DLQ_HEADER_SERVICE, service.encode()),
    ]


class DeadLetters:
    """Sends rejected records of any input topic to its dead-letter companion."""

    def __init__(self, app: faust.App, service: str) -> None:
        self._app = app
        self._service = service
        self._topics: dict[str, Any] = {}

    def _topic(self, source: str) -> Any:
        name = source + DLQ_SUFFIX
        if name not in self._topics:
            self._topics[name] = self._app.topic(
                name, key_serializer="raw", value_serializer="raw", internal=False
            )
        return self._topics[name]

    async def send(self, message: Any, rejection: Rejection) -> None:
        """Publish the original record with the reason; returns once the broker has it."""
        headers = (
            dead_letter_headers(
                rejection,
                service=self._service,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
            )
            + tracing.output_headers()
        )
        pending = await self._topic(message.topic).send(
            key=message.key, value=message.value, headers=headers
        )
        # Waiting for the broker's ack before the offset can be committed is what makes the
        # dead letter at-least-once; they are rare, so the round trip costs nothing overall.
        await pending
        EVENTS_DEAD_LETTERED.labels(self._service, message.topic, rejection.reason.value).inc()
        log.warning(
            "dead-lettered %s[%s]@%s: %s (%s)",
            message.topic,
            message.partition,
            message.offset,
            rejection.reason.value,
            rejection.message[:200],
        )
