"""What the simulator plants in a population once its customers' lives are written: the
counterparties that open an account (conversions, the genuine referrals) and the fraudulent
referrals the referral service must stop."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from services.simulator.book import CENT, Book
from services.simulator.identity import holder_name
from services.simulator.life import Life
from services.simulator.profiles import Persona
from services.simulator.truth import (
    Conversion,
    CustomerTruth,
    FraudCase,
    GenuineReferral,
    SyntheticCounterparty,
)

if TYPE_CHECKING:
    from services.simulator.population import Simulator

# The rings planted, by the number of customers in them: A's code opens B, B's opens C, ...,
# and the last one's code brings A back.
RING_LENGTHS = (2, 3, 4)
VELOCITY_BURST = 14
# Referees funded by their referrer, per way of funding (directly, through a hop).
FUNDED_CASES = 3
FundedPattern = Literal["funded_by_referrer", "funded_through_hop"]
# Who opens an account: a prospect's chance grows with its ties to our customers, each tie an
# independent chance to be won over (network-based marketing: the customers' neighbours in the
# payment network convert several times as often as others, and more so the more neighbours;
# Hill, Provost and Volinsky, 2006). A tie is a customer paying or paid by the prospect in
# each of the `TIE_MONTHS` months before the opening; fewer months count for that share of a
# tie (a relative sent red packets once is a sixth of a tenant paying rent every month). At
# 5 % a tie a landlord with one tenant opens an account about once in twenty years and an
# employer paying twenty of our customers in two of three; a 400-customer population gets 20
# to 25 conversions a year, about as many as before the chance followed the ties (Dec. 2026).
CONVERSION_PER_TIE = 0.05
TIE_MONTHS = 6


def chain_index(sim: Simulator) -> dict[str, list[tuple[str, str, Decimal]]]:
    """Per external account: (occurred_at, customer, amount) of every transfer with it."""
    index: dict[str, list[tuple[str, str, Decimal]]] = {}
    for book in sim.books.values():
        for event in book.events:
            if "counterparty" in event:
                index.setdefault(event["counterparty"]["account"], []).append(
                    (event["occurred_at"], book.customer_id, Decimal(event["amount"]))
                )
    return index


def strongest_tie(transfers: list[tuple[str, str, Decimal]], until: datetime) -> str | None:
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


def ties(transfers: list[tuple[str, str, Decimal]], until: datetime) -> float:
    """A prospect's ties to our customers before `until`: per customer, the share of the
    `TIE_MONTHS` months before in which they paid or were paid by it."""
    since, until_iso = (until - timedelta(days=TIE_MONTHS * 61 // 2)).isoformat(), until.isoformat()
    months: dict[str, set[str]] = {}
    for at, customer, _ in transfers:
        if since <= at < until_iso:
            months.setdefault(customer, set()).add(at[:7])
    return sum(min(len(m) / TIE_MONTHS, 1.0) for m in months.values())


def conversion_chance(tie_count: float) -> float:
    return 1.0 - math.pow(1.0 - CONVERSION_PER_TIE, tie_count)


def conversions(sim: Simulator, next_index: int) -> int:
    """Some counterparties open an account, the more likely the stronger their ties to our
    customers: with the introducer's code, or without one, moving money in from the account
    our customers paid. Each is a genuine referral. Utilities, insurers, lenders and pension
    funds are institutions, never prospects."""
    rng, truth = sim.rng, sim.truth
    chain = chain_index(sim)
    prospects = sim.landlords + sim.relatives + sim.suppliers + sim.schools + sim.employers
    first, last = sim.warm_up + 60, max(sim.days - 25, sim.warm_up + 61)
    for counterparty in prospects:
        opened = sim.at(sim.start + timedelta(days=rng.randrange(first, last)))
        tie_count = ties(chain.get(counterparty.account, []), opened)
        if rng.random() >= conversion_chance(tie_count):
            continue
        funded_at = sim.at(opened + timedelta(days=rng.randrange(2, 20)))
        # Who introduced the prospect: the strongest tie when its money moved over.
        introducer = strongest_tie(chain.get(counterparty.account, []), funded_at)
        if introducer is None:
            continue
        # An employer that moves to the bank comes through its corporate RM, with a code:
        # money from a payroll account to a new customer is a first salary (docs/referral.md).
        via_code = rng.random() < 0.5 or counterparty in sim.employers
        code = sim.code_for(introducer) if via_code else None
        book = sim.new_book(next_index)
        next_index += 1
        sim.onboard(book, opened, Decimal(rng.randrange(100, 800)), code=code)
        funding = Decimal(rng.randrange(2_000, 30_000))
        # A prospect who moves over keeps using the account: what it earns (the rents a
        # landlord collects, a firm's takings) comes in each month from then on, spending is
        # sized to it, and the money moved over is what it keeps at the month's low.
        payday = rng.randrange(1, 29)
        life = Life(
            income=(funding * Decimal(rng.uniform(0.25, 0.5))).quantize(CENT),
            paydays=[d for d in sim.paydays(payday, None) if d > funded_at],
            spend=0.08,
            login=0.05,
            buffer=(funding * Decimal(rng.uniform(0.5, 0.8))).quantize(CENT),
            thrift=rng.uniform(0.1, 0.3),
        )
        life.size_spending(book)
        life.add(funded_at, functools.partial(_funding, book, funding, counterparty))
        sim.everyday(book, opened + timedelta(days=1), sim.end, life)
        truth.customers[book.customer_id] = CustomerTruth(
            persona=Persona.CONVERTED.value,
            stable=False,
            opened_at=opened,
            referred_by=introducer,
        )
        via: Literal["code", "chain"] = "code" if via_code else "chain"
        truth.conversions.append(
            Conversion(
                counterparty=counterparty,
                customer_id=book.customer_id,
                opened_at=opened,
                introduced_by=introducer,
                via=via,
                code=code,
            )
        )
        truth.genuine_referrals.append(
            GenuineReferral(
                referee=book.customer_id, referrer=introducer, via=via, opened_at=opened
            )
        )
    return next_index


def _funding(
    book: Book, amount: Decimal, counterparty: SyntheticCounterparty, at: datetime
) -> None:
    """The converted counterparty moves its money over from the account our customers paid."""
    book.move("transfer.in", at, amount, "online", counterparty)


def fraud(sim: Simulator, next_index: int) -> int:
    """Every pattern of referral fraud: once each, rings once per length, and referees funded
    by their referrer `FUNDED_CASES` times per way."""
    rng = sim.rng
    established = [c for c, t in sim.truth.customers.items() if t.stable]
    if len(established) < 8:
        return next_index
    used: set[str] = set()
    # Self-referral: a customer opens a second identity with their own code and phone.
    referrer = rng.choice(established)
    used.add(referrer)
    book = sim.new_book(next_index)
    next_index += 1
    sim.onboard(
        book,
        some_day(sim),
        Decimal(1500),
        code=sim.code_for(referrer),
        phone=sim.phone_of[referrer],
    )
    _referees(sim, "self_referral", referrer, [book.customer_id])
    for length in RING_LENGTHS:
        next_index = _ring(sim, next_index, length, used)
    # A referrer with an implausible burst: 14 referrals in under three weeks.
    burst_referrer = rng.choice([c for c in established if c not in used])
    used.add(burst_referrer)
    burst_start = some_day(sim)
    referees = []
    for n in range(VELOCITY_BURST):
        ref = sim.new_book(next_index)
        next_index += 1
        sim.onboard(
            ref,
            burst_start + timedelta(days=n * 1.4),
            Decimal(1200),
            code=sim.code_for(burst_referrer),
        )
        referees.append(ref.customer_id)
    _referees(sim, "velocity", burst_referrer, referees)
    funded: tuple[FundedPattern, ...] = ("funded_by_referrer", "funded_through_hop")
    for pattern in funded:
        for _ in range(FUNDED_CASES):
            next_index = _funded(sim, next_index, pattern, established, used)
    return next_index


def some_day(sim: Simulator) -> datetime:
    """A random time after the warm-up, at least 30 days before the end."""
    latest = max(sim.days - 30, sim.warm_up + 31)
    return sim.at(sim.start + timedelta(days=sim.rng.randrange(sim.warm_up + 30, latest)))


def _ring(sim: Simulator, next_index: int, length: int, used: set[str]) -> int:
    """A's code opens B, B's opens C, ..., then A, who closed everything meanwhile, comes back
    with the last one's code. A is a churner whose accounts really closed in the period."""
    rng, truth = sim.rng, sim.truth
    legs = length - 1
    latest = sim.end - timedelta(days=8 * legs + 20)
    candidates = [
        c
        for c, t in truth.customers.items()
        if c not in used
        and t.churn is not None
        and t.churn.churned_at is not None
        and truth.evaluate_from + timedelta(days=10) <= t.churn.churned_at <= latest
    ]
    if not candidates:
        return next_index
    a = rng.choice(candidates)
    used.add(a)
    churn = truth.customers[a].churn
    assert churn is not None and churn.churned_at is not None
    earliest = truth.evaluate_from + timedelta(days=1)
    at = max(churn.churned_at - timedelta(days=rng.uniform(5, 25)), earliest)
    referrer, referees = a, []
    for _ in range(legs):
        book = sim.new_book(next_index)
        next_index += 1
        sim.onboard(book, at, Decimal(1500), code=sim.code_for(referrer))
        referees.append(book.customer_id)
        referrer = book.customer_id
        at += timedelta(days=rng.uniform(2, 8))
    returns_at = max(at, churn.churned_at) + timedelta(days=rng.uniform(5, 15))
    a_book = sim.books[a]
    a_book.open(returns_at, code=sim.code_for(referrer))
    a_book.move("deposit", returns_at + timedelta(hours=1), Decimal(1500), "branch")
    truth.customers[a] = truth.customers[a].model_copy(update={"win_back": True, "stable": False})
    _referees(sim, "ring", a, [*referees, a], length=length)
    return next_index


def _funded(
    sim: Simulator,
    next_index: int,
    pattern: FundedPattern,
    established: Sequence[str],
    used: set[str],
) -> int:
    """A referee whose opening money comes from the referrer: from the referrer's own account
    at the bank, or through an account elsewhere that the referrer pays first and that pays
    the referee about as much days later."""
    rng = sim.rng
    book = sim.new_book(next_index)
    opened = some_day(sim)
    amount = Decimal(rng.randrange(1_500, 5_000))
    # Straight to the new account once it is open; through a go-between, from a couple of
    # days before the opening on.
    early = -2.0 if pattern == "funded_through_hop" else 0.5
    sent_at = opened + timedelta(days=rng.uniform(early, 3))
    # The referee's account, as the referrer's payment order names it.
    referee_account = SyntheticCounterparty(
        bank_code=sim.truth.own_bank,
        account=f"A{book.customer_id[1:]}01",
        name=holder_name(book.customer_id),
        kind="person",
        declared=False,
    )
    hop = sim.counterparty("person", "Friend")
    payee = hop if pattern == "funded_through_hop" else referee_account
    order = [c for c in established if c not in used]
    rng.shuffle(order)
    referrer = next(
        (c for c in order if sim.books[c].insert_payment(sent_at, amount, "mobile", payee)), None
    )
    if referrer is None:
        del sim.books[book.customer_id]
        return next_index
    used.add(referrer)
    next_index += 1
    sim.onboard(book, opened, Decimal(rng.randrange(50, 300)), code=sim.code_for(referrer))
    if pattern == "funded_by_referrer":
        source = SyntheticCounterparty(
            bank_code=sim.truth.own_bank,
            account=sim.books[referrer].account,
            name=holder_name(referrer),
            kind="person",
            declared=False,
        )
        book.move("transfer.in", sent_at + timedelta(minutes=1), amount, "system", source)
    else:
        passed_on = amount * Decimal(rng.uniform(0.92, 1.0))
        at = max(sent_at + timedelta(days=rng.uniform(1, 6)), opened + timedelta(hours=2))
        book.move("transfer.in", at, passed_on, "mobile", hop)
        sent_at = at
    for n in range(rng.randrange(1, 4)):
        at = sent_at + timedelta(days=n + 1, hours=rng.randrange(1, 10))
        book.move("card.payment", at, Decimal(rng.randrange(30, 300)), "pos")
    _referees(sim, pattern, referrer, [book.customer_id])
    return next_index


def _referees(
    sim: Simulator, pattern: str, referrer: str, referees: list[str], length: int | None = None
) -> None:
    """The case in the truth, and its new customers as fraud referees."""
    truth = sim.truth
    truth.fraud.append(
        FraudCase(
            pattern=pattern,
            referrer=referrer,
            referees=referees,
            length=length,
        )
    )
    for customer in referees:
        if customer in truth.customers:
            continue  # the ring's A, who comes back
        truth.customers[customer] = CustomerTruth(
            persona="fraud_referee",
            stable=False,
            opened_at=datetime.fromisoformat(sim.books[customer].events[0]["occurred_at"]),
            referred_by=None,
        )
