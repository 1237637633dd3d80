"""A household's year on its current account, as banking practice describes it
(../shared/domain.md, "What a real current account looks like in a core-banking feed"):

- the monthly cycle: the salary or pension on a fixed day (the banking day before when that
  falls on a weekend), bills in the days after, spending that runs the balance down to a low
  that is a fraction of the peak, every month; households sized to their income keep a buffer
  at the low (a third to a half of the peak for most salaried households);
- the seasons: the Spring Festival's red packets, gifts and travel, a year-end bonus in January,
  school fees in September;
- holidays: one to three weeks without card spending, while standing orders and direct debits
  go on;
- a one-off large payment (a car, a flat's deposit, a notary, tuition) to another institution,
  after which life goes on.

None of these is churn: the rules must not take them for leaving. `Life` holds a household's
terms; `plan_spending` sizes a pay cycle's spending to what came in; `year_events` draws the
year's holidays and seasonal events.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING

from services.simulator.book import CENT, Book, money
from services.simulator.dates import banking_day, spring_festival
from services.simulator.profiles import Profile
from services.simulator.truth import SyntheticCounterparty

if TYPE_CHECKING:
    from services.simulator.population import Simulator

# From this daily rate of card payments on, a customer shops weekly and sizes spending to income.
REGULAR_SPEND = 0.05
# Average days in a month, to prorate a monthly budget over a cycle.
MONTH_DAYS = 30.4
# A cycle's spending closes part of the gap to the buffer (`CATCH_UP`), within these multiples
# of the usual: a household saves a large bill back over months, not by halving its spending.
LEAN_MONTH = 0.75
FREE_MONTH = 1.25
CATCH_UP = 0.4
# Gifts and trips are sized to what the household has: at most this share of the balance each.
WITHIN_MEANS = Decimal("0.5")
GROCERIES = "5411"
EVERYDAY_MCC = ("5812", "4111", "5999", "5311", "5541")
TRAVEL_MCC = ("4511", "4112", "7011", "4722")
GIFT_MCC = "5947"
ONE_OFF_PAYEES = ("Car dealer", "Property developer", "Notary office", "University")

# Something the household does at a time planned in advance: a movement on the book.
Act = Callable[[datetime], None]


@dataclass
class Life:
    """A household's terms on the account: its income, what it pays, how it spends, and the
    year's events by day."""

    # Monthly income: a salary or pension credited by `payer`, or (no payer) what the customer
    # pays in themselves, on each of `paydays`.
    income: Decimal | None = None
    payer: SyntheticCounterparty | None = None
    # The purpose the payer's system gives the credit (`salary`, `pension`), if it marks it.
    income_purpose: str | None = None
    paydays: list[datetime] = field(default_factory=list)
    rent: Decimal | None = None
    landlord: SyntheticCounterparty | None = None
    spend: float = 0.05
    login: float = 0.05
    family: SyntheticCounterparty | None = None
    supplier: SyntheticCounterparty | None = None
    # The balance the household keeps at the month's low; None: spending is not sized to the
    # income (card payments of any size, as the customer happens to make them).
    buffer: Decimal | None = None
    # The share of the income saved each month (the balance grows by it).
    thrift: float = 0.0
    # Part of the spending taken in cash at ATMs.
    cash: bool = False
    holidays: list[tuple[datetime, datetime]] = field(default_factory=list)
    events: dict[date, list[tuple[datetime, Act]]] = field(default_factory=dict)
    # Usual monthly spending, set once the household's standing payments are known.
    spending: Decimal = Decimal(0)
    # Paydays with less than the usual income paid: the share paid (Profile.reduced_pay).
    reduced_pay: dict[date, Decimal] = field(default_factory=dict)

    @property
    def budgeted(self) -> bool:
        return bool(self.income) and self.buffer is not None and self.spend >= REGULAR_SPEND

    def on_holiday(self, day: datetime) -> bool:
        return any(first <= day < back for first, back in self.holidays)

    def next_payday(self, day: datetime, end: datetime) -> datetime:
        """The first payday after `day`, or `end`."""
        return min((p for p in self.paydays if p > day), default=end)

    def add(self, at: datetime, act: Act) -> None:
        self.events.setdefault(at.date(), []).append((at, act))

    def size_spending(self, book: Book) -> None:
        """The usual monthly spending: the income less what is saved and the standing payments
        (a yearly one as a twelfth), never below a seventh of the income."""
        assert self.income is not None
        fixed = sum(
            (p.amount if p.month is None else p.amount / 12 for p in book.mandates.values()),
            Decimal(0),
        )
        if self.rent is not None and not any(p.purpose == "rent" for p in book.mandates.values()):
            fixed += self.rent
        usual = self.income * Decimal(1 - self.thrift) - fixed
        self.spending = max(usual, self.income / 7).quantize(CENT)


@dataclass(frozen=True)
class Purchase:
    """One planned outflow of the spending budget: a card payment or a cash withdrawal."""

    kind: str
    weight: float
    mcc: str | None


def plan_spending(
    rng: random.Random,
    book: Book,
    life: Life,
    days: list[datetime],
    shop_day: int | None,
    rent_by_hand: bool,
) -> dict[date, list[tuple[Purchase, Decimal]]]:
    """The spending of the days from now to the next payday (`days`), sized so the balance
    ends near the household's buffer: the usual spending, less in a lean month (after a large
    bill or gift), more after a bonus, and never more than what is left after the bills."""
    assert life.buffer is not None
    if not days:
        return {}
    fixed = sum(
        (p.amount for d in days for p in book.mandates.values() if p.due(d)),
        Decimal(0),
    )
    if rent_by_hand and life.rent is not None:
        fixed += life.rent * sum(1 for d in days if d.day == 1)
    # Months differ: a birthday, a repair, a quieter month.
    usual = life.spending * Decimal(len(days) / MONTH_DAYS * rng.uniform(0.85, 1.15))
    room = book.balance - fixed - life.buffer * Decimal(rng.uniform(0.85, 1.15))
    # A household closes part of the gap to its buffer each cycle, not all of it: a festival,
    # a large bill or a bonus shows in the balance for a few months.
    wanted = usual + (room - usual) * Decimal(CATCH_UP)
    free = Decimal(FREE_MONTH if life.thrift == 0 else 1.0)
    budget = min(max(wanted, usual * Decimal(LEAN_MONTH)), usual * free)
    budget = min(budget, max(book.balance - fixed, Decimal(0)) * Decimal("0.95"))
    planned: list[tuple[datetime, Purchase]] = []
    for day in days:
        if life.on_holiday(day):
            continue
        if day.weekday() == shop_day and rng.random() < 0.85:
            planned.append((day, Purchase("card.payment", rng.uniform(2, 4), GROCERIES)))
        if rng.random() < life.spend / 2:
            mcc = rng.choice(EVERYDAY_MCC)
            planned.append((day, Purchase("card.payment", rng.uniform(0.3, 1.5), mcc)))
    if life.cash and len(days) > 10:
        for _ in range(rng.choice((1, 1, 2))):
            day = rng.choice(days)
            if not life.on_holiday(day):
                planned.append((day, Purchase("withdrawal", rng.uniform(1.5, 3), None)))
    total = sum(p.weight for _, p in planned)
    plan: dict[date, list[tuple[Purchase, Decimal]]] = {}
    if total <= 0 or budget <= 0:
        return plan
    for day, purchase in planned:
        amount = (budget * Decimal(purchase.weight / total)).quantize(Decimal(1))
        if purchase.kind == "withdrawal":
            amount = max((amount / 100).quantize(Decimal(1)) * 100, Decimal(100))
        if amount >= 1:
            plan.setdefault(day.date(), []).append((purchase, amount))
    return plan


def live(sim: Simulator, book: Book, first: datetime, last: datetime, life: Life) -> None:
    """Ordinary banking from `first` to `last`: the income on its paydays, rent, spending
    (sized to the income in pay cycles, for households that budget), the year's events,
    saving, logins and a month-end balance snapshot. Each day's movements are booked in
    the order of their times, so every balance follows from the one before."""
    rng = sim.rng
    rent_by_hand = not any(m.purpose == "rent" for m in book.mandates.values())
    card_holder = life.spend > 0
    # Customers who use the account for everyday spending shop weekly on a day of their
    # own (a week in seven or so skipped: another card, a meal out instead).
    shop_day = rng.randrange(7) if life.spend >= REGULAR_SPEND else None
    paydays = {p.date() for p in life.paydays}
    plan: dict[date, list[tuple[Purchase, Decimal]]] = {}
    days = list(sim.days_between(first, last))
    if life.budgeted and days:
        until = life.next_payday(days[0] - timedelta(days=1), sim.end)
        plan = plan_spending(
            rng, book, life, list(sim.days_between(days[0], until)), shop_day, rent_by_hand
        )
    for day in days:
        book.collect(day)
        today: list[tuple[datetime, Act]] = []
        payday = life.income is not None and day.date() in paydays
        if life.income is not None and payday:
            if life.payer is not None:
                marked = {"purpose": life.income_purpose} if life.income_purpose else {}
                paid = life.income * life.reduced_pay.get(day.date(), Decimal(1))
                credit = _income_credit(book, paid.quantize(CENT), life.payer, marked)
                today.append((sim.at(day, 9, 11), credit))
            else:
                amount = life.income * Decimal(rng.uniform(0.7, 1.3))
                today.append((sim.at(day, 9, 11), _move(book, "deposit", amount, "atm")))
        if life.rent is not None and life.landlord is not None and rent_by_hand and day.day == 1:
            pay_rent = _move(book, "transfer.out", life.rent, "mobile", life.landlord)
            today.append((sim.at(day), pay_rent))
        acts = life.events.get(day.date(), [])
        today += acts
        for purchase, amount in plan.pop(day.date(), []):
            today.append((sim.at(day), _purchase(book, purchase, amount)))
        if not life.budgeted and not life.on_holiday(day):
            weekly = day.weekday() == shop_day and rng.random() < 0.85
            if weekly or rng.random() < life.spend / 2:
                purchase = Purchase(
                    "card.payment", 1.0, rng.choice(["5411", "5812", "4111", "5999"])
                )
                amount = Decimal(rng.randrange(30, 900))
                today.append((sim.at(day), _purchase(book, purchase, amount)))
        if life.family is not None and rng.random() < 0.015:
            # Mostly support sent home; now and then a gift back.
            kind = "transfer.in" if rng.random() < 0.2 else "transfer.out"
            amount = Decimal(rng.randrange(200, 3000))
            today.append((sim.at(day), _move(book, kind, amount, "mobile", life.family)))
        if life.supplier is not None and rng.random() < 0.03:
            amount = Decimal(rng.randrange(20_000, 120_000))
            pay = _move(book, "transfer.out", amount, "online", life.supplier)
            today.append((sim.at(day), pay))
        login = life.login / 3 if life.on_holiday(day) else life.login
        if rng.random() < login:
            channel = rng.choice(["mobile", "mobile", "online"])
            today.append((sim.at(day), functools.partial(_login, book, channel)))
        for at, act in sorted(today, key=lambda item: item[0]):
            act(at)
        if life.budgeted and (payday or acts):
            # Paid, or a large bill, a gift or a bonus today: the days to the next payday
            # are planned anew from the balance now.
            tomorrow = day + timedelta(days=1)
            until = life.next_payday(day, sim.end)
            plan = plan_spending(
                rng, book, life, list(sim.days_between(tomorrow, until)), shop_day, rent_by_hand
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


def _move(
    book: Book,
    event_type: str,
    amount: Decimal,
    channel: str,
    counterparty: SyntheticCounterparty | None = None,
) -> Act:
    def act(at: datetime) -> None:
        book.move(event_type, at, amount, channel, counterparty)

    return act


def _income_credit(
    book: Book, amount: Decimal, payer: SyntheticCounterparty, marked: dict[str, str]
) -> Act:
    def act(at: datetime) -> None:
        book.move("transfer.in", at, amount, "system", payer, **marked)

    return act


def _purchase(book: Book, purchase: Purchase, amount: Decimal) -> Act:
    def act(at: datetime) -> None:
        if purchase.kind == "withdrawal":
            book.move("withdrawal", at, amount, "atm")
        else:
            book.move("card.payment", at, amount, "pos", attributes={"mcc": purchase.mcc})

    return act


def _login(book: Book, channel: str, at: datetime) -> None:
    book.emit("digital.login", at, channel=channel)


def _between(rng: random.Random, bounds: tuple[float, float]) -> float:
    return rng.uniform(*bounds)


def draw_holidays(
    rng: random.Random, profile: Profile, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The household's holidays in the period: per year of it, one to a few stretches of a week
    to a few weeks, apart from each other and from the Spring Festival's weeks (when families
    spend, not travel without a card)."""
    busy = [
        (spring_festival(year) - timedelta(days=25), spring_festival(year) + timedelta(days=8))
        for year in range(start.year, end.year + 1)
    ]
    holidays: list[tuple[datetime, datetime]] = []
    year_start = start
    while year_start < end:
        year_end = min(year_start + timedelta(days=365), end)
        for _ in range(rng.randint(*profile.holidays)):
            length = timedelta(days=rng.randint(*profile.holiday_days))
            span = (year_end - year_start - length).days
            if span <= 0:
                continue
            for _attempt in range(10):
                first = year_start + timedelta(days=rng.randrange(span))
                back = first + length
                apart = timedelta(days=14)
                if all(back + apart <= a or first >= b + apart for a, b in busy + holidays):
                    holidays.append((first, back))
                    break
        year_start = year_end
    return sorted(holidays)


def year_events(
    sim: Simulator,
    book: Book,
    life: Life,
    *,
    bonus: bool,
    school: bool,
    one_off: bool,
) -> datetime | None:
    """The household's holidays and seasonal events, added to `life` (they happen only in the
    stretches of the period that this life is lived). Returns when the one-off large payment is
    made, if there is one."""
    rng, profile = sim.rng, sim.profile
    assert life.income is not None
    income = life.income
    life.holidays = draw_holidays(rng, profile, sim.start, sim.end)
    for first, _ in life.holidays:
        # The trip is booked and paid for weeks before (not while away on another).
        booked = first - timedelta(days=rng.randrange(7, 30))
        if life.on_holiday(booked):
            continue
        for mcc in rng.sample(TRAVEL_MCC, rng.choice((1, 2))):
            amount = income * Decimal(rng.uniform(0.05, 0.15))
            life.add(sim.at(booked), _card(book, amount, mcc))
    funded = False
    for year in range(sim.start.year, sim.end.year + 1):
        festival = spring_festival(year)
        if rng.random() < profile.festival_gifts_share:
            gifts = income * Decimal(_between(rng, profile.festival_gifts))
            _red_packets(sim, book, life, festival, gifts)
        if rng.random() < profile.festival_travel_share:
            trip = income * Decimal(_between(rng, profile.festival_travel))
            parts = rng.choice((2, 3, 4))
            for n in range(parts):
                day = festival + timedelta(days=rng.randrange(-24, 6))
                mcc = TRAVEL_MCC[n % len(TRAVEL_MCC)]
                life.add(sim.at(day), _card(book, trip / parts, mcc))
        if bonus and life.payer is not None and rng.random() < profile.bonus_share:
            # The year-end bonus (年终奖), paid with or just before January's salary.
            day = banking_day(datetime(year, 1, rng.randrange(10, 26), tzinfo=sim.start.tzinfo))
            amount = income * Decimal(_between(rng, profile.bonus))
            life.add(sim.at(day, 9, 11), _credit(book, amount, life.payer, life.income_purpose))
        if school:
            day = datetime(year, 9, rng.randrange(1, 11), tzinfo=sim.start.tzinfo)
            fees = (income * Decimal(_between(rng, profile.school_fees))).quantize(CENT)
            purpose = {"purpose": "other"} if rng.random() < 0.4 else {}
            school_account = rng.choice(sim.schools)
            life.add(sim.at(day), _transfer(book, fees, school_account, purpose, means=False))
            if not funded and life.buffer is not None:
                # The family keeps the year's fees on the account on top of its buffer, put
                # aside before the period, and saves them back after paying.
                funded = True
                life.buffer += fees
                aside = sim.start - timedelta(days=rng.randrange(10, 60))
                book.move("deposit", aside, fees, "branch")
    if not one_off:
        return None
    latest = max(sim.days - 30, sim.warm_up + 1)
    day = sim.start + timedelta(days=rng.randrange(sim.warm_up, latest))
    # A car, a flat's deposit, a notary, tuition: a business at another bank, paid once.
    payee = sim.counterparty("business", rng.choice(ONE_OFF_PAYEES))
    share = Decimal(_between(rng, profile.one_off_balance))
    purpose = {"purpose": "other"} if rng.random() < 0.5 else {}
    at = sim.at(day, 10, 17)

    def pay(at: datetime) -> None:
        book.move("transfer.out", at, book.balance * share, "online", payee, **purpose)

    life.add(at, pay)
    return at


def _red_packets(
    sim: Simulator, book: Book, life: Life, festival: datetime, total: Decimal
) -> None:
    """Red packets (红包) and gifts in the fortnight before the Spring Festival: sent to family
    at other banks, handed out in cash, or bought by card."""
    rng = sim.rng
    relative = life.family or sim.relative()
    parts = rng.choice((2, 3, 4, 5))
    for _ in range(parts):
        at = sim.at(festival - timedelta(days=rng.randrange(1, 15)))
        amount = (total / parts).quantize(Decimal(1))
        way = rng.random()
        if way < 0.5:
            purpose = {"purpose": "family"} if rng.random() < 0.3 else {}
            life.add(at, _transfer(book, amount, relative, purpose))
        elif way < 0.75:
            cash = max((amount / 100).quantize(Decimal(1)) * 100, Decimal(100))
            life.add(at, _withdrawal(book, cash))
        else:
            life.add(at, _card(book, amount, GIFT_MCC))


def _within_means(book: Book, amount: Decimal, means: bool) -> Decimal:
    return min(amount, book.balance * WITHIN_MEANS) if means else amount


def _card(book: Book, amount: Decimal, mcc: str) -> Act:
    def act(at: datetime) -> None:
        paid = _within_means(book, amount, True)
        book.move("card.payment", at, paid, "pos", attributes={"mcc": mcc})

    return act


def _transfer(
    book: Book,
    amount: Decimal,
    payee: SyntheticCounterparty,
    extra: dict[str, str],
    means: bool = True,
) -> Act:
    def act(at: datetime) -> None:
        paid = _within_means(book, amount, means)
        book.move("transfer.out", at, paid, "mobile", payee, **extra)

    return act


def _withdrawal(book: Book, amount: Decimal) -> Act:
    def act(at: datetime) -> None:
        # Notes of a hundred.
        cash = (_within_means(book, amount, True) / 100).quantize(Decimal(1), ROUND_DOWN) * 100
        book.move("withdrawal", at, cash, "atm")

    return act


def _credit(book: Book, amount: Decimal, payer: SyntheticCounterparty, purpose: str | None) -> Act:
    marked = {"purpose": purpose} if purpose else {}

    def act(at: datetime) -> None:
        book.move("transfer.in", at, amount, "system", payer, **marked)

    return act
