"""Workaround for faust-streaming 0.15.3's fetch wait, which holds a worker's partitions back
for up to 1.5 s each time one of them runs dry while the others are idle. faust builds the
worker's aiokafka consumer with `fetch_max_wait_ms=1500`, fixed in its code
(`faust/transport/drivers/aiokafka.py`, `AIOKafkaConsumerThread._create_worker_consumer`: no
setting reaches it), three times Kafka's own default of 500 ms. Remove this when a release
makes it a setting.

Why it costs so much. aiokafka (0.14) sends at most one fetch at a time to a broker
(`Fetcher._get_actions_per_node`: `elif node_id in self._in_flight: continue`), and a fetch
lists only the partitions with nothing left in the consumer's buffer. When the partitions in
it have nothing new, the broker holds it for the whole wait; a partition whose buffered records
are taken meanwhile, with records waiting on the broker, cannot be fetched until it returns.
On one broker every partition of the worker shares that single fetch.

Where it bit. Notify alone on the bench's topics (docs/benchmarks.md, 2026-12-06) took its
records in steps, about 500 a step and a step every 1.4 s, with stalls of up to 7 s, while its
CPU was half idle: the topics it had taken to the end kept a fetch waiting 1.5 s, and the
partitions with records left waited behind it.

The workaround: the worker's consumer waits at most `FETCH_MAX_WAIT_MS` for new records. An
idle worker then asks the broker about ten times a second instead of less than once, which a
broker does not notice.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

FETCH_MAX_WAIT_MS = 100

_faust_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _faust_create_worker_consumer(self, transport)
    # aiokafka hands it to its fetcher when the consumer starts, after this.
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
    return consumer


def install() -> None:
    """Patch faust's consumer thread to build consumers that wait less."""
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
