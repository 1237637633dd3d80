"""A worker of two agents, one waiting for the other, as notify's derived events wait for the
profile facts of the input (services/notify/agents.py, `ProfileClock`), for
test_stream_backpressure.py. The `derived` agent holds its first batch until the `facts` agent
has taken every record of its topic; nothing else is done with the records.

    python -m tests.integration.waiting_app FACTS_TOPIC FACTS_COUNT DERIVED_TOPIC
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import faust

from services.runtime.app import BATCH_SIZE, create_app
from services.runtime.settings import get_settings
from services.runtime.worker import run_worker

# Its consumer group and metrics port: any service's, under the test's own instance.
SERVICE = "notify"


def build_app(facts_topic: str, facts_count: int, derived_topic: str) -> faust.App:
    app = create_app(SERVICE, get_settings())
    handled = app.rapport_handled  # type: ignore[attr-defined]
    facts_taken = asyncio.Event()
    taken = 0

    def settle(events: list[Any]) -> None:
        for event in events:
            handled.handled(event.message.tp, event.message.offset)

    @app.agent(app.topic(facts_topic, value_serializer="raw"), name="facts")
    async def facts(stream: Any) -> None:
        nonlocal taken
        async for events in stream.take_events(BATCH_SIZE, within=0.05):
            settle(events)
            taken += len(events)
            if taken >= facts_count:
                facts_taken.set()

    @app.agent(app.topic(derived_topic, value_serializer="raw"), name="derived")
    async def derived(stream: Any) -> None:
        async for events in stream.take_events(BATCH_SIZE, within=0.05):
            await facts_taken.wait()
            settle(events)

    return app


def main() -> None:
    facts_topic, facts_count, derived_topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    run_worker(SERVICE, get_settings(), build_app(facts_topic, facts_count, derived_topic))


if __name__ == "__main__":
    main()
