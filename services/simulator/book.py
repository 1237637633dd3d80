"""One customer's account as the core-banking system records it: the events it publishes, with
their ids, the running balance, the standing orders and direct debits it pays, and the bank's
own postings (interest, fees) at each month's end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from services.simulator.truth import SyntheticCounterparty

CENT = Decimal("0.01")
# A demand-deposit rate and a monthly account fee waived above a balance, as retail banks set
# them: small amounts, but a posting every month on every account.
INTEREST_RATE = Decimal("0.0035")
ACCOUNT_FEE = Decimal("5.00")
FEE_WAIVED_FROM = Decimal(10_000)
CARD_FEE = Decimal("20.00")
CUSTOMER_INITIATED = frozenset({"deposit", "withdrawal", "transfer.out", "card.payment"})


def money(value: Decimal) -> str:
    """An amount as it goes on the wire: a string with two decimal places."""
    return str(value.quantize(CENT))


@dataclass(frozen=True)
class StandingPayment:
    """A standing order (the customer's instruction) or a direct debit (the payee's mandate):
    who is paid, how much, on which day of the month, for what."""

    mandate_id: str
    kind: Literal["standing_order", "direct_debit"]
    payee: SyntheticCounterparty
    amount: Decimal
    day: int
    purpose: str
    # Yearly payments fall in this month; monthly ones every month.
    month: int | None = None

    def due(self, day: datetime) -> bool:
        return day.day == self.day and (self.month is None or day.month == self.month)


@dataclass
class Book:
    """One customer's events as they are written: ids, balance, open accounts and mandates."""

    customer_id: str
    # Nothing is published at or after the end of the simulated period.
    end: datetime
    events: list[dict[str, Any]] = field(default_factory=list)
    balance: Decimal = Decimal(0)
    accounts: list[str] = field(default_factory=list)
    mandates: dict[str, StandingPayment] = field(default_factory=dict)
    # Changes to the mandates planned for a later day of the simulation, made in time order
    # as the days are lived (`collect`), so that payments stop and start when they should.
    planned: list[tuple[datetime, Callable[[], None]]] = field(default_factory=list)
    seq: int = 0

    def emit(self, event_type: str, at: datetime, /, **fields: Any) -> dict[str, Any]:
        event = {
            "event_type": event_type,
            "occurred_at": at.isoformat(),
            "customer_id": self.customer_id,
            **fields,
        }
        if at < self.end:
            self.seq += 1
            event["event_id"] = f"{self.customer_id}-{self.seq:05d}"
            self.events.append(event)
        return event

    @property
    def account(self) -> str:
        return self.accounts[0]

    def open(self, at: datetime, channel: str = "branch", code: str | None = None) -> None:
        account = f"A{self.customer_id[1:]}{len(self.accounts) + 1:02d}"
        self.accounts.append(account)
        extra = {"referral_code": code} if code else {}
        self.emit("account.opened", at, account_id=account, channel=channel, **extra)

    def close_all(self, at: datetime) -> None:
        for n, account in enumerate(self.accounts):
            self.emit("account.closed", at + timedelta(minutes=n), account_id=account)
        self.accounts.clear()
        self.mandates.clear()

    def move(
        self,
        event_type: str,
        at: datetime,
        amount: Decimal,
        channel: str,
        counterparty: SyntheticCounterparty | None = None,
        /,
        **extra: Any,
    ) -> None:
        amount = amount.quantize(CENT)
        if amount <= 0 or not self.accounts:
            return
        outgoing = event_type in ("withdrawal", "transfer.out", "card.payment", "fee.charged")
        if outgoing and amount > self.balance:
            amount = self.balance.quantize(CENT)
            if amount <= 0:
                return
        self.balance += -amount if outgoing else amount
        fields: dict[str, Any] = {
            "account_id": self.account,
            "amount": money(amount),
            "balance_after": money(self.balance),
            "currency": "CNY",
            "channel": channel,
            **extra,
        }
        if counterparty is not None:
            fields["counterparty"] = counterparty.wire()
        self.emit(event_type, at, **fields)

    def insert_payment(
        self,
        at: datetime,
        amount: Decimal,
        channel: str,
        counterparty: SyntheticCounterparty,
        /,
        **extra: Any,
    ) -> bool:
        """A `transfer.out` dated `at` added after the customer's life was written (planted
        fraud): every later balance is lowered by the amount, so the account stays consistent.
        False, and nothing written, when the balance would not cover it at every later point,
        or when no account is open then."""
        amount = amount.quantize(CENT)
        stamp = at.isoformat()
        earlier = [e for e in self.events if "balance_after" in e and e["occurred_at"] <= stamp]
        later = [e for e in self.events if "balance_after" in e and e["occurred_at"] > stamp]
        opened = [e["account_id"] for e in self.events if e["event_type"] == "account.opened"]
        if not earlier or not opened or amount <= 0:
            return False
        before = Decimal(max(earlier, key=lambda e: str(e["occurred_at"]))["balance_after"])
        if before < amount or any(Decimal(e["balance_after"]) < amount for e in later):
            return False
        for event in later:
            event["balance_after"] = money(Decimal(event["balance_after"]) - amount)
        self.balance -= amount
        account = max(earlier, key=lambda e: str(e["occurred_at"])).get("account_id", opened[0])
        self.emit(
            "transfer.out",
            at,
            account_id=account,
            amount=money(amount),
            balance_after=money(before - amount),
            currency="CNY",
            channel=channel,
            counterparty=counterparty.wire(),
            **extra,
        )
        return True

    # -- standing orders and direct debits -----------------------------------------------------

    def set_up(self, at: datetime, payment: StandingPayment) -> None:
        """The customer gives a standing order or a direct debit mandate."""
        self.mandates[payment.mandate_id] = payment
        self.emit(
            f"{payment.kind}.created",
            at,
            account_id=self.account,
            mandate_id=payment.mandate_id,
            counterparty=payment.payee.wire(),
            amount=money(payment.amount),
            currency="CNY",
            frequency="yearly" if payment.month else "monthly",
            purpose=payment.purpose,
            channel="mobile",
        )

    def cancel(self, at: datetime, mandate_id: str) -> None:
        """The customer (or the new bank's switching service) ends one."""
        payment = self.mandates.pop(mandate_id)
        self.emit(
            f"{payment.kind}.cancelled",
            at,
            account_id=self.account,
            mandate_id=mandate_id,
            channel="online",
        )

    def plan(self, at: datetime, change: Callable[[], None]) -> None:
        """Make a change to the mandates when the simulation reaches `at`."""
        self.planned.append((at, change))
        self.planned.sort(key=lambda p: p[0])

    def collect(self, day: datetime) -> None:
        """The day's planned changes, then the payments of the mandates due this day, made by
        the bank in the early morning."""
        while self.planned and self.planned[0][0] < day + timedelta(days=1):
            _, change = self.planned.pop(0)
            change()
        due = [payment for payment in self.mandates.values() if payment.due(day)]
        for n, payment in enumerate(due):
            # One after another in the bank's early-morning run, in the order they are booked.
            minutes = 7 * n + len(self.events) % 7
            self.move(
                "transfer.out",
                day + timedelta(hours=6, minutes=minutes),
                payment.amount,
                "system",
                payment.payee,
                purpose=payment.purpose,
                mandate_id=payment.mandate_id,
            )

    # -- the bank's own postings ---------------------------------------------------------------

    def post_month_end(self, day: datetime, card_holder: bool) -> None:
        """Interest credited and fees charged on the last day of the month."""
        at = day + timedelta(hours=22)
        interest = (self.balance * INTEREST_RATE / 12).quantize(CENT)
        if interest > 0:
            self.move("interest.credited", at, interest, "system")
        if self.balance < FEE_WAIVED_FROM:
            self.move(
                "fee.charged", at + timedelta(minutes=1), ACCOUNT_FEE, "system", kind="account_fee"
            )
        if card_holder and day.month == 12:
            self.move("fee.charged", at + timedelta(minutes=2), CARD_FEE, "system", kind="card_fee")

    def own_transactions(self, before: datetime) -> list[datetime]:
        """When the customer made their own transactions before `before`, in order (not the
        bank's postings, nor payments on standing instructions)."""
        return sorted(
            t
            for e in self.events
            if e["event_type"] in CUSTOMER_INITIATED
            and "mandate_id" not in e
            and (t := datetime.fromisoformat(e["occurred_at"])) < before
        )
