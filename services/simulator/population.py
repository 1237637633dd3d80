"""A synthetic bank population with the truth behind it.

Each customer follows a persona (services/simulator/profiles.py): a stable saver, a pensioner, a
salaried customer, a growing customer who adds products, a high-net-worth customer, a late joiner
who never gets going, or a churner of one of the four causes. Every household lives the year of a
real current account (services/simulator/life.py): income on its day, bills, spending sized to
income, holidays, the seasons, now and then a large one-off payment. Customers pay and are paid
by counterparties at other banks (employers, pension funds, landlords, family, suppliers,
schools); some of those counterparties open an account later, with or without a referral code,
and a few referrals are fraudulent on purpose (services/simulator/planted.py). Pure: the same
seed and profile give the same events and truth, with no I/O.

The established customers (all but the late joiners and the converted counterparties) opened
their accounts before the simulated period, with a short onboarding burst then; what happens
between that and the period's start is not simulated. Rules that look at the past (inactivity,
activation) therefore fire on that gap, dated before the period: the evaluator counts from
`Truth.evaluate_from` on, like a bank measuring a system after its initial load.
"""

from __future__ import annotations

import itertools
import random
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.simulator import churners, household, planted
from services.simulator.book import CENT, Book
from services.simulator.dates import banking_day, day_of_month, months
from services.simulator.identity import OTHER_BANKS, OWN_BANK, birthday, holder_name
from services.simulator.life import MONTH_DAYS, REGULAR_SPEND, Life, live, year_events
from services.simulator.profiles import (
    CHURN_CAUSE,
    STABLE,
    STANDARD,
    Persona,
    Profile,
    profile_named,
)
from services.simulator.truth import CustomerTruth, SyntheticCounterparty, Truth

__all__ = [
    "CHURN_CAUSE",
    "OWN_BANK",
    "PERSONA_SHARES",
    "REGULAR_SPEND",
    "STABLE",
    "START",
    "Persona",
    "Simulator",
    "holder_name",
]

START = datetime(2025, 1, 1, tzinfo=UTC)
WARM_UP_DAYS = 30
# Conversions and planted fraud happen after the warm-up and a month before the end: shorter
# periods have none.
PLANTED_MIN_DAYS = WARM_UP_DAYS + 91
CODE_ALPHABET = "".join(c for c in string.ascii_uppercase + string.digits if c not in "O0I1")
# The standard profile's shares (the figures before December 2026 were measured on these, with
# the pensioners still among the stable savers).
PERSONA_SHARES = STANDARD.shares

# Household payments: who collects them, and the share of customers who pay each.
UTILITY_SHARE = 0.85
INSURANCE_SHARE = 0.6
LOAN_SHARE = 0.25
# Customers who switch a utility supplier during the period: a direct debit cancelled and
# another given, which is not moving banks.
SUPPLIER_SWITCH_SHARE = 0.08
LOCALES = (
    (None, 0.2),
    ("zh-CN", 0.45),
    ("en", 0.08),
    ("zh-HK", 0.08),
    ("zh-TW", 0.05),
    ("en-GB", 0.04),
    ("de-AT", 0.05),
    ("cs-CZ", 0.05),
)
# A silence of the customer's own transactions this long is one the bank should notice (the
# rules' inactivity signal fires at 45 days); shorter ones are holidays.
QUIET_DAYS = 50


class Simulator:
    """Generates one population. Use `run()`; the object holds the shared counterparty pools."""

    def __init__(
        self,
        customers: int,
        days: int,
        seed: int,
        start: datetime = START,
        profile: Profile | str = STANDARD,
    ) -> None:
        self.rng = random.Random(seed)
        self.profile = profile_named(profile) if isinstance(profile, str) else profile
        self.customers = customers
        self.days = days
        self.seed = seed
        self.start = start
        self.end = start + timedelta(days=days)
        self.warm_up = WARM_UP_DAYS
        self.books: dict[str, Book] = {}
        self.truth = Truth(
            seed=seed,
            profile=self.profile.name,
            population=customers,
            days=days,
            start=start,
            end=self.end,
            evaluate_from=start + timedelta(days=WARM_UP_DAYS),
            own_bank=OWN_BANK,
        )
        n_employers = max(customers // 25, 3)
        self.employers = [
            self.counterparty("business", f"Employer {i}") for i in range(n_employers)
        ]
        # Payroll systems that mark the salary as such (the others send a plain transfer), the
        # day of the month each pays on, and those whose payroll run moves in some months.
        self.marks_salary = {e.account: self.rng.random() < 0.6 for e in self.employers}
        self.payday_of = {e.account: self.rng.randrange(5, 26) for e in self.employers}
        self.shifting = {
            e.account
            for e in self.employers
            if self.rng.random() < self.profile.pay_shift_employers
        }
        # Pension funds (government): most mark the credit as a pension, each pays on its day.
        self.pension_funds = [
            self.counterparty("government", f"Social Security Fund {i}") for i in range(3)
        ]
        self.marks_salary.update({f.account: self.rng.random() < 0.7 for f in self.pension_funds})
        self.payday_of.update({f.account: self.rng.randrange(5, 21) for f in self.pension_funds})
        self.utilities = [self.counterparty("business", f"Utility {i}") for i in range(4)]
        self.telecoms = [self.counterparty("business", f"Telecom {i}") for i in range(3)]
        self.insurers = [self.counterparty("business", f"Insurer {i}") for i in range(4)]
        self.lenders = [self.counterparty("business", f"Lender {i}") for i in range(3)]
        self.suppliers = [
            self.counterparty("business", f"Supplier {i}") for i in range(max(customers // 50, 2))
        ]
        self.schools = [
            self.counterparty("business", f"School {i}") for i in range(max(customers // 60, 2))
        ]
        # Few enough landlords that some are paid by two customers: the chain links them.
        self.landlords = [
            self.counterparty("person", f"Landlord {i}") for i in range(max(customers // 4, 2))
        ]
        # Our customers' relatives at other banks: prospects too (亲友转介), each known to one
        # customer.
        self.relatives: list[SyntheticCounterparty] = []
        self.codes: dict[str, str] = {}
        self.phone_of: dict[str, str] = {}
        self.locale_of: dict[str, str | None] = {}
        # Payroll runs that moved: (payer account, year, month) -> days.
        self._shifts: dict[tuple[str, int, int], int] = {}
        self._shift_rng = random.Random(f"{seed}:{self.profile.name}:payroll")

    # --- building blocks ------------------------------------------------------------------

    def counterparty(self, kind: str, name: str) -> SyntheticCounterparty:
        """A new account at another bank. Most feeds give a bank code and an account, and a
        name; few say what kind it is."""
        return SyntheticCounterparty(
            bank_code=self.rng.choice(OTHER_BANKS),
            account=f"62{self.rng.randrange(10**14, 10**15)}",
            name=name,
            kind=kind,
            declared=self.rng.random() < 0.3,
        )

    def _hash(self) -> str:
        return "".join(self.rng.choices(string.ascii_letters + string.digits, k=24))

    def code_for(self, customer_id: str) -> str:
        """The customer's referral code, made on first use and listed in the truth."""
        if customer_id not in self.codes:
            code = "".join(self.rng.choices(CODE_ALPHABET, k=8))
            self.codes[customer_id] = code
            self.truth.codes[code] = customer_id
        return self.codes[customer_id]

    def at(self, day: datetime, hour_from: int = 8, hour_to: int = 21) -> datetime:
        """A time of that day between the hours."""
        return day + timedelta(
            hours=self.rng.randrange(hour_from, hour_to), minutes=self.rng.randrange(60)
        )

    def _profile(
        self, book: Book, at: datetime, phone: str | None = None, device: str | None = None
    ) -> None:
        rng = self.rng
        phone = phone or self._hash()
        self.phone_of[book.customer_id] = phone
        locale = rng.choices([loc for loc, _ in LOCALES], [w for _, w in LOCALES])[0]
        profile: dict[str, Any] = {
            "name": holder_name(book.customer_id),
            "time_zone": rng.choice(["Asia/Shanghai"] * 4 + ["Europe/London"]),
            "rm_id": f"RM{rng.randrange(1, 25):03d}" if rng.random() < 0.3 else None,
            "consent": {"push": True, "sms": rng.random() < 0.8, "email": rng.random() < 0.5},
            "phone_hash": phone,
            "device_hashes": [device or self._hash()],
            "birthday": birthday(book.customer_id),
        }
        if locale is not None:
            profile["locale"] = locale
        self.locale_of[book.customer_id] = locale
        book.emit("customer.updated", at + timedelta(minutes=5), profile=profile)

    def new_book(self, index: int) -> Book:
        """The book of customer number `index`."""
        book = Book(f"C{index:06d}", self.end)
        self.books[book.customer_id] = book
        return book

    def onboard(
        self,
        book: Book,
        opened: datetime,
        deposit: Decimal,
        code: str | None = None,
        phone: str | None = None,
        device: str | None = None,
    ) -> None:
        """An account opened, the customer's profile, and a first deposit."""
        book.open(opened, channel=self.rng.choice(["branch", "mobile"]), code=code)
        self._profile(book, opened, phone, device)
        book.move("deposit", opened + timedelta(minutes=30), deposit, "branch")

    # --- income -------------------------------------------------------------------------------

    def paydays(self, day: int, payer: SyntheticCounterparty | None) -> list[datetime]:
        """The days a monthly income arrives in the period: `day` of each month; for a payroll
        or pension run, moved to the banking day before when it falls on a weekend, and, for
        employers whose run moves, a few days earlier or later in some months."""
        found = []
        for year, month in months(self.start - timedelta(days=31), self.end):
            nominal = day_of_month(year, month, day)
            if payer is not None:
                nominal = banking_day(nominal + timedelta(days=self._shift(payer, year, month)))
            if self.start - timedelta(days=31) <= nominal < self.end:
                found.append(nominal)
        return found

    def _shift(self, payer: SyntheticCounterparty, year: int, month: int) -> int:
        """How many days the payer's run moved that month: the same for all its customers."""
        if payer.account not in self.shifting:
            return 0
        key = (payer.account, year, month)
        if key not in self._shifts:
            rng, profile = self._shift_rng, self.profile
            moved = rng.random() < profile.pay_shift_months
            days = rng.randint(1, profile.pay_shift_days) * rng.choice((-1, 1)) if moved else 0
            self._shifts[key] = days
        return self._shifts[key]

    def _income(self, life: Life, payer: SyntheticCounterparty) -> None:
        """A payer's monthly credit on its paydays, marked as its system marks it."""
        life.payer = payer
        life.paydays = self.paydays(self.payday_of[payer.account], payer)
        if self.marks_salary[payer.account]:
            life.income_purpose = "pension" if payer.kind == "government" else "salary"

    # --- everyday life ----------------------------------------------------------------------

    def days_between(self, first: datetime, last: datetime) -> Iterator[datetime]:
        """Every day (midnight) from the one of `first` to before `last`, within the period."""
        day = max(first, self.start).replace(hour=0, minute=0, second=0, microsecond=0)
        while day < min(last, self.end):
            yield day
            day += timedelta(days=1)

    def everyday(self, book: Book, first: datetime, last: datetime, life: Life) -> None:
        """The household's banking from `first` to `last` (services/simulator/life.py)."""
        live(self, book, first, last, life)

    # --- personas ---------------------------------------------------------------------------

    def _established_open(self, book: Book, deposit: Decimal) -> datetime:
        opened = self.start - timedelta(
            days=self.rng.randrange(200, 2000), hours=-self.rng.randrange(9, 17)
        )
        self.onboard(book, opened, deposit)
        for n in range(3):
            book.move("card.payment", opened + timedelta(days=n + 1, hours=2), Decimal(50), "pos")
        return opened

    def _salaried_terms(
        self,
    ) -> tuple[Decimal, SyntheticCounterparty, Decimal, SyntheticCounterparty]:
        salary = Decimal(self.rng.randrange(6_000, 30_000))
        rent = (salary * Decimal(self.rng.uniform(0.2, 0.35))).quantize(CENT)
        return salary, self.rng.choice(self.employers), rent, self.rng.choice(self.landlords)

    def _family(self, share: float = 0.3) -> SyntheticCounterparty | None:
        return self.relative() if self.rng.random() < share else None

    def relative(self) -> SyntheticCounterparty:
        """A relative of a customer, banking elsewhere."""
        relative = self.counterparty("person", "Family")
        self.relatives.append(relative)
        return relative

    def wage_earner(self, book: Book) -> tuple[datetime, Life]:
        """A salaried household: the salary on the employer's payday, rent, bills sized to it,
        and a buffer at the month's low of half a month's salary to a month's (a third to a
        half of the peak)."""
        rng = self.rng
        salary, employer, rent, landlord = self._salaried_terms()
        buffer = (salary * Decimal(rng.uniform(0.5, 1.0))).quantize(CENT)
        # The period starts part way through a pay cycle: what is left of the last salary is
        # on the account with the buffer.
        paid = self.paydays(self.payday_of[employer.account], employer)
        first_pay = min((p for p in paid if p >= self.start), default=self.end)
        left = salary * Decimal(min((first_pay - self.start).days / MONTH_DAYS, 1.0))
        opened = self._established_open(book, (buffer + left).quantize(CENT) + 150)
        household.set_up(self, book, opened, salary, rent, landlord, borrower=True)
        life = Life(
            income=salary,
            rent=rent,
            landlord=landlord,
            family=self._family(),
            spend=0.1,
            buffer=buffer,
            cash=rng.random() < self.profile.cash_share,
        )
        self._income(life, employer)
        life.size_spending(book)
        return opened, life

    def seasons(self, book: Book, life: Life, truth: CustomerTruth, *, bonus: bool) -> None:
        """The year's holidays and seasonal events; a one-off large payment and a month of
        reduced pay for some of the stable customers."""
        profile = self.profile
        school = bonus and self.rng.random() < profile.school_share
        one_off = truth.stable and self.rng.random() < profile.one_off_share
        truth.one_off_at = year_events(
            self, book, life, bonus=bonus, school=school, one_off=one_off
        )
        truth.holidays = list(life.holidays)
        paydays = [
            p for p in life.paydays if self.truth.evaluate_from <= p < self.end - timedelta(days=30)
        ]
        share = profile.reduced_pay_share
        if share and truth.stable and life.payer and paydays and self.rng.random() < share:
            payday = self.rng.choice(paydays)
            paid = Decimal(self.rng.uniform(*profile.reduced_pay)).quantize(CENT)
            life.reduced_pay[payday.date()] = paid
            truth.reduced_pay_at = payday

    def _persona(self, book: Book, persona: Persona) -> CustomerTruth:
        rng = self.rng
        truth = CustomerTruth(persona=persona.value, stable=persona in STABLE)
        if persona is Persona.STABLE_SAVER:
            deposit = Decimal(rng.randrange(8_000, 40_000))
            opened = self._established_open(book, deposit)
            saving = Decimal(rng.randrange(1_500, 5_000))
            household.set_up(self, book, opened, saving / 2)
            household.maybe_switch_supplier(self, book)
            # Pays in each month (day 15) and keeps a buffer: the low-to-peak ratio varies.
            life = Life(
                income=saving,
                paydays=self.paydays(15, None),
                spend=0.07,
                login=0.04,
                family=self._family(),
                buffer=deposit * Decimal(rng.uniform(0.8, 1.0)),
                thrift=rng.uniform(0.1, 0.35),
                cash=rng.random() < self.profile.cash_share,
            )
            life.size_spending(book)
            self.seasons(book, life, truth, bonus=False)
            self.everyday(book, self.start, self.end, life)
        elif persona is Persona.PENSIONER:
            # A monthly pension from a government fund, marked as such by most funds; savings
            # kept as a buffer; more cash, fewer logins.
            pension = Decimal(rng.randrange(2_500, 8_000))
            deposit = (pension * Decimal(rng.uniform(1, 6))).quantize(CENT)
            opened = self._established_open(book, deposit)
            household.set_up(self, book, opened, pension)
            household.maybe_switch_supplier(self, book)
            life = Life(
                income=pension,
                spend=0.06,
                login=0.015,
                family=self._family(0.5),
                buffer=deposit,
                thrift=rng.uniform(0.05, 0.2),
                cash=rng.random() < min(self.profile.cash_share * 1.5, 1.0),
            )
            self._income(life, rng.choice(self.pension_funds))
            life.size_spending(book)
            self.seasons(book, life, truth, bonus=False)
            self.everyday(book, self.start, self.end, life)
        elif persona in (Persona.SALARIED, Persona.GROWING):
            opened, life = self.wage_earner(book)
            household.maybe_switch_supplier(self, book)
            self.seasons(book, life, truth, bonus=True)
            self.everyday(book, self.start, self.end, life)
            if persona is Persona.GROWING:
                for n, category in enumerate(("credit_card", "fund", "term_deposit")):
                    at = self.at(
                        self.start + timedelta(days=rng.randrange(20, max(self.days - 20, 21)))
                    )
                    book.emit(
                        "product.opened",
                        at,
                        product={"product_id": f"P{book.customer_id[1:]}{n}", "category": category},
                    )
        elif persona is Persona.HIGH_NET_WORTH:
            deposit = Decimal(rng.randrange(1_200_000, 5_000_000))
            opened = self._established_open(book, deposit)
            for n, category in enumerate(("wealth_management", "private_banking")):
                book.emit(
                    "product.opened",
                    opened + timedelta(days=n + 2),
                    product={"product_id": f"P{book.customer_id[1:]}{n}", "category": category},
                )
            saving = Decimal(rng.randrange(20_000, 80_000))
            household.set_up(self, book, opened, saving)
            life = Life(
                income=saving,
                paydays=self.paydays(15, None),
                spend=0.08,
                login=0.06,
                supplier=rng.choice(self.suppliers),
                buffer=deposit * Decimal(rng.uniform(0.8, 1.0)),
                thrift=rng.uniform(0.2, 0.5),
            )
            life.size_spending(book)
            self.seasons(book, life, truth, bonus=False)
            self.everyday(book, self.start, self.end, life)
        elif persona is Persona.LATE_JOINER:
            opened = self.at(self.start + timedelta(days=rng.randrange(0, max(self.days - 30, 1))))
            self.onboard(book, opened, Decimal(rng.randrange(200, 900)))
            salary, employer, _, _ = self._salaried_terms()
            household.set_up(self, book, opened + timedelta(days=rng.randrange(3, 20)), salary)
            # A new account builds its buffer from the first salaries.
            life = Life(
                income=salary,
                spend=0.08,
                buffer=(salary * Decimal(rng.uniform(0.3, 0.8))).quantize(CENT),
                cash=rng.random() < self.profile.cash_share,
            )
            self._income(life, employer)
            life.size_spending(book)
            self.seasons(book, life, truth, bonus=False)
            self.everyday(book, opened + timedelta(days=2), self.end, life)
        elif persona is Persona.NEVER_ACTIVE:
            opened = self.at(self.start + timedelta(days=rng.randrange(0, max(self.days - 30, 1))))
            self.onboard(book, opened, Decimal(rng.randrange(10, 300)))
            # Nothing more of the customer's own; the bank's postings go on.
            self.everyday(book, opened + timedelta(days=1), self.end, Life(spend=0, login=0))
        else:
            opened, churn = churners.churner(self, book, persona, truth)
            truth.churn = churn
            truth.moved_money = persona is Persona.CHURN_COMPETITOR
        truth.opened_at = opened
        return truth

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> tuple[list[dict[str, Any]], Truth]:
        """Every customer's events (unordered) and the truth."""
        # Exact quotas, shuffled: every population has its share of each persona.
        shares = self.profile.shares
        personas = [p for p, share in shares for _ in range(round(share * self.customers))]
        personas += [Persona.SALARIED] * (self.customers - len(personas))
        self.rng.shuffle(personas)
        for index, persona in enumerate(personas[: self.customers]):
            book = self.new_book(index)
            self.truth.customers[book.customer_id] = self._persona(book, persona)
        if self.days >= PLANTED_MIN_DAYS:
            next_index = planted.conversions(self, self.customers)
            planted.fraud(self, next_index)
        for customer_id, book in self.books.items():
            self._quiet_truth(book, self.truth.customers[customer_id])
            self.truth.customers[customer_id].locale = self.locale_of.get(customer_id)
        events = [e for book in self.books.values() for e in book.events]
        return events, self.truth

    def _quiet_truth(self, book: Book, truth: CustomerTruth) -> None:
        """The customer's last silence of their own transactions of at least QUIET_DAYS (to
        the next one, the closure or the end) in the scored period, and whether the bank's
        postings kept coming meanwhile."""
        closed = [
            datetime.fromisoformat(e["occurred_at"])
            for e in book.events
            if e["event_type"] == "account.closed"
        ]
        until = max(closed) if closed and not book.accounts else self.end
        own = book.own_transactions(until)
        gaps = [
            (a, b)
            for a, b in itertools.pairwise([*own, until])
            if b - a >= timedelta(days=QUIET_DAYS)
            and a + timedelta(days=QUIET_DAYS) >= self.truth.evaluate_from
        ]
        if not gaps:
            return
        start, end = gaps[-1]
        truth.quiet_from = start
        truth.postings_while_quiet = any(
            start < datetime.fromisoformat(e["occurred_at"]) < end
            and (e["event_type"] in ("interest.credited", "fee.charged") or "mandate_id" in e)
            for e in book.events
        )
