"""The worker's consumer as patched by services/runtime/faust_fetch.py: a fetch waits at most
`FETCH_MAX_WAIT_MS` at the broker, not faust's fixed 1.5 s (with the workaround taken out this
test finds 1,500)."""

from __future__ import annotations

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from services.runtime import faust_fetch
from services.runtime.app import create_app
from services.runtime.settings import RuntimeSettings


async def test_a_workers_fetch_waits_at_most_a_tenth_of_a_second() -> None:
    app = create_app("notify", RuntimeSettings(instance="fetch-test"))
    thread = AIOKafkaConsumerThread(app.consumer)
    consumer = thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == faust_fetch.FETCH_MAX_WAIT_MS == 100
    finally:
        await consumer.stop()
