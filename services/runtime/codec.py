"""Bytes on the wire to contract models and back, with a readable reason for every rejection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.account_events import ACCOUNT_EVENT_ADAPTER, AccountEvent
from schemas.envelope import RAPPORT_EVENT_ADAPTER, RapportEvent

T = TypeVar("T")

# An account event is a few hundred bytes; anything this large is a producer bug or an attack.
MAX_EVENT_BYTES = 64 * 1024


class RejectReason(StrEnum):
    """Machine-readable reason codes of dead letters (a bounded set: safe as a metric label)."""

    TOO_LARGE = "too_large"
    INVALID_UTF8 = "invalid_utf8"
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    KEY_MISMATCH = "key_mismatch"
    PROCESSING_ERROR = "processing_error"
    DELIVERY_FAILED = "delivery_failed"


@dataclass(frozen=True)
class Rejection:
    """Why a record was not accepted: a code for machines and a sentence for people."""

    reason: RejectReason
    message: str


def _reason_for(error_type: str) -> RejectReason:
    if error_type == "union_tag_invalid":
        return RejectReason.UNKNOWN_EVENT_TYPE
    if error_type in ("missing", "union_tag_not_found"):
        return RejectReason.MISSING_FIELD
    if error_type.endswith("_type") or error_type in ("model_attributes_type", "is_instance_of"):
        return RejectReason.WRONG_TYPE
    return RejectReason.INVALID_VALUE


def describe_validation_error(exc: ValidationError, *, limit: int = 3) -> Rejection:
    """Turn pydantic's errors into one reason code and a short sentence naming each field."""
    errors = exc.errors(include_url=False, include_input=False)
    reason = _reason_for(errors[0]["type"])
    parts = []
    for err in errors[:limit]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            msg = f"unknown event_type {err.get('ctx', {}).get('tag', '')!r}"
        elif err["type"] == "union_tag_not_found":
            msg = "event_type is missing"
        parts.append(f"{loc}: {msg}" if loc else msg)
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return Rejection(reason, "; ".join(parts))


def decode_json(value: bytes | None) -> Any | Rejection:
    """Bytes to a JSON object, or why they are not one."""
    if value is None:
        return Rejection(RejectReason.MALFORMED_JSON, "the record has no value (a tombstone)")
    if len(value) > MAX_EVENT_BYTES:
        return Rejection(
            RejectReason.TOO_LARGE,
            f"the record is {len(value)} bytes; an event may be at most {MAX_EVENT_BYTES} bytes",
        )
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(RejectReason.INVALID_UTF8, f"the value is not UTF-8 text ({exc.reason})")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Rejection(RejectReason.MALFORMED_JSON, f"the value is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return Rejection(
            RejectReason.NOT_AN_OBJECT,
            f"the value is a JSON {type(data).__name__}, not an object",
        )
    return data


def decode_model(adapter: TypeAdapter[T], value: bytes | None) -> T | Rejection:
    """Bytes to a validated model, or why not."""
    data = decode_json(value)
    if isinstance(data, Rejection):
        return data
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        return describe_validation_error(exc)


def model_decoder(
    adapter: TypeAdapter[T],
) -> Callable[[bytes | None, bytes | None], T | Rejection]:
    """A record decoder for `consume` that validates the value against one contract (the key
    is the producer's business)."""

    def decode(key: bytes | None, value: bytes | None) -> T | Rejection:
        return decode_model(adapter, value)

    return decode


def decode_account_event(key: bytes | None, value: bytes | None) -> AccountEvent | Rejection:
    """Validate one record of `bank.account-events.v1`, key included."""
    event = decode_model(ACCOUNT_EVENT_ADAPTER, value)
    if isinstance(event, Rejection):
        return event
    # The key decides which worker owns the customer; a wrong key would split a customer's
    # state across two partitions, so it is refused rather than trusted.
    expected = event.customer_id.encode("utf-8")
    if key != expected:
        shown = "no key" if key is None else f"key {key[:64]!r}"
        return Rejection(
            RejectReason.KEY_MISMATCH,
            f"the record has {shown} but customer_id {event.customer_id!r}; "
            "the key must be the customer id",
        )
    return event


def encode(model: BaseModel) -> bytes:
    """A contract model to JSON bytes (decimals as strings, times in RFC 3339). pydantic's own
    serializer writes the bytes at once: the same bytes as a `model_dump` then orjson, in 40 %
    of the time (a lifecycle output: 7.9 -> 3.2 µs)."""
    return model.__pydantic_serializer__.to_json(model, exclude_none=True)


def decode_rapport_event(key: bytes | None, value: bytes | None) -> RapportEvent | Rejection:
    """Validate the envelope of a Rapport output event (the key is the producer's business)."""
    del key
    return decode_model(RAPPORT_EVENT_ADAPTER, value)
