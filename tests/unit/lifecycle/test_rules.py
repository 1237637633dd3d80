"""Lifecycle rules, transition by transition, on event time only."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from schemas import parse_account_event
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
from services.lifecycle.domain import (
    CustomerState,
    LifecycleRules,
    Output,
    advance,
    anniversary,
    apply_event,
    probable_cause,
    target_tier,
)
from services.lifecycle.service import decode_state, encode_state, pseudonyms

RULES = LifecycleRules()
T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)


class Customer:
    """Feeds one customer's events through the rules, keeping the state and every output."""

    def __init__(self, customer_id: str = "C1", rules: LifecycleRules = RULES) -> None:
        self.id = customer_id
        self.rules = rules
        self.state: CustomerState | None = None
        self.outputs: list[Output] = []
        self.n = 0
        self.balance = Decimal(0)

    def send(
        self, event_type: str, day: float, /, counterparty_key: str | None = None, **fields: Any
    ) -> list[Output]:
        self.n += 1
        at = T0 + timedelta(days=day)
        data = {
            "event_id": fields.pop("event_id", f"{self.id}-{self.n}"),
            "event_type": event_type,
            "occurred_at": at.isoformat(),
            "customer_id": self.id,
            **fields,
        }
        event = parse_account_event(data)
        keys = pseudonyms(event, b"test-key")
        if counterparty_key is not None:
            keys = replace(keys, counterparty=counterparty_key)
        outcome = apply_event(self.state, event, at, self.rules, keys)
        self.state = outcome.state
        self.outputs += outcome.outputs
        return outcome.outputs

    def money(self, event_type: str, day: float, amount: str, /, **fields: Any) -> list[Output]:
        delta = Decimal(amount)
        inflow = event_type in ("deposit", "transfer.in", "interest.credited")
        self.balance += delta if inflow else -delta
        return self.send(
            event_type,
            day,
            account_id="A1",
            amount=amount,
            balance_after=str(self.balance),
            currency="CNY",
            **fields,
        )

    def open(self, day: float = 0) -> list[Output]:
        return self.send("account.opened", day, account_id="A1")

    def wait(self, day: float) -> list[Output]:
        assert self.state is not None
        out = advance(self.state, T0 + timedelta(days=day), self.rules)
        self.outputs += out
        return out

    def stages(self) -> list[tuple[Stage, int]]:
        return [
            (o.stage, (o.occurred_at - T0).days)
            for o in self.outputs
            if isinstance(o, StageChanged) and o.type == "stage.changed"
        ]

    def signals(self) -> list[tuple[str, SignalKind, ChurnCause]]:
        return [
            (o.type.rsplit(".", 1)[1], o.signal, o.cause)
            for o in self.outputs
            if isinstance(o, ChurnSignalChanged)
        ]


def active_customer(rules: LifecycleRules = RULES) -> Customer:
    c = Customer(rules=rules)
    c.open()
    # Six own transactions: a rhythm to fall silent from (inactivity needs one).
    for day in (1, 1.4, 1.8, 2.2, 2.6, 3):
        c.money("deposit", day, "100.00")
    return c


def test_first_account_opened_starts_acquisition_with_onboarding_strategy() -> None:
    c = Customer()
    [change] = c.open()
    assert isinstance(change, StageChanged)
    assert change.stage is Stage.ACQUISITION and change.previous_stage is None
    assert change.strategy.code == "onboarding_offer"
    assert change.cause_event_id == "C1-1"


def test_three_customer_initiated_transactions_activate_into_growth() -> None:
    c = Customer()
    c.open()
    for day in (1, 2, 3):
        c.money("deposit", day, "200.00")
    assert c.stages() == [(Stage.ACQUISITION, 0), (Stage.GROWTH, 3)]


def test_a_balance_of_1000_activates_at_once() -> None:
    c = Customer()
    c.open()
    c.money(
        "transfer.in",
        5,
        "1000.00",
        counterparty={"bank_code": "ICBC", "account": "1", "kind": "person"},
    )
    assert c.stages()[-1] == (Stage.GROWTH, 5)


def test_not_activated_within_90_days_becomes_dormant_on_day_90() -> None:
    c = Customer()
    c.open()
    c.money("deposit", 1, "50.00")
    c.wait(200)
    assert (Stage.DORMANT, 90) in c.stages()


def test_inactivity_for_45_days_raises_a_disengagement_signal_even_with_no_new_event() -> None:
    c = active_customer()
    c.wait(60)
    assert ("raised", SignalKind.INACTIVITY, ChurnCause.DISENGAGEMENT) in c.signals()
    raised = next(o for o in c.outputs if isinstance(o, ChurnSignalChanged))
    assert (raised.occurred_at - T0).days == 48  # last activity day 3 + 45
    assert c.stages()[-1] == (Stage.AT_RISK, 48)


def test_activity_resolves_inactivity_and_returns_to_the_rule_stage() -> None:
    c = active_customer()
    c.wait(60)
    c.money("card.payment", 61, "10.00")
    assert ("resolved", SignalKind.INACTIVITY, ChurnCause.DISENGAGEMENT) in c.signals()
    assert c.stages()[-1] == (Stage.GROWTH, 61)


def test_no_activity_for_180_days_is_dormant() -> None:
    c = active_customer()
    c.wait(400)
    assert (Stage.DORMANT, 183) in c.stages()


def test_closing_the_last_account_churns_and_reopening_is_a_win_back() -> None:
    c = active_customer()
    c.send("account.closed", 10, account_id="A1")
    assert c.stages()[-1] == (Stage.CHURNED, 10)
    [change] = c.open(40)
    assert isinstance(change, StageChanged)
    assert change.stage is Stage.ACQUISITION and change.previous_stage is Stage.CHURNED
    assert change.win_back


def test_maturity_needs_tenure_depth_and_recent_activity() -> None:
    c = active_customer()
    c.send("product.opened", 5, product={"product_id": "P1", "category": "card"})
    c.send("product.opened", 6, product={"product_id": "P2", "category": "fund"})
    for day in range(30, 400, 20):
        c.money("card.payment", day, "1.00")
    stages = c.stages()
    assert (Stage.MATURITY, 365) in stages


def test_duplicate_event_ids_change_nothing() -> None:
    c = active_customer()
    before = c.state
    out = c.money("deposit", 4, "999.00", event_id="C1-2")
    assert out == []
    assert c.state == before


def test_a_state_saved_with_iso_times_for_its_event_ids_still_knows_them() -> None:
    """States saved before 2026-12-06 kept each recent event id with an ISO time; they are
    read as epoch seconds, and a duplicate of one of those events still changes nothing."""
    c = active_customer()
    assert c.state is not None
    saved = orjson.loads(encode_state(c.state, 0, None).partition(b"|")[2])
    assert all(isinstance(at, int) for at in saved["recent_event_ids"].values())
    saved["recent_event_ids"] = {
        event_id: datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
        for event_id, at in saved["recent_event_ids"].items()
    }
    old = decode_state(b"0 0|" + orjson.dumps(saved))
    assert old == c.state
    c.state = old
    assert c.money("deposit", 4, "999.00", event_id="C1-2") == []
    assert c.state == old


def test_a_redelivery_from_before_the_ids_kept_is_known_by_its_position() -> None:
    """More of a customer's events redelivered than the newest ids kept (a rebalance before
    the first commit redelivers a partition from its start): the record at or before the last
    applied position is a duplicate."""
    events = [
        parse_account_event(
            {
                "event_id": f"C1-{n}",
                "event_type": "account.opened" if n == 0 else "deposit",
                "occurred_at": (T0 + timedelta(hours=n)).isoformat(),
                "customer_id": "C1",
                "account_id": "A1",
                **({} if n == 0 else {"amount": "10.00", "balance_after": f"{10 * n}.00"}),
                "currency": "CNY",
            }
        )
        for n in range(300)
    ]

    def feed(state: CustomerState | None, positioned: bool) -> CustomerState | None:
        for offset, event in enumerate(events):
            at = event.occurred_at
            position = (2, 500 + offset) if positioned else None
            state = apply_event(state, event, at, RULES, position=position).state
        return state

    once = feed(None, positioned=True)
    assert once is not None and len(once.recent_event_ids) < 300
    assert feed(copy.deepcopy(once), positioned=True) == once
    # By their ids alone, the oldest redelivered deposits count again.
    assert feed(copy.deepcopy(once), positioned=False) != once


def test_complaint_raises_and_a_second_within_30_days_escalates_to_at_risk() -> None:
    c = active_customer()
    c.send("complaint.filed", 5)
    c.send("complaint.filed", 9)
    kinds = [s for s in c.signals() if s[1] is SignalKind.COMPLAINT]
    assert kinds == [
        ("raised", SignalKind.COMPLAINT, ChurnCause.SERVICE_DISSATISFACTION),
        ("escalated", SignalKind.COMPLAINT, ChurnCause.SERVICE_DISSATISFACTION),
    ]
    assert c.stages()[-1] == (Stage.AT_RISK, 9)
    c.money("deposit", 20, "1.00")
    c.wait(45)
    assert ("resolved", SignalKind.COMPLAINT, ChurnCause.SERVICE_DISSATISFACTION) in c.signals()


def other_bank(bank: str = "CMB", **fields: Any) -> dict[str, Any]:
    return {"bank_code": bank, "account": "6222", "kind": "person", **fields}


def own_account_elsewhere(bank: str = "CMB") -> dict[str, Any]:
    """The customer's own account at another bank, as a bank that knows it says."""
    return other_bank(bank, own_account=True)


def saver() -> Customer:
    """A customer with 20,000 kept steady for three months, shopping weekly: the balance-drain
    rule knows where the balance usually gets to each month (day 95 is in April)."""
    c = active_customer()
    c.money("deposit", 4, "20000.00")
    for day in range(7, 95, 7):
        c.money("card.payment", day, "10.00")
    return c


def test_balance_drained_to_another_bank_is_competitor_attraction() -> None:
    c = saver()
    c.money("transfer.out", 100, "15000.00", counterparty=own_account_elsewhere())
    drains = [s for s in c.signals() if s[1] is SignalKind.BALANCE_DRAIN]
    assert drains == [("raised", SignalKind.BALANCE_DRAIN, ChurnCause.COMPETITOR_ATTRACTION)]


def test_balance_drained_by_spending_is_financial_distress() -> None:
    c = saver()
    for day in range(100, 110):
        c.money("withdrawal", day, "1500.00")
    drains = [s for s in c.signals() if s[1] is SignalKind.BALANCE_DRAIN]
    assert drains[0] == ("raised", SignalKind.BALANCE_DRAIN, ChurnCause.FINANCIAL_DISTRESS)


def test_no_drain_is_judged_before_two_months_of_the_customers_history() -> None:
    c = active_customer()
    c.money("deposit", 4, "20000.00")
    for day in range(5, 15):
        c.money("withdrawal", day, "1500.00")
    assert not [s for s in c.signals() if s[1] is SignalKind.BALANCE_DRAIN]


def test_balance_drained_after_a_complaint_is_service_dissatisfaction() -> None:
    c = saver()
    c.send("complaint.filed", 100)
    for day in range(101, 111):
        c.money("withdrawal", day, "1500.00")
    drains = [s for s in c.signals() if s[1] is SignalKind.BALANCE_DRAIN]
    assert drains[0] == ("raised", SignalKind.BALANCE_DRAIN, ChurnCause.SERVICE_DISSATISFACTION)
    at_risk = [o for o in c.outputs if isinstance(o, StageChanged) and o.stage is Stage.AT_RISK]
    assert at_risk[0].probable_cause is ChurnCause.SERVICE_DISSATISFACTION
    assert at_risk[0].churn_causes == [ChurnCause.SERVICE_DISSATISFACTION]


def test_probable_cause_is_the_heaviest_and_on_a_tie_the_first_seen() -> None:
    c = saver()
    for day in range(100, 110):
        c.money("withdrawal", day, "1500.00")  # drain: financial distress, 0.6
    c.wait(160)  # no customer-initiated activity since day 109: inactivity, 0.6, disengagement
    assert {s[2] for s in c.signals() if s[0] == "raised"} == {
        ChurnCause.FINANCIAL_DISTRESS,
        ChurnCause.DISENGAGEMENT,
    }
    assert c.state is not None
    assert probable_cause(c.state) is ChurnCause.FINANCIAL_DISTRESS
    c.send("complaint.filed", 161)
    c.send("complaint.filed", 162)  # escalated: 0.8 outweighs either 0.6
    assert probable_cause(c.state) is ChurnCause.SERVICE_DISSATISFACTION


def test_transfers_of_30_percent_to_other_banks_within_7_days() -> None:
    c = active_customer()
    c.money("deposit", 4, "10000.00")
    c.money("transfer.out", 5, "2000.00", counterparty=own_account_elsewhere())
    assert not [s for s in c.signals() if s[1] is SignalKind.COMPETITOR_TRANSFER]
    c.money("transfer.out", 8, "1500.00", counterparty=own_account_elsewhere())
    assert (
        "raised",
        SignalKind.COMPETITOR_TRANSFER,
        ChurnCause.COMPETITOR_ATTRACTION,
    ) in c.signals()


def test_transfers_within_our_own_bank_are_not_competitor_transfers() -> None:
    c = active_customer()
    c.money("deposit", 4, "10000.00")
    c.money("transfer.out", 5, "4000.00", counterparty=other_bank("RAPPORTBANK"))
    assert not [s for s in c.signals() if s[1] is SignalKind.COMPETITOR_TRANSFER]


def test_salary_seen_two_months_then_missing_45_days_raises_salary_stopped() -> None:
    c = active_customer()
    for day in (25, 56, 84):
        c.money(
            "transfer.in", day, "8000.00", counterparty_key="payroll", counterparty=other_bank()
        )
        c.money("card.payment", day + 1, "10.00")
    for day in range(90, 140, 5):
        c.money("card.payment", day, "10.00")
    salary = [s for s in c.signals() if s[1] is SignalKind.SALARY_STOPPED]
    assert salary == [("raised", SignalKind.SALARY_STOPPED, ChurnCause.COMPETITOR_ATTRACTION)]
    raised = next(
        o
        for o in c.outputs
        if isinstance(o, ChurnSignalChanged) and o.signal is SignalKind.SALARY_STOPPED
    )
    assert (raised.occurred_at - T0).days == 84 + 45
    assert "6222" not in str(raised.evidence)


def test_product_closed_and_not_replaced_in_30_days() -> None:
    c = active_customer()
    c.send("product.closed", 5, product={"product_id": "P1", "category": "card"})
    c.money("deposit", 20, "1.00")
    c.money("deposit", 40, "1.00")
    assert ("raised", SignalKind.PRODUCT_CLOSURE, ChurnCause.DISENGAGEMENT) in c.signals()


def test_product_replaced_within_30_days_raises_nothing() -> None:
    c = active_customer()
    c.send("product.closed", 5, product={"product_id": "P1", "category": "card"})
    c.send("product.opened", 10, product={"product_id": "P9", "category": "card"})
    c.money("deposit", 40, "1.00")
    assert not [s for s in c.signals() if s[1] is SignalKind.PRODUCT_CLOSURE]


def test_tier_hysteresis_keeps_a_customer_near_the_line() -> None:
    assert target_tier(None, Decimal(50000), RULES) is Tier.AFFLUENT
    assert target_tier(Tier.AFFLUENT, Decimal(46000), RULES) is Tier.AFFLUENT
    assert target_tier(Tier.AFFLUENT, Decimal(44999), RULES) is Tier.MASS
    assert target_tier(Tier.MASS, Decimal(49999), RULES) is Tier.MASS
    assert target_tier(Tier.HNW, Decimal(950000), RULES) is Tier.HNW
    assert target_tier(Tier.HNW, Decimal(40000), RULES) is Tier.MASS


def test_tier_change_is_an_event_on_30_day_average_balance() -> None:
    c = active_customer()
    c.money("deposit", 4, "2000000.00")
    c.wait(40)
    tiers = [o.tier for o in c.outputs if isinstance(o, StageChanged) and o.type == "tier.changed"]
    assert tiers[-1] is Tier.HNW


def anniversaries(c: Customer) -> list[tuple[int, int, Tier]]:
    return [
        (o.years, (o.occurred_at - T0).days, o.tier)
        for o in c.outputs
        if isinstance(o, TenureAnniversary)
    ]


def test_each_tenure_anniversary_is_announced_on_its_day_with_the_tier_then() -> None:
    c = active_customer()
    for day in range(30, 800, 25):
        c.money("card.payment", day, "1.00")
    # 2025 and 2026 are not leap years: anniversaries on days 365 and 730.
    assert anniversaries(c) == [(1, 365, Tier.MASS), (2, 730, Tier.MASS)]
    # Time passing alone announces the next one.
    c.wait(1096)
    assert anniversaries(c)[-1] == (3, 1095, Tier.MASS)


def test_a_29_february_start_has_its_anniversary_on_28_february() -> None:
    start = datetime(2024, 2, 29, tzinfo=UTC)
    assert anniversary(start, 1) == datetime(2025, 2, 28, tzinfo=UTC)
    assert anniversary(start, 4) == datetime(2028, 2, 29, tzinfo=UTC)


def test_a_state_saved_before_anniversaries_existed_announces_none_of_the_past() -> None:
    c = active_customer()
    assert c.state is not None
    c.state.anniversaries_passed = None
    c.money("card.payment", 500, "1.00")  # the first anniversary (day 365) is behind it
    c.money("card.payment", 740, "1.00")
    assert anniversaries(c) == [(2, 730, Tier.MASS)]


def test_a_birthday_is_announced_at_midnight_in_the_customers_zone() -> None:
    c = active_customer()
    c.send("customer.updated", 5, profile={"birthday": "1990-03-01", "time_zone": "Europe/London"})
    for day in range(30, 450, 25):
        c.money("card.payment", day, "1.00")
    births = [o for o in c.outputs if isinstance(o, CustomerBirthday)]
    assert [b.occurred_at for b in births] == [
        datetime(2025, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    ]


def test_a_birthday_already_passed_this_year_waits_for_next_year() -> None:
    c = active_customer()
    c.send("customer.updated", 5, profile={"birthday": "1990-01-02"})  # T0 is 1 January
    c.money("card.payment", 100, "1.00")
    assert [o for o in c.outputs if isinstance(o, CustomerBirthday)] == []
    c.money("card.payment", 367, "1.00")
    (birthday,) = [o for o in c.outputs if isinstance(o, CustomerBirthday)]
    # Midnight in Shanghai, the default zone, is 16:00 UTC the day before.
    assert birthday.occurred_at == datetime(2026, 1, 1, 16, 0, tzinfo=UTC)
