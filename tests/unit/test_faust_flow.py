"""faust's back-pressure as patched by services/runtime/faust_flow.py: a full stream buffer
throttles its whole topic, the fetch asks for a fixed set of partitions, and a poll cannot
overfill a buffer. tests/integration/test_stream_backpressure.py shows the worker it kept from
stalling."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from services.runtime import faust_flow
from services.runtime.app import create_app
from services.runtime.settings import RuntimeSettings

faust_flow.install()


class FakeConsumer:
    """What faust's `on_buffer_full` and `on_buffer_drop` use of the consumer."""

    def __init__(self, held: set[TP]) -> None:
        self.app = SimpleNamespace(in_recovery=False)
        self.held = held
        self._active_partitions = set(held)
        self._buffered_partitions: set[TP] = set()
        self._paused_partitions: set[TP] = set()

    def assignment(self) -> set[TP]:
        return self.held

    def _get_active_partitions(self) -> set[TP]:
        return self._active_partitions


def held() -> set[TP]:
    return {TP("derived", p) for p in range(3)} | {TP("facts", p) for p in range(3)}


def test_a_full_buffer_throttles_every_partition_of_its_topic() -> None:
    consumer = FakeConsumer(held())
    Consumer.on_buffer_full(consumer, TP("derived", 1))  # type: ignore[arg-type]
    assert consumer._buffered_partitions == {TP("derived", p) for p in range(3)}
    assert consumer._active_partitions == {TP("facts", p) for p in range(3)}


def test_a_drained_buffer_lets_its_whole_topic_go() -> None:
    consumer = FakeConsumer(held())
    Consumer.on_buffer_full(consumer, TP("derived", 1))  # type: ignore[arg-type]
    consumer._paused_partitions.add(TP("derived", 2))  # paused by someone else: stays so
    Consumer.on_buffer_drop(consumer, TP("derived", 0))  # type: ignore[arg-type]
    assert consumer._buffered_partitions == set()
    assert consumer._active_partitions == held() - {TP("derived", 2)}


def test_recovering_tables_are_not_throttled() -> None:
    consumer = FakeConsumer(held())
    consumer.app.in_recovery = True
    Consumer.on_buffer_full(consumer, TP("derived", 1))  # type: ignore[arg-type]
    assert consumer._active_partitions == held()


async def test_a_fetch_asks_for_the_partitions_active_when_it_was_asked() -> None:
    """aiokafka takes an empty set for every partition: faust's live set emptied under a fetch
    brought the throttled partitions' records too."""
    asked: list[Any] = []

    class Thread:
        def _ensure_consumer(self) -> Any:
            return SimpleNamespace(_max_poll_records=faust_flow.MAX_POLL_RECORDS)

        async def call_thread(self, method: Any, consumer: Any, partitions: Any, **_: Any) -> Any:
            asked.append(partitions)
            return {}

        _fetch_records = None

    active = {TP("facts", 0)}
    await AIOKafkaConsumerThread.getmany(Thread(), active, 1.0)  # type: ignore[arg-type]
    active.clear()
    assert asked == [{TP("facts", 0)}]


def test_a_poll_fits_above_a_buffers_pressure_mark() -> None:
    app = create_app("notify", RuntimeSettings(instance="flow-test"))
    mark = int(app.conf.stream_buffer_maxsize / 1.25)
    assert app.conf.broker_max_poll_records is not None
    assert app.conf.broker_max_poll_records < app.conf.stream_buffer_maxsize - mark
