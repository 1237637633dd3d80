"""Faust adapter of the lifecycle service: per-customer state in a changelogged table, time rules
driven by each partition's own event-time clock, outputs to the stage and churn topics."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Any

import faust
import orjson

from schemas.account_events import AccountEvent, TransferIn, TransferOut
from schemas.lifecycle import ChurnSignalChanged, StageChanged
from schemas.topics import ACCOUNT_EVENTS, CHURN_SIGNALS, STAGE_CHANGED
from services.lifecycle import metrics
from services.lifecycle.config import LifecycleSettings
from services.lifecycle.domain import (
    CustomerState,
    LifecycleRules,
    Output,
    advance,
    apply_event,
    next_deadline,
)
from services.runtime.app import consume, create_app
from services.runtime.codec import decode_account_event, encode
from services.runtime.settings import RuntimeSettings

SERVICE = "lifecycle"


def counterparty_key(event: AccountEvent, secret: bytes) -> str | None:
    """A keyed pseudonym of a transfer's counterparty (never its raw account number)."""
    if not isinstance(event, TransferIn | TransferOut):
        return None
    cp = event.counterparty
    normalised = f"{cp.bank_code.strip().upper()}:{cp.account.replace(' ', '')}"
    return hmac.new(secret, normalised.encode(), hashlib.sha256).hexdigest()[:32]


class Lifecycle:
    """The tables and topics of one lifecycle worker, and the handler the runtime calls."""

    def __init__(self, app: faust.App, rules: LifecycleRules, config: LifecycleSettings) -> None:
        self.rules = rules
        self.lateness = timedelta(hours=config.allowed_lateness_hours)
        self.secret = config.pseudonym_key.encode()
        # Keys as JSON strings so they come back as str after changelog recovery; values are
        # our own JSON bytes.
        schema: Any = faust.Schema(
            key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"
        )
        table: dict[str, Any] = {"schema": schema}
        self.customers = app.Table("customers", default=None, **table)
        # day-of-deadline buckets per partition: "partition:ordinal" -> [customer ids]
        self.calendar = app.Table("calendar", default=None, **table)
        # per-partition stream clock: "partition" -> {"max": iso time, "scanned": ordinal}
        self.clock = app.Table("clock", default=None, **table)
        self.stage_topic = app.topic(
            STAGE_CHANGED.name, key_serializer="raw", value_serializer="raw"
        )
        self.signal_topic = app.topic(
            CHURN_SIGNALS.name, key_serializer="raw", value_serializer="raw"
        )

    def _load(self, customer_id: str) -> CustomerState | None:
        raw = self.customers.get(customer_id)
        return None if raw is None else CustomerState.model_validate_json(raw)

    async def _store(self, state: CustomerState, partition: int, scanned: int) -> None:
        self.customers[state.customer_id] = state.model_dump_json().encode()
        due = next_deadline(state, self.rules)
        if due is None:
            return
        day = max(due.toordinal(), scanned + 1)
        key = f"{partition}:{day}"
        bucket = orjson.loads(self.calendar.get(key) or b"[]")
        if state.customer_id not in bucket:
            bucket.append(state.customer_id)
            self.calendar[key] = orjson.dumps(bucket)

    async def _publish(self, outputs: list[Output]) -> None:
        for output in outputs:
            topic = self.stage_topic if isinstance(output, StageChanged) else self.signal_topic
            # Delivered before the state that remembers the event is written: a crash in between
            # replays the event instead of losing its outputs (consumers dedupe by event_id).
            await (await topic.send(key=output.customer_id.encode(), value=encode(output)))
            if isinstance(output, StageChanged):
                if output.type == "stage.changed":
                    metrics.STAGE_TRANSITIONS.labels(
                        str(output.previous_stage or "none"), output.stage.value
                    ).inc()
                else:
                    metrics.TIER_TRANSITIONS.labels(
                        str(output.previous_tier or "none"), output.tier.value
                    ).inc()
            elif isinstance(output, ChurnSignalChanged):
                metrics.CHURN_SIGNALS.labels(
                    output.type.rsplit(".", 1)[1], output.signal.value, output.cause.value
                ).inc()

    async def handle(self, event: AccountEvent, message: Any) -> None:
        """Apply one event, then let the partition's clock fire whatever fell due."""
        partition = message.partition
        clock = orjson.loads(self.clock.get(str(partition)) or b"{}")
        newest = max(
            datetime.fromisoformat(clock["max"]) if "max" in clock else event.occurred_at,
            event.occurred_at,
        )
        now = newest - self.lateness
        scanned = int(clock.get("scanned", now.toordinal() - 1))
        if event.occurred_at < now:
            metrics.LATE_EVENTS.inc()
        metrics.EVENT_TIME_LAG.observe(max((now - event.occurred_at).total_seconds(), 0))

        key = counterparty_key(event, self.secret)
        outcome = apply_event(self._load(event.customer_id), event, now, self.rules, key)
        if outcome.duplicate:
            metrics.DUPLICATES.inc()
        else:
            await self._publish(outcome.outputs)
            await self._store(outcome.state, partition, scanned)

        # Whole days the clock has passed: wake the customers whose deadlines fell in them.
        for day in range(scanned + 1, now.toordinal()):
            bucket_key = f"{partition}:{day}"
            bucket = self.calendar.get(bucket_key)
            if bucket is None:
                continue
            del self.calendar[bucket_key]
            for customer_id in orjson.loads(bucket):
                state = self._load(customer_id)
                if state is None:
                    continue
                outputs = advance(state, now, self.rules)
                await self._publish(outputs)
                await self._store(state, partition, now.toordinal() - 1)
        self.clock[str(partition)] = orjson.dumps(
            {"max": newest.isoformat(), "scanned": max(scanned, now.toordinal() - 1)}
        )


def build_app(settings: RuntimeSettings) -> faust.App:
    """The lifecycle worker's faust app."""
    app = create_app(SERVICE, settings)
    config = LifecycleSettings()
    lifecycle = Lifecycle(app, config.rules(), config)
    # mypy cannot solve T through the Annotated union of event models.
    consume(  # type: ignore[misc]
        app,
        SERVICE,
        ACCOUNT_EVENTS,
        decode_account_event,
        lifecycle.handle,
        label=lambda e: str(e.event_type),
    )
    return app
