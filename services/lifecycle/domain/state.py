"""What the lifecycle rules keep of one customer, and what applying an event gives back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec

from schemas.account_events import Position
from schemas.lifecycle import (
    ChurnCause,
    ChurnSignalChanged,
    CustomerBirthday,
    SignalKind,
    Stage,
    StageChanged,
    TenureAnniversary,
    Tier,
)

_ID_NAMESPACE = uuid.UUID("6f1c1d2e-6a55-4a38-9a57-1f0c2b6f7d11")


class _Stored(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the rules keep is read and written at almost every event: msgspec Structs, read
    back in under a third of pydantic's time and written in a third, with the same JSON
    (docs/benchmarks.md, 2026-12-07, night). Nothing here is a contract, so nothing needs
    pydantic's schema; the fields still at their defaults are left out of the stored JSON
    (most of a young customer's 40 fields are). Each class is keyword-only (`kw_only` is not
    inherited), so the fields stay in the order they read best."""


class OpenSignal(_Stored, kw_only=True):
    """A churn signal that has been raised and not yet resolved."""

    cause: ChurnCause
    raised_at: datetime
    escalated: bool = False
    weight: float
    evidence: dict[str, Any]
    reference: Decimal = Decimal(0)  # balance_drain: the 30-day maximum it fell from
    last_seen_at: datetime | None = None


class Payer(_Stored, kw_only=True):
    """An incoming-transfer payer, by pseudonymous key: the months it paid in, the last time."""

    months: list[int] = msgspec.field(default_factory=list)
    last_at: datetime
    last_event_id: str
    # The last payments' amounts, oldest first: whether the income still comes in full.
    amounts: list[Decimal] = msgspec.field(default_factory=list)

    def monthly(self, months: int) -> bool:
        """Paid in at least `months` of the last `months + 1` months, whatever the amounts."""
        recent = self.months[-months:]
        return len(recent) >= months and recent[-1] - recent[0] <= months

    def regular(self, months: int) -> bool:
        """Paid in at least `months` of the last `months + 1` months, at least `months` of the
        last payments within a fifth of their median (a salary or a pension, one month late or
        early now and then, a bonus or a short month aside; not a relative's occasional gifts,
        whatever their rhythm). Payers kept before their amounts were have only the months."""
        if not self.monthly(months):
            return False
        if not self.amounts:
            return True
        usual = usual_amount(self.amounts)
        return sum(1 for a in self.amounts if abs(a - usual) * 5 <= usual) >= months


def usual_amount(amounts: list[Decimal], *, upper: bool = True) -> Decimal:
    """A payer's usual payment: the median (of an even count, the upper one, or the lower one
    when `upper` is false)."""
    ordered = sorted(amounts)
    return ordered[len(ordered) // 2 if upper else (len(ordered) - 1) // 2]


class Outflow(_Stored, kw_only=True):
    """Money that left the customer: when, how much, whether to another bank, and whether it
    looked like the customer's own money moving there (`moving`, with the reason)."""

    at: datetime
    amount: Decimal
    external: bool
    event_id: str
    moving: bool = False
    why: str | None = None


MandateKind = Literal["standing_order", "direct_debit"]


class Mandate(_Stored, kw_only=True):
    """A live standing order or direct debit; `created_at` None when it was set up before the
    service first saw the customer."""

    kind: MandateKind
    created_at: datetime | None = None


class Cancellation(_Stored, kw_only=True):
    """A standing order or direct debit the customer ended, weighted by how established it
    was (0.1 for one set up the week before, 1 for one of six months or more)."""

    at: datetime
    mandate_id: str
    weight: float
    event_id: str


class CustomerState(_Stored, kw_only=True):
    """Everything the lifecycle rules need to know about one customer."""

    customer_id: str
    # Bumped at every save; the read model keeps the highest version it was given.
    version: int = 0
    stage: Stage | None = None
    stage_since: datetime | None = None
    tier: Tier = Tier.MASS
    win_back: bool = False
    relationship_start: datetime | None = None
    # Anniversaries of relationship_start already behind the customer (announced, or passed
    # before the service first saw them); None in states saved before anniversaries existed.
    anniversaries_passed: int | None = None
    # From customer.updated: the birthday, the time zone it is reckoned in, and the last year
    # a birthday was announced (or passed before it was known).
    birthday: date | None = None
    time_zone: str | None = None
    birthday_year_done: int | None = None
    # A keyed hash of the holder's name (never the name): a transfer to an account in the same
    # name at another bank is the customer's own money moving.
    holder_name_key: str | None = None
    activated: bool = False
    matured_once: bool = False
    initiated_count: int = 0
    # The customer's usual gap between own transactions, in days (a moving average).
    usual_gap_days: float | None = None
    # The lowest end-of-day total balance of each recent month (year * 12 + month).
    monthly_lows: dict[int, Decimal] = msgspec.field(default_factory=dict)
    # The month a balance came after more than a month without one: its low is partial.
    resumed_month: int | None = None
    # Single large payments to someone else (a car, a flat): (when, amount), 90 days.
    one_offs: list[tuple[datetime, Decimal]] = msgspec.field(default_factory=list)
    last_activity_at: datetime | None = None
    last_event_at: datetime | None = None
    evaluated_until: datetime | None = None
    open_accounts: list[str] = msgspec.field(default_factory=list)
    open_products: dict[str, str] = msgspec.field(default_factory=dict)
    balances: dict[str, Decimal] = msgspec.field(default_factory=dict)
    balance_as_of: dict[str, datetime] = msgspec.field(default_factory=dict)
    daily_totals: dict[int, Decimal] = msgspec.field(default_factory=dict)
    signals: dict[SignalKind, OpenSignal] = msgspec.field(default_factory=dict)
    payers: dict[str, Payer] = msgspec.field(default_factory=dict)
    outflows: list[Outflow] = msgspec.field(default_factory=list)
    complaints: list[tuple[datetime, str]] = msgspec.field(default_factory=list)
    pending_closures: dict[str, tuple[datetime, str]] = msgspec.field(default_factory=dict)
    # Standing orders and direct debits by mandate id; recent cancellations and creations.
    mandates: dict[str, Mandate] = msgspec.field(default_factory=dict)
    cancellations: list[Cancellation] = msgspec.field(default_factory=list)
    mandates_created: list[datetime] = msgspec.field(default_factory=list)
    # Each with its event time in epoch seconds, which only orders them for pruning: an
    # ISO time each had been most of the cost of reading a state back (states are about 8 KB
    # after a year, more than half of it these ids). States saved before 2026-12-06 carry ISO
    # times, read as they were.
    recent_event_ids: dict[str, int] = msgspec.field(default_factory=dict)
    # Where the last event applied sits in the input: a redelivery of any earlier one is known
    # by it, however many events came since (`recent_event_ids` keeps the newest 128 to 256).
    position: Position | None = None

    @property
    def total_balance(self) -> Decimal:
        """Sum of the latest balance of every account."""
        return sum(self.balances.values(), Decimal(0))


Output = StageChanged | ChurnSignalChanged | TenureAnniversary | CustomerBirthday


@dataclass(frozen=True)
class Pseudonyms:
    """Keyed pseudonyms the service made of an event's personal data (the counterparty's
    account and name, the holder's name from a profile): the rules compare them and never see
    the data itself."""

    counterparty: str | None = None
    counterparty_name: str | None = None
    holder_name: str | None = None


NO_PSEUDONYMS = Pseudonyms()


@dataclass
class Outcome:
    """What applying one event (or one step of time) did."""

    state: CustomerState
    outputs: list[Output] = field(default_factory=list)
    duplicate: bool = False


def day_of(t: datetime) -> int:
    """The proleptic ordinal of t's (UTC) day."""
    return t.toordinal()


def output_id(*parts: object) -> str:
    """A deterministic output event id: a replay publishes the same id."""
    return str(uuid.uuid5(_ID_NAMESPACE, "|".join(str(p) for p in parts)))
