"""From bytes on the wire to events, and the reason for every record that is not one."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from pydantic import TypeAdapter

from schemas.account_events import AccountOpened
from schemas.lifecycle import StageChanged, Strategy
from schemas.referral import REFERRAL_EVENT_ADAPTER, LeadType, ReferralChanged
from services.runtime.codec import (
    MAX_EVENT_BYTES,
    Rejection,
    RejectReason,
    decode_account_event,
    decode_model,
    decode_rapport_event,
    encode,
)
from services.runtime.deadletter import dead_letter_headers
from tests.unit.test_account_events import event

VALID = orjson.dumps(event("deposit"))
KEY = b"C000001"


def reason(key: bytes | None, value: bytes | None) -> RejectReason:
    result = decode_account_event(key, value)
    assert isinstance(result, Rejection), result
    return result.reason


def test_a_valid_record_decodes_to_its_event() -> None:
    result = decode_account_event(KEY, VALID)
    assert not isinstance(result, Rejection)
    assert result.event_type == "deposit"


def test_malformed_json_is_rejected() -> None:
    assert reason(KEY, b'{"event_id": ') is RejectReason.MALFORMED_JSON


def test_json_nan_literal_is_malformed() -> None:
    assert reason(KEY, VALID.replace(b'"250.00"', b"NaN")) is RejectReason.MALFORMED_JSON


def test_invalid_utf8_is_rejected() -> None:
    assert reason(KEY, b'{"event_id": "\xff\xfe"}') is RejectReason.INVALID_UTF8


def test_a_json_array_is_not_an_event() -> None:
    assert reason(KEY, b"[1, 2]") is RejectReason.NOT_AN_OBJECT


def test_a_tombstone_is_rejected() -> None:
    assert reason(KEY, None) is RejectReason.MALFORMED_JSON


def test_oversized_records_are_rejected_before_parsing() -> None:
    huge = orjson.dumps(event("deposit", attributes={"blob": "x" * MAX_EVENT_BYTES}))
    assert reason(KEY, huge) is RejectReason.TOO_LARGE


def test_key_must_be_the_customer_id() -> None:
    result = decode_account_event(b"C999", VALID)
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.KEY_MISMATCH
    assert "C000001" in result.message
    assert reason(None, VALID) is RejectReason.KEY_MISMATCH


def test_encode_round_trips_money_as_strings() -> None:
    opened = AccountOpened.model_validate(event("account.opened"))
    assert orjson.loads(encode(opened))["occurred_at"] == "2026-03-01T01:30:00Z"
    deposit = decode_account_event(KEY, VALID)
    assert not isinstance(deposit, Rejection)
    assert orjson.loads(encode(deposit))["amount"] == "250.00"


def test_envelope_of_output_events_needs_id_type_and_time() -> None:
    ok = decode_rapport_event(
        None, b'{"event_id":"x","type":"t","occurred_at":"2026-01-01T00:00Z"}'
    )
    assert not isinstance(ok, Rejection)
    bad = decode_rapport_event(None, b'{"event_id":"x"}')
    assert isinstance(bad, Rejection)
    assert bad.reason is RejectReason.MISSING_FIELD


def test_dead_letter_headers_name_reason_and_source_position() -> None:
    headers = dict(
        dead_letter_headers(
            Rejection(RejectReason.WRONG_TYPE, "deposit.amount: must be a decimal string"),
            service="lifecycle",
            topic="bank.account-events.v1",
            partition=3,
            offset=42,
        )
    )
    assert headers["rapport-error-reason"] == b"wrong_type"
    assert headers["rapport-error"].startswith(b"deposit.amount")
    assert headers["rapport-source-partition"] == b"3"
    assert headers["rapport-source-offset"] == b"42"
    assert headers["rapport-service"] == b"lifecycle"


def test_outputs_with_empty_optional_fields_survive_their_own_codec() -> None:
    """`encode` leaves out None fields, so every optional field of a contract needs a default:
    a stage change made by a time rule (no cause event) was once rejected by its consumers."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    stage = StageChanged(
        event_id="s",
        type="stage.changed",
        occurred_at=at,
        customer_id="C1",
        previous_stage=None,
        stage="acquisition",
        previous_tier=None,
        tier="mass",
        reason="opened",
        cause_event_id=None,
        churn_score=0.0,
        strategy=Strategy.for_stage("acquisition"),
        balance_avg_30d="0",
    )
    referral = ReferralChanged(
        event_id="r",
        type="referral.rejected",
        occurred_at=at,
        referral_id="ref",
        referrer=None,
        referee="E1",
        via="code",
        lead_type=LeadType.RETAIL,
    )
    assert decode_model(TypeAdapter(StageChanged), encode(stage)) == stage
    assert decode_model(REFERRAL_EVENT_ADAPTER, encode(referral)) == referral
