"""Workaround for faust-streaming 0.15.3's producer, which is idempotent only under exactly-once
processing: `faust/transport/drivers/aiokafka.py`, `Producer._settings_extra`, returns
`enable_idempotence` only when the app is in a transaction, and no setting reaches it (faust's
docs of `processing_guarantee` say as much). Remove this when a release makes it a setting.

Why Rapport needs it. On a replicated cluster a produce request can reach the partition's
leader, be written, and have its answer lost when the leader fails; the producer then sends
the batch again to the new leader. Without idempotence the batch is written twice: a stage
change, a ledger entry or a notification doubled in the topic (its consumers drop the copy by
event id, but an auditor reading the topic sees two). An idempotent producer numbers its
batches per partition, and the broker drops a batch it already has. acks=all, which
idempotence needs, is Rapport's setting already (`producer_acks=-1`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers.aiokafka import Producer

_faust_settings_extra = Producer._settings_extra


def _settings_extra(self: Any) -> Mapping[str, Any]:
    return {**_faust_settings_extra(self), "acks": "all", "enable_idempotence": True}


def install() -> None:
    """Patch faust's producer to be idempotent always."""
    Producer._settings_extra = _settings_extra  # type: ignore[method-assign]
