"""The changelog reader of services/runtime/faust_recovery.py applies records to a table as
faust's own recovery would: keys and values decoded by the changelog topic's schema, a
tombstone removing its key. (That the workers' restarts go through it, and that their outputs
are unchanged by it, tests/integration/test_worker_restart.py shows on a real broker.)"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from services.runtime import faust_recovery
from services.runtime.app import create_app
from services.runtime.settings import RuntimeSettings

CHANGELOG = TP("rapport-lifecycle-recovery-test-state-changelog", 2)


def record(offset: int, key: str, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=CHANGELOG.topic,
        partition=CHANGELOG.partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=orjson.dumps(key),
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


def table() -> Any:
    app = create_app("lifecycle", RuntimeSettings(instance="recovery-test"))
    # As the services make theirs: keys as JSON strings, values as the service's own bytes.
    return app, app.Table("state", default=None, key_type=str, value_type=bytes)


def test_keys_and_values_are_decoded_as_fausts_schema_decodes_them() -> None:
    app, state = table()
    decoders = faust_recovery._decoders(app, state)
    assert decoders is not None
    decode_key, decode_value = decoders
    schema = state.changelog_topic.schema
    for raw in (record(0, "C-1", b'{"stage": "growth"}'), record(1, "C-\u00e9", b"\x00\xff")):
        message = faust_recovery._Message(CHANGELOG, raw)
        assert decode_key(raw.key) == schema.loads_key(app, message) == orjson.loads(raw.key)
        assert decode_value(raw.value) == schema.loads_value(app, message) == raw.value
    assert decode_value(None) is None


async def test_records_are_applied_in_order_and_a_tombstone_removes_its_key() -> None:
    app, state = table()
    records = [
        record(0, "C-1", b"first"),
        record(1, "C-2", b"kept"),
        record(2, "C-1", b"second"),
        record(3, "C-3", b"gone"),
        record(4, "C-3", None),
    ]
    applied = await faust_recovery._apply(
        state, faust_recovery._decoders(app, state), CHANGELOG, records
    )
    assert applied == 5
    assert dict(state.data.items()) == {"C-1": b"second", "C-2": b"kept"}


async def test_partitions_read_to_their_highwater_need_no_consumer() -> None:
    app, _ = table()
    recovery = SimpleNamespace(app=app, active_highwaters={CHANGELOG: 41})
    offsets = {CHANGELOG: 41}
    assert await faust_recovery.read_changelogs(recovery, {CHANGELOG}, offsets) == 0
    assert offsets == {CHANGELOG: 41}
