"""The workers' producer as patched by services/runtime/faust_idempotence.py: idempotent with
acks=all, without exactly-once processing (with the workaround taken out this test finds no
transaction manager, the part of aiokafka's producer that numbers the batches)."""

from __future__ import annotations

from services.runtime.app import create_app
from services.runtime.settings import RuntimeSettings


async def test_a_workers_producer_is_idempotent_and_waits_for_every_in_sync_replica() -> None:
    app = create_app("lifecycle", RuntimeSettings(instance="idempotence-test"))
    producer = app.producer._new_producer()
    try:
        assert producer._txn_manager is not None
        assert producer._txn_manager.transactional_id is None  # not exactly-once processing
        assert app.conf.producer_acks == -1
    finally:
        await producer.stop()
