"""A synthetic bank population with the truth behind it.

Each customer follows a persona: a stable saver, a salaried customer, a growing customer who
adds products, a high-net-worth customer, a late joiner who never gets going, or a churner of
one of the four causes. Customers pay and are paid by counterparties at other banks (employers,
landlords, family, suppliers); some of those counterparties open an account later, with or
without a referral code, and a few referrals are fraudulent on purpose. Pure: the same seed
gives the same events and truth, with no I/O.

The established customers (all but the late joiners and the converted counterparties) opened
their accounts before the simulated period, with a short onboarding burst then; what happens
between that and the period's start is not simulated. Rules that look at the past (inactivity,
activation) therefore fire on that gap, dated before the period: the evaluator counts from
`Truth.evaluate_from` on, like a bank measuring a system after its initial load.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from services.simulator.book import CENT, Book, StandingPayment, money
from services.simulator.truth import (
    ChurnTruth,
    Conversion,
    CustomerTruth,
    FraudCase,
    SyntheticCounterparty,
    Truth,
)

OWN_BANK = "RAPPORTBANK"
OTHER_BANKS = ("ICBC", "CCB", "ABC", "BOC", "CMB", "SPDB")
START = datetime(2025, 1, 1, tzinfo=UTC)
WARM_UP_DAYS = 30
# Conversions and planted fraud happen after the warm-up and a month before the end: shorter
# periods have none.
PLANTED_MIN_DAYS = WARM_UP_DAYS + 91
CODE_ALPHABET = "".join(c for c in string.ascii_uppercase + string.digits if c not in "O0I1")


class Persona(StrEnum):
    STABLE_SAVER = "stable_saver"
    SALARIED = "salaried"
    GROWING = "growing"
    HIGH_NET_WORTH = "high_net_worth"
    LATE_JOINER = "late_joiner"
    NEVER_ACTIVE = "never_active"
    CHURN_COMPETITOR = "churn_competitor_attraction"
    CHURN_DISSATISFIED = "churn_service_dissatisfaction"
    CHURN_DISTRESS = "churn_financial_distress"
    CHURN_DISENGAGED = "churn_disengagement"
    CONVERTED = "converted_counterparty"


CHURN_CAUSE = {
    Persona.CHURN_COMPETITOR: "competitor_attraction",
    Persona.CHURN_DISSATISFIED: "service_dissatisfaction",
    Persona.CHURN_DISTRESS: "financial_distress",
    Persona.CHURN_DISENGAGED: "disengagement",
}

# Share of the population per persona; converted counterparties come on top.
PERSONA_SHARES: tuple[tuple[Persona, float], ...] = (
    (Persona.STABLE_SAVER, 0.20),
    (Persona.SALARIED, 0.28),
    (Persona.GROWING, 0.12),
    (Persona.HIGH_NET_WORTH, 0.03),
    (Persona.LATE_JOINER, 0.10),
    (Persona.NEVER_ACTIVE, 0.05),
    (Persona.CHURN_COMPETITOR, 0.06),
    (Persona.CHURN_DISSATISFIED, 0.06),
    (Persona.CHURN_DISTRESS, 0.05),
    (Persona.CHURN_DISENGAGED, 0.05),
)
STABLE = frozenset(
    {Persona.STABLE_SAVER, Persona.SALARIED, Persona.GROWING, Persona.HIGH_NET_WORTH}
)

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
# From this daily rate of card payments on, a customer shops weekly.
REGULAR_SPEND = 0.05
# A silence of the customer's own transactions this long is one the bank should notice (the
# rules' inactivity signal fires at 45 days); shorter ones are holidays.
QUIET_DAYS = 50
SURNAMES = ("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou")
GIVEN_NAMES = ("Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yan", "Tao", "Ping", "Hui", "Jun")


class Simulator:
    """Generates one population. Use `run()`; the object holds the shared counterparty pools."""

    def __init__(self, customers: int, days: int, seed: int, start: datetime = START) -> None:
        self.rng = random.Random(seed)
        self.customers = customers
        self.days = days
        self.seed = seed
        self.start = start
        self.end = start + timedelta(days=days)
        self.books: dict[str, Book] = {}
        self.truth = Truth(
            seed=seed,
            population=customers,
            days=days,
            start=start,
            end=self.end,
            evaluate_from=start + timedelta(days=WARM_UP_DAYS),
            own_bank=OWN_BANK,
        )
        n_employers = max(customers // 25, 3)
        self.employers = [
            self._counterparty("business", f"Employer {i}") for i in range(n_employers)
        ]
        # Payroll systems that mark the salary as such (the others send a plain transfer).
        self.marks_salary = {e.account: self.rng.random() < 0.6 for e in self.employers}
        self.utilities = [self._counterparty("business", f"Utility {i}") for i in range(4)]
        self.telecoms = [self._counterparty("business", f"Telecom {i}") for i in range(3)]
        self.insurers = [self._counterparty("business", f"Insurer {i}") for i in range(4)]
        self.lenders = [self._counterparty("business", f"Lender {i}") for i in range(3)]
        self.suppliers = [
            self._counterparty("business", f"Supplier {i}") for i in range(max(customers // 50, 2))
        ]
        # Few enough landlords that some are paid by two customers: the chain links them.
        self.landlords = [
            self._counterparty("person", f"Landlord {i}") for i in range(max(customers // 4, 2))
        ]
        self.codes: dict[str, str] = {}
        self.phone_of: dict[str, str] = {}
        self.locale_of: dict[str, str | None] = {}

    # --- building blocks ------------------------------------------------------------------

    def _counterparty(self, kind: str, name: str) -> SyntheticCounterparty:
        # Most feeds give a bank code and an account, and a name; few say what kind it is.
        return SyntheticCounterparty(
            bank_code=self.rng.choice(OTHER_BANKS),
            account=f"62{self.rng.randrange(10**14, 10**15)}",
            name=name,
            kind=kind,
            declared=self.rng.random() < 0.3,
        )

    def _hash(self) -> str:
        return "".join(self.rng.choices(string.ascii_letters + string.digits, k=24))

    def _code_for(self, customer_id: str) -> str:
        if customer_id not in self.codes:
            code = "".join(self.rng.choices(CODE_ALPHABET, k=8))
            self.codes[customer_id] = code
            self.truth.codes[code] = customer_id
        return self.codes[customer_id]

    def _at(self, day: datetime, hour_from: int = 8, hour_to: int = 21) -> datetime:
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
            "birthday": _birthday(book.customer_id),
        }
        if locale is not None:
            profile["locale"] = locale
        self.locale_of[book.customer_id] = locale
        book.emit("customer.updated", at + timedelta(minutes=5), profile=profile)

    def _new_book(self, index: int) -> Book:
        book = Book(f"C{index:06d}", self.end)
        self.books[book.customer_id] = book
        return book

    def _onboard(
        self,
        book: Book,
        opened: datetime,
        deposit: Decimal,
        code: str | None = None,
        phone: str | None = None,
        device: str | None = None,
    ) -> None:
        book.open(opened, channel=self.rng.choice(["branch", "mobile"]), code=code)
        self._profile(book, opened, phone, device)
        book.move("deposit", opened + timedelta(minutes=30), deposit, "branch")

    def _household(
        self,
        book: Book,
        at: datetime,
        income: Decimal,
        rent: Decimal | None = None,
        landlord: SyntheticCounterparty | None = None,
        borrower: bool = False,
    ) -> None:
        """The standing orders and direct debits a household ties to its account, sized to
        its monthly income: rent (a standing order for most), utilities, a phone, insurance,
        a loan instalment for some borrowers."""
        rng = self.rng

        def share(low: float, high: float, floor: int) -> Decimal:
            return max(income * Decimal(rng.uniform(low, high)), Decimal(floor)).quantize(CENT)

        payments: list[tuple[str, SyntheticCounterparty, Decimal, str, int | None]] = []
        if rent is not None and landlord is not None and rng.random() < 0.7:
            payments.append(("standing_order", landlord, rent, "rent", None))
        if rng.random() < UTILITY_SHARE:
            utility = rng.choice(self.utilities)
            payments.append(("direct_debit", utility, share(0.02, 0.05, 60), "utilities", None))
            phone = rng.choice(self.telecoms)
            payments.append(("direct_debit", phone, share(0.005, 0.015, 30), "bill", None))
        if rng.random() < INSURANCE_SHARE:
            insurer = rng.choice(self.insurers)
            if rng.random() < 0.3:
                premium, month = share(0.2, 0.5, 500), rng.randrange(1, 13)
            else:
                premium, month = share(0.02, 0.05, 50), None
            payments.append(("direct_debit", insurer, premium, "insurance", month))
        if borrower and rng.random() < LOAN_SHARE:
            lender = rng.choice(self.lenders)
            payments.append(("direct_debit", lender, share(0.1, 0.25, 500), "loan_repayment", None))
        for n, (kind, payee, amount, purpose, month) in enumerate(payments):
            payment = StandingPayment(
                mandate_id=f"M{book.customer_id[1:]}-{len(book.mandates) + n + 1}",
                kind=kind,  # type: ignore[arg-type]
                payee=payee,
                amount=amount,
                day=1 if purpose == "rent" else rng.randrange(2, 28),
                purpose=purpose,
                month=month,
            )
            book.set_up(at + timedelta(days=n + 1, hours=1), payment)

    def _maybe_switch_supplier(self, book: Book) -> None:
        if self.rng.random() < SUPPLIER_SWITCH_SHARE:
            self._switch_supplier(book)

    def _switch_supplier(self, book: Book) -> None:
        """A household changes its electricity or phone supplier: the old direct debit is
        cancelled and a new one given, days apart. Not a customer leaving the bank."""
        switchable = [m for m in book.mandates.values() if m.purpose in ("utilities", "bill")]
        if not switchable:
            return
        old = self.rng.choice(switchable)
        at = self._at(self.start + timedelta(days=self.rng.randrange(WARM_UP_DAYS, self.days)))
        pool = self.utilities if old.purpose == "utilities" else self.telecoms
        new = StandingPayment(
            mandate_id=f"{old.mandate_id}-new",
            kind="direct_debit",
            payee=self.rng.choice([p for p in pool if p != old.payee] or pool),
            amount=old.amount,
            day=old.day,
            purpose=old.purpose,
        )
        given = at + timedelta(days=self.rng.randrange(0, 10), hours=1)
        book.plan(at, functools.partial(book.cancel, at, old.mandate_id))
        book.plan(given, functools.partial(book.set_up, given, new))

    # --- everyday life ----------------------------------------------------------------------

    def _days(self, first: datetime, last: datetime) -> Iterator[datetime]:
        day = max(first, self.start).replace(hour=0, minute=0, second=0, microsecond=0)
        while day < min(last, self.end):
            yield day
            day += timedelta(days=1)

    def _everyday(
        self,
        book: Book,
        first: datetime,
        last: datetime,
        *,
        salary: Decimal | None = None,
        employer: SyntheticCounterparty | None = None,
        rent: Decimal | None = None,
        landlord: SyntheticCounterparty | None = None,
        spend: float = 0.05,
        login: float = 0.05,
        saving: Decimal | None = None,
        family: SyntheticCounterparty | None = None,
        supplier: SyntheticCounterparty | None = None,
    ) -> None:
        """Ordinary banking from `first` to `last`: payroll, rent, card spending, saving,
        logins and a month-end balance snapshot."""
        rng = self.rng
        payday = rng.randrange(5, 26)
        pays_rent_by_hand = not any(m.purpose == "rent" for m in book.mandates.values())
        card_holder = spend > 0
        # Customers who use the account for everyday spending shop weekly (a week in seven
        # or so skipped: holidays, another card), with other payments between.
        shop_day = rng.randrange(7) if spend >= REGULAR_SPEND else None
        for day in self._days(first, last):
            book.collect(day)
            if salary is not None and employer is not None and day.day == payday:
                marked = {"purpose": "salary"} if self.marks_salary[employer.account] else {}
                book.move("transfer.in", self._at(day, 9, 11), salary, "system", employer, **marked)
            if rent is not None and landlord is not None and day.day == 1 and pays_rent_by_hand:
                book.move("transfer.out", self._at(day), rent, "mobile", landlord)
            if saving is not None and day.day == 15:
                book.move("deposit", self._at(day), saving * Decimal(rng.uniform(0.7, 1.3)), "atm")
            weekly = day.weekday() == shop_day and rng.random() < 0.85
            if weekly or rng.random() < spend / 2:
                amount = Decimal(rng.randrange(30, 900))
                book.move(
                    "card.payment",
                    self._at(day),
                    amount,
                    "pos",
                    attributes={"mcc": rng.choice(["5411", "5812", "4111", "5999"])},
                )
            if family is not None and rng.random() < 0.015:
                # Mostly support sent home; now and then a gift back.
                kind = "transfer.in" if rng.random() < 0.2 else "transfer.out"
                book.move(kind, self._at(day), Decimal(rng.randrange(200, 3000)), "mobile", family)
            if supplier is not None and rng.random() < 0.03:
                book.move(
                    "transfer.out",
                    self._at(day),
                    Decimal(rng.randrange(20_000, 120_000)),
                    "online",
                    supplier,
                )
            if rng.random() < login:
                book.emit(
                    "digital.login",
                    self._at(day),
                    channel=rng.choice(["mobile", "mobile", "online"]),
                )
            if (day + timedelta(days=1)).month != day.month and book.accounts:
                book.post_month_end(day, card_holder)
                book.emit(
                    "balance.snapshot",
                    day + timedelta(hours=23, minutes=59),
                    account_id=book.account,
                    balance_after=money(book.balance),
                    currency="CNY",
                    channel="system",
                )

    # --- personas ---------------------------------------------------------------------------

    def _established_open(self, book: Book, deposit: Decimal) -> datetime:
        opened = self.start - timedelta(
            days=self.rng.randrange(200, 2000), hours=-self.rng.randrange(9, 17)
        )
        self._onboard(book, opened, deposit)
        for n in range(3):
            book.move("card.payment", opened + timedelta(days=n + 1, hours=2), Decimal(50), "pos")
        return opened

    def _salaried_terms(
        self,
    ) -> tuple[Decimal, SyntheticCounterparty, Decimal, SyntheticCounterparty]:
        salary = Decimal(self.rng.randrange(6_000, 30_000))
        rent = (salary * Decimal(self.rng.uniform(0.2, 0.35))).quantize(CENT)
        return salary, self.rng.choice(self.employers), rent, self.rng.choice(self.landlords)

    def _family(self) -> SyntheticCounterparty | None:
        return self._counterparty("person", "Family") if self.rng.random() < 0.3 else None

    def _persona(self, book: Book, persona: Persona) -> CustomerTruth:
        rng = self.rng
        truth = CustomerTruth(persona=persona.value, stable=persona in STABLE)
        if persona is Persona.STABLE_SAVER:
            opened = self._established_open(book, Decimal(rng.randrange(8_000, 40_000)))
            saving = Decimal(rng.randrange(1_500, 5_000))
            self._household(book, opened, saving / 2)
            self._maybe_switch_supplier(book)
            self._everyday(
                book,
                self.start,
                self.end,
                saving=saving,
                spend=0.07,
                login=0.04,
                family=self._family(),
            )
        elif persona in (Persona.SALARIED, Persona.GROWING):
            salary, employer, rent, landlord = self._salaried_terms()
            opened = self._established_open(book, salary * 4)
            self._household(book, opened, salary, rent, landlord, borrower=True)
            self._maybe_switch_supplier(book)
            self._everyday(
                book,
                self.start,
                self.end,
                salary=salary,
                employer=employer,
                rent=rent,
                landlord=landlord,
                family=self._family(),
                spend=0.1,
            )
            if persona is Persona.GROWING:
                for n, category in enumerate(("credit_card", "fund", "term_deposit")):
                    at = self._at(
                        self.start + timedelta(days=rng.randrange(20, max(self.days - 20, 21)))
                    )
                    book.emit(
                        "product.opened",
                        at,
                        product={"product_id": f"P{book.customer_id[1:]}{n}", "category": category},
                    )
        elif persona is Persona.HIGH_NET_WORTH:
            opened = self._established_open(book, Decimal(rng.randrange(1_200_000, 5_000_000)))
            for n, category in enumerate(("wealth_management", "private_banking")):
                book.emit(
                    "product.opened",
                    opened + timedelta(days=n + 2),
                    product={"product_id": f"P{book.customer_id[1:]}{n}", "category": category},
                )
            saving = Decimal(rng.randrange(20_000, 80_000))
            self._household(book, opened, saving)
            self._everyday(
                book,
                self.start,
                self.end,
                saving=saving,
                spend=0.08,
                login=0.06,
                supplier=rng.choice(self.suppliers),
            )
        elif persona is Persona.LATE_JOINER:
            opened = self._at(self.start + timedelta(days=rng.randrange(0, max(self.days - 30, 1))))
            self._onboard(book, opened, Decimal(rng.randrange(200, 900)))
            salary, employer, rent, landlord = self._salaried_terms()
            self._household(book, opened + timedelta(days=rng.randrange(3, 20)), salary)
            self._everyday(
                book,
                opened + timedelta(days=2),
                self.end,
                salary=salary,
                employer=employer,
                spend=0.08,
            )
        elif persona is Persona.NEVER_ACTIVE:
            opened = self._at(self.start + timedelta(days=rng.randrange(0, max(self.days - 30, 1))))
            self._onboard(book, opened, Decimal(rng.randrange(10, 300)))
            # Nothing more of the customer's own; the bank's postings go on.
            self._everyday(book, opened + timedelta(days=1), self.end, spend=0, login=0)
        else:
            opened, churn = self._churner(book, persona)
            truth.churn = churn
            truth.moved_money = persona is Persona.CHURN_COMPETITOR
        truth.opened_at = opened
        return truth

    def _churner(self, book: Book, persona: Persona) -> tuple[datetime, ChurnTruth]:
        """Ordinary life until the onset, then the cause's pattern, then closure."""
        rng = self.rng
        salary, employer, rent, landlord = self._salaried_terms()
        opened = self._established_open(book, salary * 4)
        self._household(book, opened, salary, rent, landlord, borrower=True)
        # Late enough to be scored, early enough that most churners close within the period
        # (a disengaged customer takes longest: fading, then months of silence).
        room = 200 if persona is Persona.CHURN_DISENGAGED else 110
        onset = self.start + timedelta(
            days=rng.randrange(WARM_UP_DAYS + 30, max(self.days - room, WARM_UP_DAYS + 31))
        )
        ordinary_life = functools.partial(
            self._everyday,
            book,
            salary=salary,
            employer=employer,
            rent=rent,
            landlord=landlord,
            spend=0.1,
        )
        ordinary_life(self.start, onset)
        payments_moved_at = None
        moving_mandates = len(book.mandates)
        if persona is Persona.CHURN_COMPETITOR:
            # The customer moves banks: the new bank takes over the standing orders and direct
            # debits (cancelled here within days of each other) and the salary; the savings
            # follow to the customer's own account there; then the account is closed.
            own_elsewhere = self._own_account_elsewhere(book)
            purpose = rng.choices(
                [{"purpose": "own_account"}, {"purpose": "savings"}, {}], [3, 2, 5]
            )[0]
            for mandate_id in list(book.mandates):
                at = self._at(onset + timedelta(days=rng.uniform(0, 8)))
                book.plan(at, functools.partial(book.cancel, at, mandate_id))
                payments_moved_at = min(payments_moved_at or at, at)
            moves_at = onset + timedelta(days=rng.randrange(12, 20))
            self._everyday(book, onset, moves_at, spend=0.06)
            for n in range(3):
                if book.balance > 100:
                    book.move(
                        "transfer.out",
                        self._at(moves_at + timedelta(days=3 * n)),
                        book.balance * Decimal("0.45"),
                        "mobile",
                        own_elsewhere,
                        **purpose,
                    )
            churn_at = moves_at + timedelta(days=rng.randrange(12, 30))
            self._everyday(book, moves_at + timedelta(days=9), churn_at, spend=0.03)
            book.move(
                "transfer.out",
                self._at(churn_at - timedelta(days=1)),
                book.balance,
                "mobile",
                own_elsewhere,
                **purpose,
            )
        elif persona is Persona.CHURN_DISSATISFIED:
            book.emit(
                "complaint.filed",
                self._at(onset),
                channel="call_center",
                attributes={"topic": rng.choice(["fees", "wait_time", "card_blocked"])},
            )
            if rng.random() < 0.6:
                book.emit(
                    "complaint.filed",
                    self._at(onset + timedelta(days=rng.randrange(5, 20))),
                    channel="branch",
                    attributes={"topic": "unresolved"},
                )
            drain_from = onset + timedelta(days=rng.randrange(7, 20))
            ordinary_life(onset, drain_from)
            churn_at = drain_from + timedelta(days=rng.randrange(20, 45))
            for n in range(4):
                at = self._at(drain_from + (churn_at - drain_from) * n / 4)
                book.move("withdrawal", at, book.balance * Decimal("0.5"), "branch")
            book.move("withdrawal", self._at(churn_at - timedelta(days=1)), book.balance, "branch")
        elif persona is Persona.CHURN_DISTRESS:
            # Hours cut: a smaller salary from the same employer, and spending that eats the
            # savings, with no transfers to other banks.
            churn_at = onset + timedelta(days=rng.randrange(50, 90))
            reduced = (salary * Decimal("0.4")).quantize(CENT)
            self._everyday(book, onset, churn_at, salary=reduced, employer=employer, spend=0)
            for day in self._days(onset, churn_at):
                if rng.random() < 0.25 and book.balance > 0:
                    book.move(
                        rng.choice(["withdrawal", "card.payment"]),
                        self._at(day),
                        max(book.balance * Decimal("0.08"), Decimal(200)),
                        "atm",
                    )
            book.move("withdrawal", self._at(churn_at - timedelta(days=1)), book.balance, "atm")
        else:
            # Logins and payments fade, then silence, then the account is closed.
            # The salary keeps arriving: only what the customer does falls away.
            silent_from = onset + timedelta(days=rng.randrange(20, 40))
            self._everyday(
                book, onset, silent_from, salary=salary, employer=employer, spend=0.02, login=0.01
            )
            churn_at = silent_from + timedelta(days=rng.randrange(60, 120))
            self._everyday(
                book, silent_from, churn_at, salary=salary, employer=employer, spend=0, login=0
            )
            book.move(
                "withdrawal", self._at(churn_at - timedelta(hours=2), 9, 10), book.balance, "branch"
            )
        churn_at = self._at(churn_at.replace(hour=0, minute=0, second=0, microsecond=0), 10, 16)
        if churn_at < self.end:
            book.close_all(churn_at)
        return opened, ChurnTruth(
            cause=CHURN_CAUSE[persona],
            onset=onset,
            churned_at=churn_at if churn_at < self.end else None,
            planned_at=churn_at,
            payments_moved_at=payments_moved_at if moving_mandates >= 2 else None,
        )

    def _own_account_elsewhere(self, book: Book) -> SyntheticCounterparty:
        """The customer's account at the bank they move to, as their payment orders name it:
        always in their own name (written as that bank writes it), now and then flagged as
        their own by a bank that knows it."""
        surname, given = holder_name(book.customer_id).split()
        name = self.rng.choice(
            [f"{surname} {given}", f"{given.upper()} {surname}", f"{surname}, {given}"]
        )
        return SyntheticCounterparty(
            bank_code=self.rng.choice(OTHER_BANKS),
            account=f"62{self.rng.randrange(10**14, 10**15)}",
            name=name,
            kind="person",
            declared=False,
            own_account=True if self.rng.random() < 0.3 else None,
        )

    # --- the transaction chain and referrals --------------------------------------------------

    def _chain_index(self) -> dict[str, list[tuple[str, str, Decimal]]]:
        """Per external account: (occurred_at, customer, amount) of every transfer with it."""
        index: dict[str, list[tuple[str, str, Decimal]]] = {}
        for book in self.books.values():
            for event in book.events:
                if "counterparty" in event:
                    index.setdefault(event["counterparty"]["account"], []).append(
                        (event["occurred_at"], book.customer_id, Decimal(event["amount"]))
                    )
        return index

    @staticmethod
    def _strongest_tie(transfers: list[tuple[str, str, Decimal]], until: datetime) -> str | None:
        """The customer with the strongest tie in the 90 days before `until`: most transactions,
        then amount (the referral rule's own definition of who introduced a prospect)."""
        since, until_iso = (until - timedelta(days=90)).isoformat(), until.isoformat()
        ties: dict[str, tuple[int, Decimal]] = {}
        for at, customer, amount in transfers:
            if since <= at < until_iso:
                count, total = ties.get(customer, (0, Decimal(0)))
                ties[customer] = (count + 1, total + amount)
        if not ties:
            return None
        return max(sorted(ties), key=lambda c: ties[c])

    def _conversions(self, next_index: int) -> int:
        """Some counterparties open an account: with the introducer's code, or without one,
        moving money in from the account our customers paid."""
        if self.days < PLANTED_MIN_DAYS:
            return next_index  # too short a period for a chain to form and convert
        rng = self.rng
        people = [c for c in self.landlords if rng.random() < 0.25]
        businesses = [c for c in self.suppliers + self.employers if rng.random() < 0.1]
        chain = self._chain_index()
        for counterparty in people + businesses:
            opened = self._at(
                self.start
                + timedelta(
                    days=rng.randrange(WARM_UP_DAYS + 60, max(self.days - 25, WARM_UP_DAYS + 61))
                )
            )
            funded_at = self._at(opened + timedelta(days=rng.randrange(2, 20)))
            # Who introduced the prospect: the strongest tie when its money moved over.
            introducer = self._strongest_tie(chain.get(counterparty.account, []), funded_at)
            if introducer is None:
                continue
            # An employer that moves to the bank comes through its corporate RM, with a code:
            # money from a payroll account to a new customer is a first salary (docs/referral.md).
            via_code = rng.random() < 0.5 or counterparty in self.employers
            code = self._code_for(introducer) if via_code else None
            book = self._new_book(next_index)
            next_index += 1
            self._onboard(book, opened, Decimal(rng.randrange(100, 800)), code=code)
            book.move(
                "transfer.in",
                funded_at,
                Decimal(rng.randrange(2_000, 30_000)),
                "online",
                counterparty,
            )
            self._everyday(book, opened + timedelta(days=3), self.end, spend=0.08, login=0.05)
            self.truth.customers[book.customer_id] = CustomerTruth(
                persona=Persona.CONVERTED.value,
                stable=False,
                opened_at=opened,
                referred_by=introducer,
            )
            self.truth.conversions.append(
                Conversion(
                    counterparty=counterparty,
                    customer_id=book.customer_id,
                    opened_at=opened,
                    introduced_by=introducer,
                    via="code" if via_code else "chain",
                    code=code,
                )
            )
        return next_index

    def _fraud(self, next_index: int) -> int:
        rng = self.rng
        established = [c for c, t in self.truth.customers.items() if t.stable]
        if len(established) < 3 or self.days < PLANTED_MIN_DAYS:
            return next_index
        # Self-referral: a customer opens a second identity with their own code and phone.
        referrer = rng.choice(established)
        book = self._new_book(next_index)
        next_index += 1
        self._onboard(
            book,
            self._some_day(),
            Decimal(1500),
            code=self._code_for(referrer),
            phone=self.phone_of[referrer],
        )
        self._fraud_truth("self_referral", referrer, [book.customer_id])
        # A refers B; A leaves, then comes back with B's code: two customers referring each other.
        a = rng.choice([c for c in established if c != referrer])
        b = self._new_book(next_index)
        next_index += 1
        b_opened = self._some_day()
        self._onboard(b, b_opened, Decimal(1500), code=self._code_for(a))
        returns_at = min(b_opened + timedelta(days=20), self.end - timedelta(days=2))
        a_book = self.books[a]
        if a_book.accounts:
            a_book.close_all(returns_at)
        a_book.open(returns_at + timedelta(days=1), code=self._code_for(b.customer_id))
        a_book.move("deposit", returns_at + timedelta(days=1, hours=1), Decimal(1500), "branch")
        self.truth.customers[a] = self.truth.customers[a].model_copy(
            update={"win_back": True, "stable": False}
        )
        self._fraud_truth("ring", a, [b.customer_id, a])
        # A referrer with an implausible burst: 14 referrals in under three weeks.
        burst_referrer = rng.choice([c for c in established if c not in (referrer, a)])
        burst_start = self._some_day()
        referees = []
        for n in range(14):
            ref = self._new_book(next_index)
            next_index += 1
            self._onboard(
                ref,
                burst_start + timedelta(days=n * 1.4),
                Decimal(1200),
                code=self._code_for(burst_referrer),
            )
            referees.append(ref.customer_id)
        self._fraud_truth("velocity", burst_referrer, referees)
        for cid in [book.customer_id, b.customer_id, *referees]:
            self.truth.customers[cid] = CustomerTruth(
                persona="fraud_referee",
                stable=False,
                opened_at=datetime.fromisoformat(self.books[cid].events[0]["occurred_at"]),
                referred_by=None,
            )
        return next_index

    def _some_day(self) -> datetime:
        """A random time after the warm-up, at least 30 days before the end."""
        latest = max(self.days - 30, WARM_UP_DAYS + 31)
        return self._at(self.start + timedelta(days=self.rng.randrange(WARM_UP_DAYS + 30, latest)))

    def _fraud_truth(self, pattern: str, referrer: str, referees: list[str]) -> None:
        self.truth.fraud.append(FraudCase(pattern=pattern, referrer=referrer, referees=referees))

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> tuple[list[dict[str, Any]], Truth]:
        """Every customer's events (unordered) and the truth."""
        # Exact quotas, shuffled: every population has its share of each persona.
        personas = [p for p, share in PERSONA_SHARES for _ in range(round(share * self.customers))]
        personas += [Persona.SALARIED] * (self.customers - len(personas))
        self.rng.shuffle(personas)
        for index, persona in enumerate(personas[: self.customers]):
            book = self._new_book(index)
            self.truth.customers[book.customer_id] = self._persona(book, persona)
        next_index = self._conversions(self.customers)
        self._fraud(next_index)
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


def holder_name(customer_id: str) -> str:
    """The account holder's name, derived from the id like the birthday (no generator draw)."""
    h = int(hashlib.sha256(b"name:" + customer_id.encode()).hexdigest()[:8], 16)
    return f"{SURNAMES[h % len(SURNAMES)]} {GIVEN_NAMES[h // len(SURNAMES) % len(GIVEN_NAMES)]}"


def _birthday(customer_id: str) -> str:
    """A birthday derived from the id, not drawn from the generator: adding it changed no other
    draw, so the population is the one earlier figures were measured on."""
    h = int(hashlib.sha256(customer_id.encode()).hexdigest()[:8], 16)
    return f"{1950 + h % 50}-{1 + h // 50 % 12:02d}-{1 + h // 600 % 28:02d}"
