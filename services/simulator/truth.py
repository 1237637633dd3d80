"""What really happened in a simulated population: the answers the evaluator scores against.

Written next to the events as JSON (`rapport simulate --truth FILE`). Counterparty accounts are
synthetic, so the truth may name them; the services themselves only ever see keyed hashes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field


class SyntheticCounterparty(BaseModel):
    """An account at another bank that customers pay or are paid by. `kind` is what it really
    is; most feeds do not say (`declared` False leaves it off the wire), and only some say that
    an account is the customer's own (`own_account`)."""

    bank_code: str
    account: str
    name: str
    kind: Literal["person", "business", "government"]
    declared: bool = True
    own_account: bool | None = None

    def wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"bank_code": self.bank_code, "account": self.account}
        wire["name"] = self.name
        if self.declared:
            wire["kind"] = self.kind
        if self.own_account is not None:
            wire["own_account"] = self.own_account
        return wire


class ChurnTruth(BaseModel):
    """A churner's cause, when the behaviour changed, and when the last account closed
    (`churned_at` is None when that falls after the simulated period)."""

    cause: str
    onset: datetime
    churned_at: datetime | None
    planned_at: datetime
    # A customer who moves their standing orders and direct debits to the other bank: when
    # the first was cancelled.
    payments_moved_at: datetime | None = None


class CustomerTruth(BaseModel):
    persona: str
    # Stable customers never leave and never change behaviour: an at-risk alarm on one is false.
    stable: bool
    opened_at: datetime | None = None
    churn: ChurnTruth | None = None
    referred_by: str | None = None
    win_back: bool = False
    # The customer's last own transaction before a silence of at least `QUIET_DAYS` that lasted
    # to the closure or the end of the period, and whether the bank's postings (interest, fees,
    # payments on standing instructions) kept coming in that silence.
    quiet_from: datetime | None = None
    postings_while_quiet: bool = False
    # Whether the customer moved their own money to another institution (the competitor's
    # pull); bills paid elsewhere are not that.
    moved_money: bool = False
    locale: str | None = None
    # Added 2026-12, the life events of a real account that are not churn: the customer's
    # holidays without card spending ([first day, day back) each), and when a one-off large
    # payment went to another institution.
    holidays: list[tuple[datetime, datetime]] = Field(default_factory=list)
    one_off_at: datetime | None = None
    # A month of reduced pay (Profile.reduced_pay): the payday it came on.
    reduced_pay_at: datetime | None = None


class Conversion(BaseModel):
    """A counterparty that opened an account, and who introduced it."""

    counterparty: SyntheticCounterparty
    customer_id: str
    opened_at: datetime
    introduced_by: str
    via: Literal["code", "chain"]
    code: str | None = None


class GenuineReferral(BaseModel):
    """A referral the bank wants: a converted counterparty and its true introducer. The
    referral service's id for it derives from the referee and the opening, so the evaluator
    matches it by `referee`."""

    referee: str
    referrer: str
    via: Literal["code", "chain"]
    opened_at: datetime


class FraudCase(BaseModel):
    """Planted referral fraud. `self_referral`: a second identity with the referrer's own code
    and phone. `ring`: A's code opens B, B's opens C, ..., and the last one's code brings A back
    after A closed everything (`referrer` A; `referees` in order, A last; `length` the number
    of customers in the ring). `velocity`: a burst of referrals by one referrer.
    `funded_by_referrer`: the referee's account funded from the referrer's account at the bank
    soon after opening. `funded_through_hop`: the referrer pays an external account, which pays
    the referee about as much days later."""

    pattern: Literal[
        "self_referral", "ring", "velocity", "funded_by_referrer", "funded_through_hop"
    ]
    referrer: str
    referees: list[str]
    length: int | None = None


class Noise(BaseModel):
    duplicates: int = 0
    late: int = 0
    max_lateness_hours: float = 0.0
    expected_dead_letters: dict[str, int] = Field(default_factory=dict)


class Truth(BaseModel):
    seed: int
    # The population profile the feed was drawn from (services/simulator/profiles.py).
    profile: str = "standard"
    population: int = Field(description="customers asked for; conversions and fraud add more")
    days: int
    start: datetime
    end: datetime
    # Outputs dated before this are the initial load's (see services/simulator/population.py).
    evaluate_from: datetime
    own_bank: str
    events: int = 0
    valid_by_type: dict[str, int] = Field(default_factory=dict)
    noise: Noise = Field(default_factory=Noise)
    customers: dict[str, CustomerTruth] = Field(default_factory=dict)
    conversions: list[Conversion] = Field(default_factory=list)
    codes: dict[str, str] = Field(default_factory=dict, description="referral code -> referrer")
    fraud: list[FraudCase] = Field(default_factory=list)
    # The conversions as the referrals they should be: attributed, never held nor rejected.
    genuine_referrals: list[GenuineReferral] = Field(default_factory=list)
    # Where each evaluated topic ended when the feed was produced: the evaluator reads on from
    # there, so earlier runs on the same broker do not count.
    output_offsets: dict[str, dict[int, int]] = Field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=1))

    @classmethod
    def read(cls, path: Path) -> Truth:
        return cls.model_validate_json(path.read_text())
