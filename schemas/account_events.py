"""The input contract: core-banking account events on `bank.account-events.v1`.

Every producer outside Rapport and every Rapport service parses with `parse_account_event`,
so there is one definition of what a valid event is.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1

# Event time outside this window is a producer bug (epoch-zero defaults, year 9999 sentinels),
# never a real banking event; it would otherwise push the stream's clock years ahead.
EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)

# 18 digits before the point covers any balance a bank holds in any currency; beyond that the
# value is corrupt input, not money.
MAX_AMOUNT_DIGITS = 18
MAX_AMOUNT_PLACES = 6

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"


class EventType(StrEnum):
    """The kinds of account event a core-banking system publishes."""

    ACCOUNT_OPENED = "account.opened"
    ACCOUNT_CLOSED = "account.closed"
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    TRANSFER_IN = "transfer.in"
    TRANSFER_OUT = "transfer.out"
    CARD_PAYMENT = "card.payment"
    BALANCE_SNAPSHOT = "balance.snapshot"
    DIGITAL_LOGIN = "digital.login"
    PRODUCT_OPENED = "product.opened"
    PRODUCT_CLOSED = "product.closed"
    COMPLAINT_FILED = "complaint.filed"
    CUSTOMER_UPDATED = "customer.updated"


# Transactions the customer chose to make; transfer.in and balance snapshots are not.
CUSTOMER_INITIATED: frozenset[EventType] = frozenset(
    {EventType.DEPOSIT, EventType.WITHDRAWAL, EventType.TRANSFER_OUT, EventType.CARD_PAYMENT}
)


class Channel(StrEnum):
    """Where the event originated."""

    BRANCH = "branch"
    MOBILE = "mobile"
    ONLINE = "online"
    ATM = "atm"
    POS = "pos"
    CALL_CENTER = "call_center"
    SYSTEM = "system"


def _decimal_from_string(value: Any) -> Any:
    # A JSON number has already passed through a binary float in most producers' hands; only a
    # string keeps the cents a customer sees, so the contract accepts nothing else.
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "decimal_string_type",
            'must be a decimal string such as "1250.00", not a JSON {kind}',
            {"kind": "number" if isinstance(value, int | float) else type(value).__name__},
        )
    if not re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        raise ValueError(f"{value[:40]!r} is not a decimal number")
    return Decimal(value.strip())


def _check_magnitude(value: Decimal) -> Decimal:
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite by the pattern above
    places = max(0, -exponent)
    if places > MAX_AMOUNT_PLACES:
        raise ValueError(f"has {places} decimal places; at most {MAX_AMOUNT_PLACES} are allowed")
    if len(digits) - places > MAX_AMOUNT_DIGITS:
        raise ValueError(f"is larger than {MAX_AMOUNT_DIGITS} digits before the decimal point")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must not be negative; the event type gives the direction")
    return value


_DECIMAL_JSON_SCHEMA = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}

SignedMoney = Annotated[
    Decimal,
    BeforeValidator(_decimal_from_string),
    AfterValidator(_check_magnitude),
    PlainSerializer(lambda d: str(d), return_type=str),
    WithJsonSchema({**_DECIMAL_JSON_SCHEMA, "description": "decimal string; may be negative"}),
]
Money = Annotated[
    Decimal,
    BeforeValidator(_decimal_from_string),
    AfterValidator(_check_magnitude),
    AfterValidator(_non_negative),
    PlainSerializer(lambda d: str(d), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d+(\.\d+)?$",
            "description": "non-negative decimal string",
        }
    ),
]


def _to_utc(value: datetime) -> datetime:
    if not EARLIEST_EVENT_TIME <= value < LATEST_EVENT_TIME:
        raise ValueError(
            f"{value.isoformat()} is outside {EARLIEST_EVENT_TIME.year}-{LATEST_EVENT_TIME.year}"
        )
    return value.astimezone(UTC)


EventTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]
CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
Hash = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/=_\-]{8,128}$")]


class Contract(BaseModel):
    """Strict enough to catch producer bugs, lenient to fields added by newer producers."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


class Counterparty(Contract):
    """The other side of a transfer, as the core-banking system knows it."""

    bank_code: Annotated[str, Field(min_length=1, max_length=32)]
    account: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(max_length=200)] | None = None
    kind: Literal["person", "business"]


class Product(Contract):
    """A product held by the customer (term deposit, card, loan, fund, insurance...)."""

    product_id: Identifier
    category: Annotated[str, Field(min_length=1, max_length=40)]
    name: Annotated[str, Field(max_length=200)] | None = None


class ChannelConsent(Contract):
    """Marketing and service consent per channel; None means the bank has not asked."""

    push: bool | None = None
    sms: bool | None = None
    email: bool | None = None


def _known_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value[:60]!r} is not an IANA time zone") from None
    return value


Locale = Annotated[str, Field(pattern=r"^(zh-CN|en)$")]
TimeZone = Annotated[str, AfterValidator(_known_time_zone)]


class CustomerProfile(Contract):
    """Profile fields carried by `customer.updated`; absent fields are unchanged."""

    birthday: date | None = None
    locale: Locale | None = None
    time_zone: TimeZone | None = None
    rm_id: Identifier | None = None
    consent: ChannelConsent | None = None
    phone_hash: Hash | None = None
    device_hashes: Annotated[list[Hash], Field(max_length=20)] = []


class _AccountEvent(Contract):
    schema_version: Literal[1] = 1
    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    occurred_at: EventTime
    customer_id: Identifier
    account_id: Identifier | None = None
    currency: CurrencyCode | None = None
    channel: Channel | None = None
    attributes: Annotated[dict[str, JsonValue], Field(max_length=50)] = {}


class _MoneyMovement(_AccountEvent):
    account_id: Identifier
    amount: Money
    balance_after: SignedMoney
    currency: CurrencyCode

    @model_validator(mode="after")
    def _positive_amount(self) -> _MoneyMovement:
        if self.amount == 0:
            raise ValueError("amount must be greater than zero for a money movement")
        return self


class AccountOpened(_AccountEvent):
    """A new account; the first one makes a new customer."""

    event_type: Literal["account.opened"]
    account_id: Identifier
    referral_code: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{4,32}$")] | None = None
    product: Product | None = None


class AccountClosed(_AccountEvent):
    """An account closed; closing the last one ends the relationship."""

    event_type: Literal["account.closed"]
    account_id: Identifier


class Deposit(_MoneyMovement):
    """Cash or cheque paid in by the customer."""

    event_type: Literal["deposit"]


class Withdrawal(_MoneyMovement):
    """Cash taken out by the customer."""

    event_type: Literal["withdrawal"]


class TransferPurpose(StrEnum):
    """What the paying bank or the core system says an incoming transfer is for."""

    SALARY = "salary"
    PENSION = "pension"
    BENEFIT = "benefit"
    OTHER = "other"


# Recurring income paid by an employer, a pension fund or the state: the payer is not the
# customer moving their own money.
INCOME_PURPOSES = frozenset(
    {TransferPurpose.SALARY, TransferPurpose.PENSION, TransferPurpose.BENEFIT}
)


class TransferIn(_MoneyMovement):
    """Money received from a counterparty (payroll, family, a customer's own other bank)."""

    event_type: Literal["transfer.in"]
    counterparty: Counterparty
    # Added in 2026-11 (optional, so older producers stay valid): payroll systems mark salary.
    purpose: TransferPurpose | None = None


class TransferOut(_MoneyMovement):
    """Money the customer sent to a counterparty."""

    event_type: Literal["transfer.out"]
    counterparty: Counterparty


class CardPayment(_MoneyMovement):
    """A debit card purchase."""

    event_type: Literal["card.payment"]


class BalanceSnapshot(_AccountEvent):
    """End-of-day balance of one account."""

    event_type: Literal["balance.snapshot"]
    account_id: Identifier
    balance_after: SignedMoney
    currency: CurrencyCode


class DigitalLogin(_AccountEvent):
    """A login to mobile or online banking."""

    event_type: Literal["digital.login"]


class ProductOpened(_AccountEvent):
    """A product taken up (card, term deposit, fund, loan, insurance)."""

    event_type: Literal["product.opened"]
    product: Product


class ProductClosed(_AccountEvent):
    """A product given up or matured."""

    event_type: Literal["product.closed"]
    product: Product


class ComplaintFiled(_AccountEvent):
    """A complaint recorded by any channel; the category goes in attributes."""

    event_type: Literal["complaint.filed"]


class CustomerUpdated(_AccountEvent):
    """A change to the customer's profile, consents or relationship manager."""

    event_type: Literal["customer.updated"]
    profile: CustomerProfile


AccountEvent = Annotated[
    AccountOpened
    | AccountClosed
    | Deposit
    | Withdrawal
    | TransferIn
    | TransferOut
    | CardPayment
    | BalanceSnapshot
    | DigitalLogin
    | ProductOpened
    | ProductClosed
    | ComplaintFiled
    | CustomerUpdated,
    Field(discriminator="event_type"),
]

ACCOUNT_EVENT_ADAPTER: TypeAdapter[AccountEvent] = TypeAdapter(AccountEvent)


def parse_account_event(data: object) -> AccountEvent:
    """Validate a decoded JSON value against the contract (raises pydantic.ValidationError)."""
    return ACCOUNT_EVENT_ADAPTER.validate_python(data)


def account_event_key(customer_id: str) -> bytes:
    """The Kafka key of `bank.account-events.v1`: the customer id in UTF-8."""
    return customer_id.encode("utf-8")
