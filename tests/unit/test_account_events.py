"""The input contract: one valid example of every event type, and the ways events go wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import CUSTOMER_INITIATED, EventType, parse_account_event
from schemas.account_events import (
    CustomerUpdated,
    TransferIn,
    TransferOut,
    is_customer_initiated,
)
from services.runtime.codec import RejectReason, describe_validation_error

FIXTURES = Path(__file__).parents[1] / "fixtures"

BASE: dict[str, Any] = {
    "event_id": "E-1",
    "occurred_at": "2026-03-01T09:30:00+08:00",
    "customer_id": "C000001",
    "channel": "mobile",
}
MONEY = {"account_id": "A1", "amount": "250.00", "balance_after": "1250.50", "currency": "CNY"}
COUNTERPARTY = {"bank_code": "ICBC", "account": "6222000011112222", "name": "Li", "kind": "person"}
PRODUCT = {"product_id": "TD-12M", "category": "term_deposit", "name": "12-month deposit"}

VALID: dict[str, dict[str, Any]] = {
    "account.opened": {"account_id": "A1", "referral_code": "K7Q2M9XZ"},
    "account.closed": {"account_id": "A1"},
    "deposit": MONEY,
    "withdrawal": MONEY,
    "transfer.in": {**MONEY, "counterparty": COUNTERPARTY},
    "transfer.out": {**MONEY, "counterparty": {**COUNTERPARTY, "kind": "business"}},
    "card.payment": {**MONEY, "attributes": {"mcc": "5411"}},
    "balance.snapshot": {"account_id": "A1", "balance_after": "-12.00", "currency": "CNY"},
    "digital.login": {},
    "product.opened": {"product": PRODUCT},
    "product.closed": {"product": PRODUCT},
    "complaint.filed": {"attributes": {"category": "fees"}},
    "interest.credited": {**MONEY, "channel": "system"},
    "fee.charged": {**MONEY, "kind": "penalty_interest", "channel": "system"},
    "standing_order.created": {
        "account_id": "A1",
        "mandate_id": "SO-77",
        "counterparty": {"bank_code": "ICBC", "account": "6222000099990000"},
        "amount": "2800.00",
        "currency": "CNY",
        "frequency": "monthly",
        "purpose": "rent",
    },
    "standing_order.cancelled": {"account_id": "A1", "mandate_id": "SO-77"},
    "direct_debit.created": {
        "account_id": "A1",
        "mandate_id": "DD-12",
        "counterparty": {"bank_code": "CCB", "account": "4100", "kind": "business"},
        "purpose": "utilities",
    },
    "direct_debit.cancelled": {"account_id": "A1", "mandate_id": "DD-12"},
    "customer.updated": {
        "profile": {
            "birthday": "1988-05-17",
            "locale": "zh-CN",
            "time_zone": "Asia/Shanghai",
            "rm_id": "RM007",
            "consent": {"push": True, "sms": False},
            "phone_hash": "9f86d081884c7d65",
            "device_hashes": ["a3f5c2e19b7d4e60"],
        }
    },
}


def event(kind: str, /, **overrides: Any) -> dict[str, Any]:
    """A valid event of the given type, with fields overridden or (value None) removed."""
    data = {**BASE, "event_type": kind, **VALID[kind]}
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def rejection(data: dict[str, Any]) -> tuple[RejectReason, str]:
    with pytest.raises(ValidationError) as info:
        parse_account_event(data)
    result = describe_validation_error(info.value)
    return result.reason, result.message


def test_every_event_type_has_a_valid_example() -> None:
    assert set(VALID) == {t.value for t in EventType}


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_valid_example_of_each_type_parses(event_type: str) -> None:
    parsed = parse_account_event(event(event_type))
    assert parsed.event_type == event_type
    assert parsed.occurred_at == datetime(2026, 3, 1, 1, 30, tzinfo=UTC)


def test_money_stays_decimal_and_serialises_as_string() -> None:
    parsed = parse_account_event(event("deposit", amount="0.10"))
    assert parsed.amount == Decimal("0.10")  # type: ignore[union-attr]
    assert parsed.model_dump(mode="json")["amount"] == "0.10"


def test_transfer_carries_counterparty_kind() -> None:
    parsed = parse_account_event(event("transfer.out"))
    assert parsed.counterparty.kind == "business"  # type: ignore[union-attr]


def test_every_v1_event_of_the_committed_fixtures_still_parses() -> None:
    # Events as producers sent them before the contract grew (December 2026): additive changes
    # must keep every one of them valid, with the same meaning.
    lines = (FIXTURES / "account-events.v1.jsonl").read_text().splitlines()
    parsed = [parse_account_event(json.loads(line)) for line in lines]
    assert {p.event_type for p in parsed} == {t.value for t in list(EventType)[:13]}
    for event in parsed:
        if isinstance(event, TransferIn | TransferOut):
            assert event.counterparty.kind in ("person", "business")


def test_counterparty_kind_is_optional_and_knows_the_state() -> None:
    plain = parse_account_event(
        event("transfer.in", counterparty={"bank_code": "ICBC", "account": "1"})
    )
    assert plain.counterparty.kind is None  # type: ignore[union-attr]
    state = parse_account_event(
        event("transfer.in", purpose="pension", counterparty={**COUNTERPARTY, "kind": "government"})
    )
    assert state.counterparty.kind == "government"  # type: ignore[union-attr]


def test_transfer_out_carries_its_purpose_and_the_own_account_flag() -> None:
    parsed = parse_account_event(
        event(
            "transfer.out",
            purpose="savings",
            counterparty={**COUNTERPARTY, "own_account": True, "bank_code": " cmb "},
        )
    )
    assert isinstance(parsed, TransferOut)
    assert parsed.purpose == "savings" and parsed.counterparty.own_account is True
    assert parsed.counterparty.institution == "CMB"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("en", "en"),
        ("zh-CN", "zh-CN"),
        ("cs-CZ", "cs-CZ"),
        ("de-at", "de-AT"),
        ("zh-hant-hk", "zh-Hant-HK"),
        ("zh-HK", "zh-HK"),
        ("sr-Latn-RS", "sr-Latn-RS"),
        ("es-419", "es-419"),
        ("en-US-x-private", "en-US-x-private"),
    ],
)
def test_any_well_formed_bcp47_locale_is_accepted_in_canonical_case(
    given: str, stored: str
) -> None:
    parsed = parse_account_event(event("customer.updated", profile={"locale": given}))
    assert isinstance(parsed, CustomerUpdated) and parsed.profile.locale == stored


def test_postings_and_mandate_payments_are_not_customer_initiated() -> None:
    assert not is_customer_initiated(parse_account_event(event("interest.credited")))
    assert not is_customer_initiated(parse_account_event(event("fee.charged")))
    assert is_customer_initiated(parse_account_event(event("transfer.out")))
    by_mandate = parse_account_event(event("transfer.out", mandate_id="SO-77"))
    assert not is_customer_initiated(by_mandate)


def test_fields_added_by_newer_producers_are_ignored() -> None:
    assert parse_account_event(event("digital.login", new_field="x")).event_id == "E-1"


def test_customer_initiated_types_are_the_four_the_bank_counts() -> None:
    assert {t.value for t in CUSTOMER_INITIATED} == {
        "deposit",
        "withdrawal",
        "transfer.out",
        "card.payment",
    }


@pytest.mark.parametrize(
    ("data", "reason", "words"),
    [
        (event("deposit", amount="-5.00"), RejectReason.INVALID_VALUE, "must not be negative"),
        (event("deposit", amount="ten"), RejectReason.INVALID_VALUE, "not a decimal number"),
        (event("deposit", amount="NaN"), RejectReason.INVALID_VALUE, "not a decimal number"),
        (event("deposit", amount="Infinity"), RejectReason.INVALID_VALUE, "not a decimal"),
        (event("deposit", amount="0"), RejectReason.INVALID_VALUE, "greater than zero"),
        (event("deposit", amount="1" * 25), RejectReason.INVALID_VALUE, "larger than 18 digits"),
        (event("deposit", amount="1.0000001"), RejectReason.INVALID_VALUE, "decimal places"),
        (event("deposit", amount=12.5), RejectReason.WRONG_TYPE, "decimal string"),
        (event("deposit", amount=None), RejectReason.MISSING_FIELD, "deposit.amount"),
        (event("deposit", currency="yuan"), RejectReason.INVALID_VALUE, "currency"),
        (event("transfer.in", counterparty=None), RejectReason.MISSING_FIELD, "counterparty"),
        (
            event("transfer.in", counterparty={**COUNTERPARTY, "kind": "robot"}),
            RejectReason.INVALID_VALUE,
            "counterparty.kind",
        ),
        (event("product.opened", product=None), RejectReason.MISSING_FIELD, "product"),
        (
            event("customer.updated", profile={"locale": "zh_CN"}),
            RejectReason.INVALID_VALUE,
            "not a BCP 47 language tag",
        ),
        (event("fee.charged", kind="late_fee"), RejectReason.INVALID_VALUE, "fee.charged.kind"),
        (
            event("standing_order.created", counterparty=None),
            RejectReason.MISSING_FIELD,
            "counterparty",
        ),
        (
            event("direct_debit.cancelled", mandate_id=None),
            RejectReason.MISSING_FIELD,
            "mandate_id",
        ),
        (
            event("standing_order.created", currency=None),
            RejectReason.INVALID_VALUE,
            "currency is required with an amount",
        ),
        (event("transfer.out", purpose="gift"), RejectReason.INVALID_VALUE, "purpose"),
        (event("account.opened", account_id=None), RejectReason.MISSING_FIELD, "account_id"),
        (event("customer.updated", profile=None), RejectReason.MISSING_FIELD, "profile"),
        (
            event("customer.updated", profile={"time_zone": "Mars/Olympus"}),
            RejectReason.INVALID_VALUE,
            "not an IANA time zone",
        ),
        (event("deposit", event_type="loan.defaulted"), RejectReason.UNKNOWN_EVENT_TYPE, "loan"),
        (event("deposit", event_type=None), RejectReason.MISSING_FIELD, "event_type"),
        (event("deposit", event_id=None), RejectReason.MISSING_FIELD, "event_id"),
        (event("deposit", customer_id=42), RejectReason.WRONG_TYPE, "customer_id"),
        (
            event("deposit", occurred_at="2026-03-01T09:30:00"),
            RejectReason.INVALID_VALUE,
            "timezone",
        ),
        (
            event("deposit", occurred_at="1969-12-31T23:59:59Z"),
            RejectReason.INVALID_VALUE,
            "outside 1970-2100",
        ),
        (
            event("deposit", occurred_at="2999-01-01T00:00:00Z"),
            RejectReason.INVALID_VALUE,
            "outside 1970-2100",
        ),
        (event("deposit", occurred_at="yesterday"), RejectReason.INVALID_VALUE, "occurred_at"),
    ],
)
def test_invalid_events_are_rejected_with_a_readable_reason(
    data: dict[str, Any], reason: RejectReason, words: str
) -> None:
    got_reason, message = rejection(data)
    assert got_reason is reason, message
    assert words in message
