"""The lifecycle rules on the shapes of real core-banking feeds: the bank's own postings,
standing orders and direct debits, payment purposes, several home institution codes, and money
that leaves for bills rather than for a competitor."""

from __future__ import annotations

from typing import Any

from schemas.lifecycle import ChurnCause, SignalKind, Stage, StageChanged
from services.lifecycle.domain import LifecycleRules
from services.lifecycle.service import encode_state
from tests.unit.lifecycle.test_rules import Customer, active_customer, other_bank


def raised(c: Customer, kind: SignalKind) -> list[tuple[str, SignalKind, ChurnCause]]:
    return [s for s in c.signals() if s[1] is kind]


def utility(bank: str = "ICBC") -> dict[str, Any]:
    return {"bank_code": bank, "account": "9100", "name": "City Power"}


# -- the bank's own postings ------------------------------------------------------------------


def test_interest_and_fees_move_the_balance_but_are_not_activity() -> None:
    c = active_customer()
    c.money("deposit", 4, "20000.00")
    for month in range(1, 6):
        c.money("interest.credited", 4 + 30 * month, "12.50")
        c.money("fee.charged", 5 + 30 * month, "3.00", kind="account_fee")
    inactivity = raised(c, SignalKind.INACTIVITY)
    assert inactivity[0] == ("raised", SignalKind.INACTIVITY, ChurnCause.DISENGAGEMENT)
    assert c.state is not None
    assert c.state.total_balance == c.balance  # every posting moved it
    assert (
        c.state.last_activity_at is not None
        and (c.state.last_activity_at - c.state.relationship_start).days == 4
    )  # type: ignore[operator]


def test_a_dormant_account_keeps_getting_interest_and_still_turns_dormant() -> None:
    c = active_customer()
    for month in range(1, 8):
        c.money("interest.credited", 30 * month, "1.00")
    assert c.stages()[-1][0] is Stage.DORMANT


def test_payments_on_a_standing_order_are_not_the_customers_activity() -> None:
    c = active_customer()
    c.money("deposit", 4, "9000.00")
    for month in range(1, 4):
        c.money(
            "transfer.out",
            5 + 30 * month,
            "800.00",
            counterparty=other_bank("ICBC"),
            purpose="rent",
            mandate_id="SO-1",
        )
    assert raised(c, SignalKind.INACTIVITY)


# -- money leaving: bills are not a competitor's pull -----------------------------------------


def test_bills_to_other_institutions_raise_no_competitor_signal() -> None:
    c = active_customer()
    c.money("deposit", 4, "5000.00")
    for day, purpose in ((5, "utilities"), (6, "insurance"), (7, "loan_repayment"), (8, "tax")):
        c.money("transfer.out", day, "1200.00", counterparty=utility(), purpose=purpose)
    assert not raised(c, SignalKind.COMPETITOR_TRANSFER)
    drains = raised(c, SignalKind.BALANCE_DRAIN)
    assert all(d[2] is not ChurnCause.COMPETITOR_ATTRACTION for d in drains)


def test_a_large_payment_to_someone_else_at_another_bank_is_not_competitor_attraction() -> None:
    c = active_customer()
    c.money("deposit", 4, "100000.00")
    c.money("transfer.out", 5, "60000.00", counterparty={"bank_code": "BOC", "account": "77"})
    assert not raised(c, SignalKind.COMPETITOR_TRANSFER)


def test_savings_moved_to_another_bank_are_competitor_attraction() -> None:
    c = active_customer()
    c.money("deposit", 4, "10000.00")
    c.money("transfer.out", 5, "4000.00", counterparty=other_bank(), purpose="savings")
    assert raised(c, SignalKind.COMPETITOR_TRANSFER) == [
        ("raised", SignalKind.COMPETITOR_TRANSFER, ChurnCause.COMPETITOR_ATTRACTION)
    ]


def test_money_sent_to_an_account_in_the_customers_own_name_is_competitor_attraction() -> None:
    c = active_customer()
    c.send("customer.updated", 3.5, profile={"name": "Li Wei"})
    c.money("deposit", 4, "10000.00")
    payee = {"bank_code": "CMB", "account": "88", "name": "WEI,  li"}
    c.money("transfer.out", 5, "4000.00", counterparty=payee)
    signal = raised(c, SignalKind.COMPETITOR_TRANSFER)
    assert signal == [("raised", SignalKind.COMPETITOR_TRANSFER, ChurnCause.COMPETITOR_ATTRACTION)]
    assert c.state is not None and b"Li" not in encode_state(c.state, 0, None)


def test_a_listed_competitor_counts_without_a_purpose() -> None:
    rules = LifecycleRules(competitor_bank_codes=frozenset({"cmb"}))
    c = active_customer(rules)
    c.money("deposit", 4, "10000.00")
    c.money("transfer.out", 5, "4000.00", counterparty={"bank_code": "CMB", "account": "1"})
    assert raised(c, SignalKind.COMPETITOR_TRANSFER)
    other = active_customer(rules)
    other.money("deposit", 4, "10000.00")
    other.money(
        "transfer.out",
        5,
        "4000.00",
        counterparty={"bank_code": "CMB", "account": "1"},
        purpose="utilities",
    )
    assert not raised(other, SignalKind.COMPETITOR_TRANSFER)


def test_every_home_institution_code_keeps_money_in_the_bank() -> None:
    rules = LifecycleRules(home_bank_codes=frozenset({"RAPPORTBANK", "MERGEDBANK"}))
    c = active_customer(rules)
    c.money("deposit", 4, "10000.00")
    c.money("transfer.out", 5, "6000.00", counterparty=other_bank("mergedbank", own_account=True))
    assert not raised(c, SignalKind.COMPETITOR_TRANSFER)
    assert c.state is not None and not c.state.outflows[-1].external


# -- standing orders and direct debits ---------------------------------------------------------


def mandate(
    c: Customer, change: str, day: float, mandate_id: str, kind: str = "direct_debit"
) -> None:
    fields: dict[str, Any] = {"account_id": "A1", "mandate_id": mandate_id}
    if change == "created":
        fields |= {"counterparty": utility(), "purpose": "utilities", "frequency": "monthly"}
    c.send(f"{kind}.{change}", day, **fields)


def test_cancelling_established_bills_in_a_burst_raises_payments_moved() -> None:
    c = active_customer()
    for n in range(4):
        mandate(c, "created", 4 + n, f"DD{n}", "standing_order" if n % 2 else "direct_debit")
    c.money("deposit", 5, "3000.00")
    for day in range(10, 240, 7):
        c.money("card.payment", day, "10.00")
    mandate(c, "cancelled", 240, "DD0")
    assert not raised(c, SignalKind.PAYMENTS_MOVED)
    mandate(c, "cancelled", 245, "DD1", "standing_order")
    mandate(c, "cancelled", 250, "DD2")
    signal = raised(c, SignalKind.PAYMENTS_MOVED)
    assert signal == [("raised", SignalKind.PAYMENTS_MOVED, ChurnCause.COMPETITOR_ATTRACTION)]
    at_risk = [o for o in c.outputs if isinstance(o, StageChanged) and o.stage is Stage.AT_RISK]
    assert at_risk[0].probable_cause is ChurnCause.COMPETITOR_ATTRACTION


def test_mandates_unseen_before_count_as_established_when_cancelled() -> None:
    c = active_customer()
    mandate(c, "cancelled", 10, "OLD1")
    mandate(c, "cancelled", 12, "OLD2")
    assert raised(c, SignalKind.PAYMENTS_MOVED)


def test_cancellations_replaced_by_new_payees_are_not_moving_banks() -> None:
    c = active_customer()
    for n in range(3):
        mandate(c, "created", 4 + n, f"DD{n}")
    mandate(c, "cancelled", 200, "DD0")
    mandate(c, "created", 202, "NEW0")  # another electricity supplier
    mandate(c, "cancelled", 205, "DD1")
    mandate(c, "created", 206, "NEW1")
    assert not raised(c, SignalKind.PAYMENTS_MOVED)


def test_cancelling_new_mandates_weighs_little() -> None:
    c = active_customer()
    for n in range(3):
        mandate(c, "created", 4 + n, f"OLD{n}")
    mandate(c, "created", 200, "TRIAL1")
    mandate(c, "created", 201, "TRIAL2")
    mandate(c, "cancelled", 203, "TRIAL1")
    mandate(c, "cancelled", 204, "TRIAL2")
    assert not raised(c, SignalKind.PAYMENTS_MOVED)


def test_payments_moved_resolves_after_quiet_days_and_by_new_mandates() -> None:
    c = active_customer()
    mandate(c, "cancelled", 10, "OLD1")
    mandate(c, "cancelled", 11, "OLD2")
    c.wait(11 + 60)
    assert raised(c, SignalKind.PAYMENTS_MOVED)[-1][0] == "resolved"
    d = active_customer()
    mandate(d, "cancelled", 10, "OLD1")
    mandate(d, "cancelled", 11, "OLD2")
    mandate(d, "created", 15, "NEW1")
    assert [s[0] for s in raised(d, SignalKind.PAYMENTS_MOVED)] == ["raised", "resolved"]
