"""Workers that do nothing with what they read, for `rapport bench`: how fast faust itself, and
Rapport's consume path on top of it, can drain the input, between the bare consumer and the
lifecycle worker. They run under the lifecycle worker's consumer group and metrics port, so the
bench waits for them as for the lifecycle worker.

    python -m services.bench.probe faust     # a faust agent taking batches and acking them
    python -m services.bench.probe runtime   # services.runtime.app.consume, decoding each
                                             # record, with a handler that does nothing
"""

from __future__ import annotations

import sys
from typing import Any

import faust

from schemas.topics import ACCOUNT_EVENTS
from services.runtime.app import BATCH_SIZE, consume, create_app, raw_topic
from services.runtime.codec import decode_account_event
from services.runtime.metrics import EVENTS_CONSUMED
from services.runtime.settings import RuntimeSettings, get_settings
from services.runtime.worker import run_worker

# Under the lifecycle worker's group: `Bench.wait_committed` and its ports find it so.
SERVICE = "lifecycle"
KINDS = ("faust", "runtime")


def build_app(kind: str, settings: RuntimeSettings) -> faust.App:
    app = create_app(SERVICE, settings)
    if kind == "faust":
        counted = EVENTS_CONSUMED.labels(SERVICE, ACCOUNT_EVENTS.name, "any")
        # The offsets to commit are those reported handled (services/runtime/faust_fixes.py):
        # once per partition and batch, here.
        handled = app.rapport_handled  # type: ignore[attr-defined]

        @app.agent(raw_topic(app, ACCOUNT_EVENTS), name="probe")
        async def take(stream: Any) -> None:
            async for events in stream.take_events(BATCH_SIZE, within=0.05):
                last = {event.message.tp: event.message.offset for event in events}
                for tp, offset in last.items():
                    handled.handled(tp, offset)
                counted.inc(len(events))

    elif kind == "runtime":

        async def nothing(items: list[tuple[Any, Any]]) -> list[Exception | None]:
            return [None] * len(items)

        consume(
            app,
            SERVICE,
            ACCOUNT_EVENTS,
            decode_account_event,
            handle_batch=nothing,
            label=lambda e: str(e.event_type),
        )
    else:
        raise ValueError(f"unknown probe {kind!r}; choose one of {', '.join(KINDS)}")
    return app


def main() -> None:
    settings = get_settings()
    run_worker(SERVICE, settings, build_app(sys.argv[1], settings))


if __name__ == "__main__":
    main()
