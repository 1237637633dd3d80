"""The standing orders and direct debits a household ties to its account (定期转账, 代扣代缴):
rent, utilities, a phone, insurance, a loan instalment; and a supplier switched now and then,
which is not a customer leaving the bank."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from services.simulator.book import CENT, Book, StandingPayment
from services.simulator.truth import SyntheticCounterparty

if TYPE_CHECKING:
    from services.simulator.population import Simulator

# The share of households that pay each.
UTILITY_SHARE = 0.85
INSURANCE_SHARE = 0.6
LOAN_SHARE = 0.25
# Households that switch a utility supplier during the period: a direct debit cancelled and
# another given, which is not moving banks.
SUPPLIER_SWITCH_SHARE = 0.08


def set_up(
    sim: Simulator,
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
    rng = sim.rng

    def share(low: float, high: float, floor: int) -> Decimal:
        return max(income * Decimal(rng.uniform(low, high)), Decimal(floor)).quantize(CENT)

    payments: list[tuple[str, SyntheticCounterparty, Decimal, str, int | None]] = []
    if rent is not None and landlord is not None and rng.random() < 0.7:
        payments.append(("standing_order", landlord, rent, "rent", None))
    if rng.random() < UTILITY_SHARE:
        utility = rng.choice(sim.utilities)
        payments.append(("direct_debit", utility, share(0.02, 0.05, 60), "utilities", None))
        phone = rng.choice(sim.telecoms)
        payments.append(("direct_debit", phone, share(0.005, 0.015, 30), "bill", None))
    if rng.random() < INSURANCE_SHARE:
        insurer = rng.choice(sim.insurers)
        if rng.random() < 0.3:
            premium, month = share(0.2, 0.5, 500), rng.randrange(1, 13)
        else:
            premium, month = share(0.02, 0.05, 50), None
        payments.append(("direct_debit", insurer, premium, "insurance", month))
    if borrower and rng.random() < LOAN_SHARE:
        lender = rng.choice(sim.lenders)
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


def maybe_switch_supplier(sim: Simulator, book: Book) -> None:
    """Some households change a supplier during the period."""
    if sim.rng.random() < SUPPLIER_SWITCH_SHARE:
        switch_supplier(sim, book)


def switch_supplier(sim: Simulator, book: Book) -> None:
    """A household changes its electricity or phone supplier: the old direct debit is
    cancelled and a new one given, days apart. Not a customer leaving the bank."""
    switchable = [m for m in book.mandates.values() if m.purpose in ("utilities", "bill")]
    if not switchable:
        return
    old = sim.rng.choice(switchable)
    at = sim.at(sim.start + timedelta(days=sim.rng.randrange(sim.warm_up, sim.days)))
    pool = sim.utilities if old.purpose == "utilities" else sim.telecoms
    new = StandingPayment(
        mandate_id=f"{old.mandate_id}-new",
        kind="direct_debit",
        payee=sim.rng.choice([p for p in pool if p != old.payee] or pool),
        amount=old.amount,
        day=old.day,
        purpose=old.purpose,
    )
    given = at + timedelta(days=sim.rng.randrange(0, 10), hours=1)
    book.plan(at, functools.partial(book.cancel, at, old.mandate_id))
    book.plan(given, functools.partial(book.set_up, given, new))
