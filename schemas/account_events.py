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
    # Added 2026-12: the bank's own postings and the customer's payment mandates.
    INTEREST_CREDITED = "interest.credited"
    FEE_CHARGED = "fee.charged"
    STANDING_ORDER_CREATED = "standing_order.created"
    STANDING_ORDER_CANCELLED = "standing_order.cancelled"
    DIRECT_DEBIT_CREATED = "direct_debit.created"
    DIRECT_DEBIT_CANCELLED = "direct_debit.cancelled"


# Transactions the customer chose to make; transfer.in, balance snapshots and the bank's own
# postings (interest, fees) are not: a dormant account keeps receiving those.
CUSTOMER_INITIATED: frozenset[EventType] = frozenset(
    {EventType.DEPOSIT, EventType.WITHDRAWAL, EventType.TRANSFER_OUT, EventType.CARD_PAYMENT}
)

# Postings the bank makes on its own account of the customer's: they move the balance, never
# count as the customer's activity.
BANK_POSTINGS: frozenset[EventType] = frozenset(
    {EventType.INTEREST_CREDITED, EventType.FEE_CHARGED}
)

# The customer's standing orders and direct debits: how an account is tied to a household.
MANDATE_EVENTS: frozenset[EventType] = frozenset(
    {
        EventType.STANDING_ORDER_CREATED,
        EventType.STANDING_ORDER_CANCELLED,
        EventType.DIRECT_DEBIT_CREATED,
        EventType.DIRECT_DEBIT_CANCELLED,
    }
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


_DECIMAL = re.compile(r"-?\d+(\.\d+)?")


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
    text = value.strip()
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{value[:40]!r} is not a decimal number")
    return Decimal(text)


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
# The bank's reference of a standing order or direct debit mandate.
MandateId = Annotated[str, Field(min_length=1, max_length=64)]


class Contract(BaseModel):
    """Strict enough to catch producer bugs, lenient to fields added by newer producers."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


CounterpartyKind = Literal["person", "business", "government", "unknown"]


def _institution_codes(codes: frozenset[str]) -> frozenset[str]:
    return frozenset(code.strip().upper() for code in codes if code.strip())


# A set of institution (bank) codes, compared as `Counterparty.institution` gives them.
InstitutionCodes = Annotated[frozenset[str], AfterValidator(_institution_codes)]


class Counterparty(Contract):
    """The other side of a transfer, as the core-banking system knows it. Most feeds give a
    bank code and an account only: `kind` and `own_account` are optional (added 2026-12;
    `kind` was required before, with `person` or `business`)."""

    bank_code: Annotated[str, Field(min_length=1, max_length=32)]
    account: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(max_length=200)] | None = None
    # None and "unknown" say the same: the feed does not know. `government`: pensions,
    # benefits, taxes.
    kind: CounterpartyKind | None = None
    # The customer's own account elsewhere, when the bank knows it (from a switching request,
    # a verified payee, a linked account).
    own_account: bool | None = None

    @property
    def institution(self) -> str:
        """The bank code as rules compare it: trimmed, upper case."""
        return self.bank_code.strip().upper()


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


# RFC 5646 (BCP 47) language tags: language[-extlang][-script][-region][-variant]*
# [-extension]*[-privateuse], or private use alone. Grandfathered tags (i-klingon...) are left
# out: no bank profile carries them.
_BCP47 = re.compile(
    r"^(?:(?:[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}|[A-Za-z]{4,8})"
    r"(?:-[A-Za-z]{4})?"
    r"(?:-(?:[A-Za-z]{2}|\d{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|\d[A-Za-z0-9]{3}))*"
    r"(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"
    r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?"
    r"|[Xx](?:-[A-Za-z0-9]{1,8})+)$"
)


def _language_tag(value: str) -> str:
    """A well-formed BCP 47 tag in its canonical case (zh-hant-hk -> zh-Hant-HK)."""
    if len(value) > 64 or not _BCP47.match(value):
        hint = " (BCP 47 uses '-', not '_')" if "_" in value else ""
        raise ValueError(f"{value[:64]!r} is not a BCP 47 language tag such as 'de-AT'{hint}")
    parts = value.split("-")
    out = [parts[0].lower()]
    private = parts[0].lower() == "x"
    for part in parts[1:]:
        if private or len(part) == 1:
            private = private or part.lower() == "x"
            out.append(part.lower())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        elif len(part) == 2 and part.isalpha():
            out.append(part.upper())
        else:
            out.append(part.lower())
    return "-".join(out)


# Any well-formed BCP 47 tag (until 2026-12 only zh-CN and en were accepted).
Locale = Annotated[
    str,
    AfterValidator(_language_tag),
    WithJsonSchema(
        {"type": "string", "maxLength": 64, "pattern": _BCP47.pattern, "description": "BCP 47"}
    ),
]
TimeZone = Annotated[str, AfterValidator(_known_time_zone)]


class CustomerProfile(Contract):
    """Profile fields carried by `customer.updated`; absent fields are unchanged."""

    birthday: date | None = None
    locale: Locale | None = None
    time_zone: TimeZone | None = None
    rm_id: Identifier | None = None
    # The account holder's name (added 2026-12): lifecycle keeps only a keyed hash of it, to
    # recognise transfers to the customer's own account elsewhere.
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    consent: ChannelConsent | None = None
    phone_hash: Hash | None = None
    device_hashes: Annotated[list[Hash], Field(max_length=20)] = Field(
        default_factory=list, json_schema_extra={"default": []}
    )


class _AccountEvent(Contract):
    schema_version: Literal[1] = 1
    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    occurred_at: EventTime
    customer_id: Identifier
    account_id: Identifier | None = None
    currency: CurrencyCode | None = None
    channel: Channel | None = None
    # A factory, not `= {}`: pydantic deep-copies a mutable default for every event that lacks
    # the field (about 2 us of the 10 to 12 us an event's validation takes). The schema
    # still shows the default.
    attributes: Annotated[dict[str, JsonValue], Field(max_length=50)] = Field(
        default_factory=dict, json_schema_extra={"default": {}}
    )


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


class PaymentPurpose(StrEnum):
    """What an outgoing payment is for, as the customer's payment order or the core system
    says (added 2026-12)."""

    BILL = "bill"
    UTILITIES = "utilities"
    INSURANCE = "insurance"
    LOAN_REPAYMENT = "loan_repayment"
    RENT = "rent"
    TAX = "tax"
    SAVINGS = "savings"
    INVESTMENT = "investment"
    OWN_ACCOUNT = "own_account"
    FAMILY = "family"
    OTHER = "other"


# Household payments: money leaving for them is ordinary life, never a competitor's pull.
HOUSEHOLD_PURPOSES = frozenset(
    {
        PaymentPurpose.BILL,
        PaymentPurpose.UTILITIES,
        PaymentPurpose.INSURANCE,
        PaymentPurpose.LOAN_REPAYMENT,
        PaymentPurpose.RENT,
        PaymentPurpose.TAX,
    }
)
# The customer's own money put to work elsewhere: what a competitor's pull looks like.
MONEY_MOVING_PURPOSES = frozenset(
    {PaymentPurpose.SAVINGS, PaymentPurpose.INVESTMENT, PaymentPurpose.OWN_ACCOUNT}
)


class TransferOut(_MoneyMovement):
    """Money the customer sent to a counterparty."""

    event_type: Literal["transfer.out"]
    counterparty: Counterparty
    # Added 2026-12 (optional).
    purpose: PaymentPurpose | None = None
    # The standing order or direct debit this payment executes (added 2026-12): the bank paid
    # it on the customer's standing instruction, so it is not the customer's own activity.
    mandate_id: MandateId | None = None


class CardPayment(_MoneyMovement):
    """A debit card purchase."""

    event_type: Literal["card.payment"]


class FeeKind(StrEnum):
    """Which charge a `fee.charged` posting is."""

    ACCOUNT_FEE = "account_fee"
    PENALTY_INTEREST = "penalty_interest"
    CARD_FEE = "card_fee"
    OTHER = "other"


class InterestCredited(_MoneyMovement):
    """Interest the bank credited to the account (added 2026-12). A posting of the bank's:
    it moves the balance, and says nothing of whether the customer still uses the account."""

    event_type: Literal["interest.credited"]


class FeeCharged(_MoneyMovement):
    """A fee or penalty interest the bank charged to the account (added 2026-12). A posting
    of the bank's, like `interest.credited`."""

    event_type: Literal["fee.charged"]
    kind: FeeKind = FeeKind.OTHER


class Frequency(StrEnum):
    """How often a standing order pays, or a direct debit is expected to collect."""

    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"
    IRREGULAR = "irregular"


class _Mandate(_AccountEvent):
    """A standing order (the customer's instruction to pay a payee regularly) or a direct
    debit (the payee's authority to collect): added 2026-12."""

    account_id: Identifier
    # The bank's reference of the order or mandate: a cancellation names the one it ends.
    mandate_id: MandateId
    amount: Money | None = None
    frequency: Frequency | None = None
    purpose: PaymentPurpose | None = None

    @model_validator(mode="after")
    def _currency_with_amount(self) -> _Mandate:
        if self.amount is not None and self.currency is None:
            raise ValueError("currency is required with an amount")
        return self


class _MandateCreated(_Mandate):
    counterparty: Counterparty


class _MandateCancelled(_Mandate):
    # The mandate id names it; feeds that repeat the payee may.
    counterparty: Counterparty | None = None


class StandingOrderCreated(_MandateCreated):
    """A standing order set up: the customer pays the payee regularly from this account."""

    event_type: Literal["standing_order.created"]


class StandingOrderCancelled(_MandateCancelled):
    """A standing order ended by the customer."""

    event_type: Literal["standing_order.cancelled"]


class DirectDebitCreated(_MandateCreated):
    """A direct debit mandate given to a payee (a utility, an insurer, a lender)."""

    event_type: Literal["direct_debit.created"]


class DirectDebitCancelled(_MandateCancelled):
    """A direct debit mandate revoked."""

    event_type: Literal["direct_debit.cancelled"]


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
    | CustomerUpdated
    | InterestCredited
    | FeeCharged
    | StandingOrderCreated
    | StandingOrderCancelled
    | DirectDebitCreated
    | DirectDebitCancelled,
    Field(discriminator="event_type"),
]

ACCOUNT_EVENT_ADAPTER: TypeAdapter[AccountEvent] = TypeAdapter(AccountEvent)


def is_customer_initiated(event: AccountEvent) -> bool:
    """Whether the customer chose to make this transaction now: one of `CUSTOMER_INITIATED`,
    and not a payment the bank executed on a standing order or direct debit."""
    if event.event_type not in CUSTOMER_INITIATED:
        return False
    return not (isinstance(event, TransferOut) and event.mandate_id is not None)


def parse_account_event(data: object) -> AccountEvent:
    """Validate a decoded JSON value against the contract (raises pydantic.ValidationError)."""
    return ACCOUNT_EVENT_ADAPTER.validate_python(data)


def account_event_key(customer_id: str) -> bytes:
    """The Kafka key of `bank.account-events.v1`: the customer id in UTF-8."""
    return customer_id.encode("utf-8")


# Where a record sits in `bank.account-events.v1`: (partition, offset).
Position = tuple[int, int]


def is_redelivery(applied: Position | None, position: Position | None) -> bool:
    """Whether a customer's event at `position` is one already applied, the last applied being
    at `applied`: the topic is keyed by customer, so a customer's events come in offset order
    on one partition, and one at or before the last applied is the same record again (a
    redelivery after a crash or a rebalance), however many events came in between. Positions
    in another partition (the topic's partitions were added to) say nothing."""
    return (
        applied is not None
        and position is not None
        and applied[0] == position[0]
        and position[1] <= applied[1]
    )
