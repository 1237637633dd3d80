"""The four churn causes as they show in a core-banking feed (../shared/domain.md): ordinary
life until the onset, then the cause's pattern, then the closure of every account."""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from services.simulator.book import CENT, Book
from services.simulator.identity import OTHER_BANKS, holder_name
from services.simulator.life import Life
from services.simulator.profiles import CHURN_CAUSE, Persona
from services.simulator.truth import ChurnTruth, CustomerTruth, SyntheticCounterparty

if TYPE_CHECKING:
    from services.simulator.population import Simulator


def churner(
    sim: Simulator, book: Book, persona: Persona, truth: CustomerTruth
) -> tuple[datetime, ChurnTruth]:
    """Ordinary life until the onset (the monthly cycle, holidays and the seasons as every
    household has them), then the cause's pattern, then closure."""
    rng = sim.rng
    opened, life = sim.wage_earner(book)
    salary, employer = life.income, life.payer
    assert salary is not None and employer is not None
    sim.seasons(book, life, truth, bonus=True)
    # Late enough to be scored, early enough that most churners close within the period
    # (a disengaged customer takes longest: fading, then months of silence).
    room = 200 if persona is Persona.CHURN_DISENGAGED else 110
    onset = sim.start + timedelta(
        days=rng.randrange(sim.warm_up + 30, max(sim.days - room, sim.warm_up + 31))
    )
    truth.holidays = [(a, b) for a, b in life.holidays if b <= onset]
    sim.everyday(book, sim.start, onset, life)
    payments_moved_at = None
    moving_mandates = len(book.mandates)
    # After the onset, the salary (while it comes) without the household's budget.
    paid = Life(
        income=salary,
        payer=employer,
        income_purpose=life.income_purpose,
        paydays=life.paydays,
    )
    if persona is Persona.CHURN_COMPETITOR:
        # The customer moves banks: the new bank takes over the standing orders and direct
        # debits (cancelled here within days of each other) and the salary; the savings
        # follow to the customer's own account there; then the account is closed.
        own_elsewhere = _own_account_elsewhere(sim, book)
        purpose = rng.choices([{"purpose": "own_account"}, {"purpose": "savings"}, {}], [3, 2, 5])[
            0
        ]
        for mandate_id in list(book.mandates):
            at = sim.at(onset + timedelta(days=rng.uniform(0, 8)))
            book.plan(at, functools.partial(book.cancel, at, mandate_id))
            payments_moved_at = min(payments_moved_at or at, at)
        moves_at = onset + timedelta(days=rng.randrange(12, 20))
        sim.everyday(book, onset, moves_at, Life(spend=0.06))

        def move_out(share: Decimal, at: datetime) -> None:
            if book.balance > 100:
                amount = book.balance * share
                book.move("transfer.out", at, amount, "mobile", own_elsewhere, **purpose)

        moving = Life(spend=0)
        for n in range(3):
            at = sim.at(moves_at + timedelta(days=3 * n))
            moving.add(at, functools.partial(move_out, Decimal("0.45")))
        sim.everyday(book, moves_at, moves_at + timedelta(days=9), moving)
        churn_at = moves_at + timedelta(days=rng.randrange(12, 30))
        last = Life(spend=0.03)
        last.add(sim.at(churn_at - timedelta(days=1)), functools.partial(move_out, Decimal(1)))
        sim.everyday(book, moves_at + timedelta(days=9), churn_at, last)
    elif persona is Persona.CHURN_DISSATISFIED:
        book.emit(
            "complaint.filed",
            sim.at(onset),
            channel="call_center",
            attributes={"topic": rng.choice(["fees", "wait_time", "card_blocked"])},
        )
        if rng.random() < 0.6:
            book.emit(
                "complaint.filed",
                sim.at(onset + timedelta(days=rng.randrange(5, 20))),
                channel="branch",
                attributes={"topic": "unresolved"},
            )
        drain_from = onset + timedelta(days=rng.randrange(7, 20))
        sim.everyday(book, onset, drain_from, life)
        truth.holidays = [(a, b) for a, b in life.holidays if b <= drain_from]
        churn_at = drain_from + timedelta(days=rng.randrange(20, 45))
        # The balance withdrawn at the branch in a few goes; the bills go on meanwhile.
        draining = replace(paid, events={}, income=None, spend=0, login=0.01)
        for n in range(4):
            on = drain_from + (churn_at - drain_from) * n / 4
            at = sim.at(on.replace(hour=0, minute=0, second=0, microsecond=0))
            draining.add(at, functools.partial(_withdraw, book, Decimal("0.5"), "branch"))
        at = sim.at(churn_at - timedelta(days=1))
        draining.add(at, functools.partial(_withdraw, book, Decimal(1), "branch"))
        sim.everyday(book, drain_from, churn_at, draining)
    elif persona is Persona.CHURN_DISTRESS:
        # Hours cut: a smaller salary from the same employer, and spending that eats the
        # savings, with no transfers to other banks.
        churn_at = onset + timedelta(days=rng.randrange(50, 90))
        reduced = (salary * Decimal("0.4")).quantize(CENT)
        struggling = replace(paid, events={}, income=reduced, spend=0)
        for day in sim.days_between(onset, churn_at):
            if rng.random() < 0.25:
                kind = rng.choice(["withdrawal", "card.payment"])
                struggling.add(sim.at(day), functools.partial(_eat_savings, book, kind))
        at = sim.at(churn_at - timedelta(days=1))
        struggling.add(at, functools.partial(_withdraw, book, Decimal(1), "atm"))
        sim.everyday(book, onset, churn_at, struggling)
    else:
        # Logins and payments fade, then silence, then the account is closed.
        # The salary keeps arriving: only what the customer does falls away.
        silent_from = onset + timedelta(days=rng.randrange(20, 40))
        sim.everyday(book, onset, silent_from, replace(paid, events={}, spend=0.02, login=0.01))
        churn_at = silent_from + timedelta(days=rng.randrange(60, 120))
        sim.everyday(book, silent_from, churn_at, replace(paid, events={}, spend=0, login=0))
        book.move(
            "withdrawal", sim.at(churn_at - timedelta(hours=2), 9, 10), book.balance, "branch"
        )
    churn_at = sim.at(churn_at.replace(hour=0, minute=0, second=0, microsecond=0), 10, 16)
    if churn_at < sim.end:
        book.close_all(churn_at)
    return opened, ChurnTruth(
        cause=CHURN_CAUSE[persona],
        onset=onset,
        churned_at=churn_at if churn_at < sim.end else None,
        planned_at=churn_at,
        payments_moved_at=payments_moved_at if moving_mandates >= 2 else None,
    )


def _withdraw(book: Book, share: Decimal, channel: str, at: datetime) -> None:
    """A share of the balance taken out in cash."""
    if book.balance > 0:
        book.move("withdrawal", at, book.balance * share, channel)


def _eat_savings(book: Book, kind: str, at: datetime) -> None:
    """Spending beyond the income: a twelfth of the balance or 200, whichever is more."""
    if book.balance > 0:
        book.move(kind, at, max(book.balance * Decimal("0.08"), Decimal(200)), "atm")


def _own_account_elsewhere(sim: Simulator, book: Book) -> SyntheticCounterparty:
    """The customer's account at the bank they move to, as their payment orders name it:
    always in their own name (written as that bank writes it), now and then flagged as
    their own by a bank that knows it."""
    surname, given = holder_name(book.customer_id).split()
    name = sim.rng.choice(
        [f"{surname} {given}", f"{given.upper()} {surname}", f"{surname}, {given}"]
    )
    return SyntheticCounterparty(
        bank_code=sim.rng.choice(OTHER_BANKS),
        account=f"62{sim.rng.randrange(10**14, 10**15)}",
        name=name,
        kind="person",
        declared=False,
        own_account=True if sim.rng.random() < 0.3 else None,
    )
