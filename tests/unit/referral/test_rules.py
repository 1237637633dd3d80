"""Referral rules, step by step: leads, attribution precedence, qualification paths, each fraud
guard and expiry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas.account_events import CUSTOMER_INITIATED
from schemas.referral import LeadChanged, LeadType, ReferralReason
from services.referral.domain import (
    Candidate,
    ChainMatch,
    CodeGrant,
    CounterpartyState,
    CustomerReferralState,
    Decision,
    Link,
    Movement,
    RefereeOutcome,
    ReferralRules,
    decide,
    link,
    on_account_event,
    on_chain_match,
    on_decision,
    referral_id,
)

RULES = ReferralRules()
T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


class Counterparty:
    def __init__(self, key: str = "cp1") -> None:
        self.key = key
        self.state: CounterpartyState | None = None
        self.leads: list[tuple[str, str, LeadType]] = []
        self.matches: list[ChainMatch] = []
        self.events: list[LeadChanged] = []
        self.n = 0

    def pay(
        self,
        customer: str,
        at: float,
        amount: str = "100",
        business: bool = False,
        funding: bool = False,
        event_id: str | None = None,
        **link_fields: Any,
    ) -> None:
        self.n += 1
        outcome = link(
            self.state,
            Link(
                event_id=event_id or f"e{self.n}",
                occurred_at=day(at),
                customer_id=customer,
                counterparty_key=self.key,
                business=business,
                amount=Decimal(amount),
                funding=funding,
                **{"direction": "out", **link_fields},
            ),
            RULES,
        )
        self.state = outcome.state
        self.events += outcome.leads
        self.leads += [(e.type, e.suggested_referrer, e.lead_type) for e in outcome.leads]
        self.matches += outcome.matches


def test_three_transactions_by_one_customer_make_a_retail_lead() -> None:
    cp = Counterparty()
    cp.pay("A", 0)
    cp.pay("A", 10)
    assert cp.leads == []
    cp.pay("A", 20)
    assert cp.leads == [("lead.detected", "A", LeadType.RETAIL)]


def test_two_customers_make_a_lead_and_three_make_it_corporate() -> None:
    cp = Counterparty()
    cp.pay("A", 0)
    cp.pay("B", 1, amount="500")
    assert cp.leads == [("lead.detected", "B", LeadType.RETAIL)]  # same count, larger amount
    cp.pay("C", 3)
    assert cp.leads[-1] == ("lead.updated", "B", LeadType.CORPORATE)


def test_a_business_counterparty_is_a_corporate_lead() -> None:
    cp = Counterparty()
    for n in range(3):
        cp.pay("A", n, business=True)
    assert cp.leads == [("lead.detected", "A", LeadType.CORPORATE)]


def test_a_payee_of_many_customers_without_a_kind_is_inferred_a_business() -> None:
    cp = Counterparty()
    cp.pay("A", 0)
    cp.pay("B", 1)
    assert cp.events[-1].counterparty_kind == "unknown"
    cp.pay("C", 3)
    assert cp.leads[-1] == ("lead.updated", "A", LeadType.CORPORATE)
    assert cp.events[-1].counterparty_kind == "business"
    assert cp.events[-1].kind_basis == "inferred: is paid by 3 customers"


def test_a_monthly_credit_of_similar_amount_is_an_employer_or_pension_payer() -> None:
    cp = Counterparty()
    for n, amount in enumerate(("8000", "8100", "7950")):
        cp.pay("A", 31 * n, amount=amount, direction="in")
    assert cp.leads == [("lead.detected", "A", LeadType.CORPORATE)]
    assert cp.events[0].kind_basis is not None and "monthly credit" in cp.events[0].kind_basis


def test_a_declared_kind_is_taken_as_declared() -> None:
    cp = Counterparty()
    for n in range(3):
        cp.pay("A", n, kind="person")
    assert cp.events[0].counterparty_kind == "person"
    assert cp.events[0].kind_basis == "declared by the core-banking feed"


def test_the_state_and_the_customers_own_accounts_are_never_leads() -> None:
    tax = Counterparty("tax")
    for n in range(4):
        tax.pay(str(n), n, purpose="tax")
    pension = Counterparty("pension")
    for n in range(4):
        pension.pay("A", n, kind="government", direction="in")
    own = Counterparty("own")
    for n in range(4):
        own.pay("A", n, own_account=True)
    assert tax.leads == pension.leads == own.leads == []


def test_utilities_insurers_and_lenders_are_never_leads() -> None:
    for purpose in ("utilities", "insurance", "loan_repayment", "bill"):
        cp = Counterparty(purpose)
        for n in range(6):
            cp.pay(str(n % 3), 30 * n, purpose=purpose)
        assert cp.leads == [], purpose


def test_an_employer_paying_salaries_is_a_corporate_lead_by_its_purpose() -> None:
    cp = Counterparty()
    for n in range(3):
        cp.pay("A", 30 * n, purpose="salary", direction="in")
    assert cp.leads == [("lead.detected", "A", LeadType.CORPORATE)]
    assert cp.events[0].kind_basis == "inferred: payments marked salary"


def test_a_lead_is_scored_regular_ties_of_many_customers_first() -> None:
    rent = Counterparty("landlord")
    for month in range(3):
        rent.pay("A", 30 * month, amount="3000")
        rent.pay("B", 30 * month + 2, amount="2500")
    family = Counterparty("family")
    for day in (0, 3, 5):
        family.pay("A", day, amount="200")
    rent_score, family_score = rent.events[-1].score, family.events[-1].score
    assert rent_score is not None and family_score is not None
    assert rent_score > family_score > 0
    assert 0 <= family_score <= 100 and rent_score <= 100


def test_leads_scoring_under_the_setting_are_not_raised() -> None:
    cp = Counterparty()
    for day in (0, 3, 5):
        cp.pay("A", day, amount="200")
    assert cp.leads and cp.events[0].score is not None
    strict = ReferralRules(lead_min_score=cp.events[0].score + 1)
    outcome = None
    for n, day in enumerate((0, 3, 5)):
        outcome = link(
            outcome.state if outcome else None,
            Link(
                event_id=f"x{n}",
                occurred_at=T0 + timedelta(days=day),
                customer_id="A",
                counterparty_key="cp",
                business=False,
                direction="out",
                amount=Decimal(200),
            ),
            strict,
        )
        assert not outcome.leads


def test_lead_updates_at_most_once_a_day() -> None:
    cp = Counterparty()
    cp.pay("A", 0)
    cp.pay("B", 0.1)
    cp.pay("B", 0.2)  # referrer changes to B, but the same day as detection
    cp.pay("B", 0.3)
    assert [k for k, *_ in cp.leads] == ["lead.detected"]
    cp.pay("B", 1.5)
    assert cp.leads[-1][:2] == ("lead.updated", "B")


def test_ties_older_than_the_window_do_not_count_and_duplicates_change_nothing() -> None:
    cp = Counterparty()
    cp.pay("A", 0, event_id="x")
    cp.pay("A", 0, event_id="x")
    cp.pay("A", 0, event_id="x")
    assert cp.leads == []
    cp.pay("A", 95)
    cp.pay("A", 96)
    assert cp.leads == []  # the day-0 tie fell out of the 90-day window


def test_funding_from_a_lead_matches_and_is_not_a_tie_but_an_expired_lead_does_not() -> None:
    cp = Counterparty()
    for n in range(3):
        cp.pay("A", n)
    cp.pay("NEW", 10, funding=True)
    assert [(m.referee, m.referrer) for m in cp.matches] == [("NEW", "A")]
    assert cp.state is not None and all(t.customer_id == "A" for t in cp.state.ties)
    cp.pay("NEW2", 2 + 181, funding=True)  # 181 days after the last transaction
    assert len(cp.matches) == 1


# -- referees -----------------------------------------------------------------------------------


class Customer:
    def __init__(self, customer_id: str) -> None:
        self.id = customer_id
        self.state: CustomerReferralState | None = None
        self.events: list[tuple[str, ReferralReason | None]] = []
        self.candidates: list[Candidate] = []
        self.links: list[Link] = []
        self.n = 0

    def send(self, kind: str, at: float, code: CodeGrant | None = None, **fields: Any) -> None:
        self.n += 1
        movement = Movement(
            event_id=f"{self.id}-{self.n}",
            event_type=kind,
            occurred_at=day(at),
            initiated=fields.pop("initiated", kind in CUSTOMER_INITIATED),
            **fields,
        )
        outcome = on_account_event(self.state, self.id, movement, code, RULES)
        self._take(outcome)

    def _take(self, outcome: RefereeOutcome) -> None:
        self.state = outcome.state
        self.events += [(e.type, e.reason_code) for e in outcome.events]
        self.candidates += outcome.candidates
        self.links += outcome.links

    def chain(self, referrer: str, at: float) -> None:
        match = ChainMatch(
            referee=self.id,
            referrer=referrer,
            counterparty_key="cp1",
            lead_type=LeadType.RETAIL,
            occurred_at=day(at),
        )
        self._take(on_chain_match(self.state, match))

    def decided_by(self, referrer: CustomerReferralState | None) -> CustomerReferralState:
        candidate = self.candidates[-1]
        referrer_state, decisions = decide(referrer, candidate, RULES)
        assert decisions
        self._take(on_decision(self.state, decisions[0], RULES))
        return referrer_state


GRANT = CodeGrant(owner="R", issued_at=day(-10))


def test_a_valid_code_makes_a_candidate_and_the_referrer_side_attributes() -> None:
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="AN", referral_code="ABCD1234")
    assert [(x.referrer, x.via) for x in c.candidates] == [("R", "code")]
    c.decided_by(None)
    assert c.events == [("referral.attributed", None)]


def test_unknown_and_expired_codes_are_rejected() -> None:
    unknown = Customer("N1")
    unknown.send("account.opened", 0, code=None, account_id="A", referral_code="ZZZZ9999")
    assert unknown.events == [("referral.rejected", ReferralReason.CODE_UNKNOWN)]
    expired = Customer("N2")
    old = CodeGrant(owner="R", issued_at=day(-400))
    expired.send("account.opened", 0, code=old, account_id="A", referral_code="ABCD1234")
    assert expired.events == [("referral.rejected", ReferralReason.CODE_EXPIRED)]
    assert unknown.candidates == expired.candidates == []


def test_an_explicit_code_wins_over_a_chain_tie() -> None:
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="AN", referral_code="ABCD1234")
    c.chain("OTHER", 3)
    assert [x.referrer for x in c.candidates] == ["R"]


def test_funding_within_30_days_is_flagged_for_the_chain_and_makes_a_chain_candidate() -> None:
    c = Customer("N")
    c.send("account.opened", 0, account_id="AN")
    c.send("transfer.in", 5, account_id="AN", amount=Decimal(5000), counterparty_key="cp1")
    c.send("transfer.in", 35, account_id="AN", amount=Decimal(10), counterparty_key="cp2")
    assert [(x.counterparty_key, x.funding) for x in c.links] == [("cp1", True), ("cp2", False)]
    c.chain("A", 5)
    assert [(x.referrer, x.via, x.referral_id) for x in c.candidates] == [
        ("A", "chain", referral_id("N", day(0)))
    ]


def test_a_first_salary_is_a_tie_not_chain_funding() -> None:
    c = Customer("N")
    c.send("account.opened", 0, account_id="AN")
    for at in (5, 6):
        c.send(
            "transfer.in",
            at,
            account_id="AN",
            amount=Decimal(8000),
            counterparty_key="employer",
            income=at == 5,
        )
    assert [(x.counterparty_key, x.funding) for x in c.links] == [
        ("employer", False),
        ("employer", True),
    ]


def test_self_referral_shared_device_ring_and_velocity() -> None:
    referrer = CustomerReferralState(customer_id="R", hashes=["phoneR"], upline=["X"])
    # the referee is the referrer
    self_ref = Candidate(
        referral_id="r0",
        referrer="R",
        referee="R",
        via="code",
        lead_type=LeadType.RETAIL,
        occurred_at=day(0),
    )
    _, (d,) = decide(referrer, self_ref, RULES)
    assert d.reason_code is ReferralReason.SELF_REFERRAL
    shared = self_ref.model_copy(
        update={"referral_id": "r1", "referee": "S", "referee_hashes": ("phoneR",)}
    )
    _, (d,) = decide(referrer, shared, RULES)
    assert (d.outcome, d.reason_code) == (
        "rejected",
        ReferralReason.SHARED_PHONE_OR_DEVICE,
    )
    ring = self_ref.model_copy(update={"referral_id": "r2", "referee": "X"})  # X referred R
    _, (d, *_) = decide(referrer, ring, RULES)
    assert d.reason_code is ReferralReason.REFERRAL_RING
    state: CustomerReferralState | None = referrer
    outcomes = []
    for n in range(11):
        candidate = self_ref.model_copy(
            update={"referral_id": f"v{n}", "referee": f"N{n}", "occurred_at": day(n)}
        )
        state, decided = decide(state, candidate, RULES)
        outcomes.append(decided[0].outcome)
    assert outcomes == ["attributed"] * 10 + ["held"]
    # The whole burst: the ten let through before it showed are held after the fact.
    after = decided[1:]
    assert [d.candidate.referee for d in after] == [f"N{n}" for n in range(10)]
    assert all(d.after_the_fact and d.reason_code is ReferralReason.VELOCITY for d in after)
    _, again = decide(state, candidate, RULES)
    assert again == []  # the same candidate again changes nothing


def test_ring_of_three_through_the_upline() -> None:
    """A referred B, B referred C; C's code given by A (returning) closes the ring."""
    b = Customer("B")
    b.send(
        "account.opened",
        0,
        code=CodeGrant(owner="A", issued_at=day(-1)),
        account_id="B1",
        referral_code="CODEA123",
    )
    a_state = b.decided_by(None)
    c = Customer("C")
    c.send(
        "account.opened",
        5,
        code=CodeGrant(owner="B", issued_at=day(1)),
        account_id="C1",
        referral_code="CODEB123",
    )
    b_as_referrer = b.state
    c.decided_by(b_as_referrer)
    assert c.state is not None and c.state.upline == ["B", "A"]
    a = Customer("A")
    a.state = a_state
    a.send(
        "account.opened",
        9,
        code=CodeGrant(owner="C", issued_at=day(6)),
        account_id="A9",
        referral_code="CODEC123",
    )
    a.decided_by(c.state)
    assert a.events == [("referral.rejected", ReferralReason.REFERRAL_RING)]


def test_two_customers_referring_each_other_are_caught_while_both_referrals_travel() -> None:
    """A's code opens B while B's code brings A back, and each candidate reaches its referrer
    before either decision is back: no upline is known yet, the referrer's own candidate is.
    The later of the two referrals is the ring's: it is rejected, the first stands, in
    whichever order the two are decided."""
    a, b = Customer("A"), Customer("B")
    a.state = CustomerReferralState(customer_id="A", opened_at=day(-400))
    b.send(
        "account.opened",
        0,
        code=CodeGrant(owner="A", issued_at=day(-1)),
        account_id="B1",
        referral_code="CODEA123",
    )
    a.send(
        "account.opened",
        1,
        code=CodeGrant(owner="B", issued_at=day(0)),
        account_id="A2",
        referral_code="CODEB123",
    )
    assert a.state is not None and b.state is not None
    for first in (True, False):
        if first:
            _, (to_b, *_) = decide(a.state.model_copy(deep=True), b.candidates[-1], RULES)
            _, (to_a, *_) = decide(b.state.model_copy(deep=True), a.candidates[-1], RULES)
        else:
            _, (to_a, *_) = decide(b.state.model_copy(deep=True), a.candidates[-1], RULES)
            _, (to_b, *_) = decide(a.state.model_copy(deep=True), b.candidates[-1], RULES)
        assert to_b.outcome == "attributed"
        assert to_a.reason_code is ReferralReason.REFERRAL_RING


def test_qualifies_by_deposit_or_by_transactions_once() -> None:
    by_deposit = Customer("N1")
    by_deposit.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    by_deposit.send("deposit", 1, account_id="A", amount=Decimal(600))  # before the decision
    by_deposit.decided_by(None)
    by_deposit.send("deposit", 2, account_id="A", amount=Decimal(400))
    by_deposit.send("deposit", 3, account_id="A", amount=Decimal(400))
    assert [e for e, _ in by_deposit.events] == ["referral.attributed", "referral.qualified"]

    by_count = Customer("N2")
    by_count.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    by_count.decided_by(None)
    for n in range(3):
        by_count.send("card.payment", n + 1, account_id="A", amount=Decimal(5))
    assert [e for e, _ in by_count.events] == ["referral.attributed", "referral.qualified"]


def test_a_partition_redelivered_from_far_back_changes_nothing() -> None:
    """More of a customer's events redelivered than their ids are kept (a rebalance before the
    first commit redelivered a partition's first 3,300 records): known by their position."""
    rules = RULES.model_copy(update={"qualify_deposit": Decimal(1000)})

    def movements() -> list[Movement]:
        found = [
            Movement(
                event_id="N-open",
                event_type="account.opened",
                occurred_at=day(0),
                account_id="A",
                position=(3, 100),
            )
        ]
        for n in range(60):
            found.append(
                Movement(
                    event_id=f"N-{n}",
                    event_type="card.payment" if n % 2 else "deposit",
                    occurred_at=day(0) + timedelta(minutes=10 * (n + 1)),
                    account_id="A",
                    amount=Decimal(10),
                    initiated=bool(n % 2),
                    position=(3, 101 + n),
                )
            )
        return found

    state = None
    for movement in movements():
        state = on_account_event(state, "N", movement, None, rules).state
    assert state is not None
    once = state.model_copy(deep=True)
    assert len(once.money_in) == 30 and len(once.transacted) == 30
    for movement in movements():
        state = on_account_event(state, "N", movement, None, rules).state
    assert state == once
    # Without positions, only the last 50 ids are known: the first ten would count again.
    for movement in movements():
        state = on_account_event(state, "N", replace(movement, position=None), None, rules).state
    assert len(state.money_in) > 30


def test_after_30_days_nothing_qualifies() -> None:
    late = Customer("N")
    late.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    late.decided_by(None)
    late.send("deposit", 31, account_id="A", amount=Decimal(5000))
    assert [e for e, _ in late.events] == ["referral.attributed"]


def test_money_from_an_account_the_referrer_uses_does_not_qualify() -> None:
    referrer = CustomerReferralState(customer_id="R", accounts=["R-ACC"], counterparties=["cpR"])
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    c.send("transfer.in", 2, account_id="A", amount=Decimal(2000), counterparty_key="cpR")
    c.decided_by(referrer)
    assert [e for e, _ in c.events] == ["referral.attributed"]
    c.send("deposit", 3, account_id="A", amount=Decimal(1000))
    # Money from an external account came in: the referrer's payments are read first.
    assert c.candidates[-1].funding_check
    c.decided_by(referrer)
    assert [e for e, _ in c.events] == ["referral.attributed", "referral.qualified"]


def test_a_referee_funded_by_the_referrer_directly_is_held() -> None:
    referrer = CustomerReferralState(customer_id="R", accounts=["R-ACC"])
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    c.decided_by(referrer)
    c.send(
        "transfer.in",
        1,
        account_id="A",
        amount=Decimal(1500),
        counterparty_own_bank_account="R-ACC",
    )
    assert c.events[-1] == ("referral.held", ReferralReason.FUNDED_BY_REFERRER)
    c.send("deposit", 3, account_id="A", amount=Decimal(5000))
    assert "referral.qualified" not in [e for e, _ in c.events]


def test_a_referee_funded_through_one_hop_is_held() -> None:
    referrer = CustomerReferralState(
        customer_id="R", payments_out=[("cpX", day(-2), Decimal(1500))], counterparties=["cpX"]
    )
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    c.send("transfer.in", 1, account_id="A", amount=Decimal("1480"), counterparty_key="cpX")
    c.decided_by(referrer)
    c.decided_by(referrer)  # the funding check of the qualifying moment
    assert c.events[-1] == ("referral.held", ReferralReason.FUNDED_BY_REFERRER)
    # Unrelated money from an account the referrer pays (a landlord moving in) is not that.
    d = Customer("M")
    d.send("account.opened", 0, code=GRANT, account_id="B", referral_code="ABCD1234")
    d.send("transfer.in", 1, account_id="B", amount=Decimal(9000), counterparty_key="cpX")
    d.decided_by(referrer)
    assert d.candidates[-1].funding_check
    d.decided_by(referrer)
    assert [e for e, _ in d.events] == ["referral.attributed"]


def test_a_payment_to_the_go_between_after_the_referral_is_read_before_qualifying() -> None:
    """The usual order of one-hop funding: the referral first, then the referrer pays a friend
    elsewhere, who passes the money on. The decision could not carry that payment; the check
    at the qualifying moment reads the referrer's payments up to it."""
    referrer = Customer("R")
    referrer.send("account.opened", -100, account_id="RA")
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    referrer.state = c.decided_by(referrer.state)
    assert c.events == [("referral.attributed", None)]
    referrer.send("transfer.out", 1, account_id="RA", amount=Decimal(2000), counterparty_key="cpX")
    # A bill and a payment to a business could fund no one: not kept.
    referrer.send(
        "transfer.out",
        1,
        account_id="RA",
        amount=Decimal(90),
        counterparty_key="cpU",
        purpose="utilities",
    )
    referrer.send(
        "transfer.out",
        1,
        account_id="RA",
        amount=Decimal(90),
        counterparty_key="cpB",
        counterparty_kind="business",
    )
    assert referrer.state is not None
    assert [p[0] for p in referrer.state.payments_out] == ["cpX"]
    c.send("transfer.in", 3, account_id="A", amount=Decimal(1900), counterparty_key="cpX")
    check = c.candidates[-1]
    assert check.funding_check and check.occurred_at == day(3)
    assert c.events == [("referral.attributed", None)]  # no qualifying while it travels
    # The referrer's input has run ahead: a later payment is not in the answer.
    referrer.send("transfer.out", 9, account_id="RA", amount=Decimal(1900), counterparty_key="cpY")
    decided, (answer,) = decide(referrer.state, check, RULES)
    assert [p[0] for p in answer.referrer_payments] == ["cpX"]
    c._take(on_decision(c.state, answer, RULES))
    assert c.events[-1] == ("referral.held", ReferralReason.FUNDED_BY_REFERRER)
    # The answer redelivered, and the check decided again, change nothing.
    before = list(c.events)
    c._take(on_decision(c.state, answer, RULES))
    assert decide(decided, check, RULES)[1] == []
    assert c.events == before


def test_a_payee_in_the_customers_own_name_is_their_own_account_elsewhere() -> None:
    """Most feeds do not flag the customer's own account at another bank; its name does (the
    keyed name of the profile against the payee's). Such a payee is no one's lead and could
    fund no referee."""
    c = Customer("A")
    c.send("customer.updated", 0, holder_name_key="nA")
    for n, (payee, name) in enumerate((("cpOwn", "nA"), ("cpFriend", "nF"), ("cpNoName", None))):
        c.send(
            "transfer.out",
            1 + n,
            account_id="AA",
            amount=Decimal(5000),
            counterparty_key=payee,
            counterparty_name_key=name,
        )
    assert [(x.counterparty_key, x.own_account) for x in c.links] == [
        ("cpOwn", True),
        ("cpFriend", False),
        ("cpNoName", False),
    ]
    assert c.state is not None
    assert [p[0] for p in c.state.payments_out] == ["cpFriend", "cpNoName"]


def test_a_landlord_moving_in_about_the_rent_is_not_funded_by_the_referrer() -> None:
    """Found by the demo (seed 7): a landlord the referrer pays by standing order opened an
    account and, days after the rent came, moved about that much in. Rent on a standing
    order, and the same amount paid by hand month after month, are not kept as payments that
    could fund someone; a one-off payment to the same person is."""
    referrer = Customer("R")
    referrer.send("account.opened", -100, account_id="RA")
    for month in range(3):
        referrer.send(
            "transfer.out",
            -60 + 30 * month,
            account_id="RA",
            amount=Decimal("5479.11"),
            counterparty_key="cpLandlord",
            purpose="rent",
            initiated=False,
        )
        referrer.send(
            "transfer.out",
            -59 + 30 * month,
            account_id="RA",
            amount=Decimal(800),
            counterparty_key="cpNanny",
        )
    referrer.send(
        "transfer.out", 2, account_id="RA", amount=Decimal(3000), counterparty_key="cpNanny"
    )
    assert referrer.state is not None
    assert referrer.state.payments_out == [
        ("cpNanny", day(-59), Decimal(800)),
        ("cpNanny", day(2), Decimal(3000)),
    ]
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    c.decided_by(referrer.state)
    c.send("transfer.in", 5, account_id="A", amount=Decimal(5075), counterparty_key="cpLandlord")
    assert c.candidates[-1].funding_check
    c.decided_by(referrer.state)
    # Not held; money from an account the referrer deals with does not count towards
    # qualifying either, so the landlord qualifies on money of its own.
    assert c.state is not None and c.state.status == "attributed"
    c.send("deposit", 8, account_id="A", amount=Decimal(1000))
    assert [e for e, _ in c.events] == ["referral.attributed", "referral.qualified"]
    assert c.state.qualified_at == day(8)


def test_a_genuine_referee_paid_from_elsewhere_qualifies_at_the_same_moment_after_the_check() -> (
    None
):
    referrer = CustomerReferralState(
        customer_id="R", payments_out=[("cpX", day(-40), Decimal(2000))]
    )
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    c.decided_by(referrer)
    c.send("transfer.in", 2, account_id="A", amount=Decimal(1500), counterparty_key="cpOwn")
    c.send("deposit", 4, account_id="A", amount=Decimal(100))
    assert [e for e, _ in c.events] == ["referral.attributed"]
    assert c.candidates[-1].funding_check
    c.decided_by(referrer)
    assert [e for e, _ in c.events] == ["referral.attributed", "referral.qualified"]
    assert c.state is not None and c.state.qualified_at == day(2)


def test_funding_is_settled_in_event_time_whether_the_check_or_the_money_comes_first() -> None:
    """The referee's own money from elsewhere qualifies it on day 2; the go-between's money
    comes on day 3. Whether the funding check's answer reaches the referee before the day-3
    money or after it, the referral qualifies on day 2 (the referrer's money came after)."""
    referrer = CustomerReferralState(customer_id="R", payments_out=[("cpX", day(1), Decimal(1500))])

    def run(answer_first: bool) -> list[tuple[str, ReferralReason | None]]:
        c = Customer("N")
        c.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
        c.decided_by(referrer)
        c.send("transfer.in", 2, account_id="A", amount=Decimal(2000), counterparty_key="cpOwn")
        check = c.candidates[-1]
        assert check.funding_check and check.occurred_at == day(2)
        if answer_first:
            c.decided_by(referrer)
        c.send("transfer.in", 3, account_id="A", amount=Decimal(1480), counterparty_key="cpX")
        if not answer_first:
            _, (answer,) = decide(referrer, check, RULES)
            c._take(on_decision(c.state, answer, RULES))
        return c.events

    assert run(True) == run(False) == [("referral.attributed", None), ("referral.qualified", None)]


def test_closing_within_90_days_of_qualifying_reverses() -> None:
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    c.decided_by(None)
    c.send("deposit", 1, account_id="A", amount=Decimal(1000))
    c.send("account.closed", 60, account_id="A")
    assert c.events[-1] == ("referral.reversed", ReferralReason.EARLY_EXIT)
    kept = Customer("K")
    kept.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    kept.decided_by(None)
    kept.send("deposit", 1, account_id="A", amount=Decimal(1000))
    kept.send("account.closed", 95, account_id="A")
    assert kept.events[-1][0] == "referral.qualified"


def test_a_phone_shared_with_the_referrer_found_after_attribution_rejects() -> None:
    referrer = CustomerReferralState(customer_id="R", hashes=["phoneR"])
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    referrer = c.decided_by(referrer)
    c.send("customer.updated", 0.01, hashes=("phoneR",))
    assert c.candidates[-1].recheck
    c.decided_by(referrer)
    assert c.events == [
        ("referral.attributed", None),
        ("referral.rejected", ReferralReason.SHARED_PHONE_OR_DEVICE),
    ]
    c.send("deposit", 1, account_id="A", amount=Decimal(5000))
    assert c.events[-1][0] == "referral.rejected"  # a rejected referral never qualifies


def test_no_qualifying_while_a_recheck_is_on_its_way() -> None:
    referrer = CustomerReferralState(customer_id="R", hashes=["phoneR"])
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    referrer = c.decided_by(referrer)
    c.send("customer.updated", 0.01, hashes=("phoneR",))
    c.send("deposit", 0.02, account_id="A", amount=Decimal(5000))  # before the recheck is back
    assert [e for e, _ in c.events] == ["referral.attributed"]
    c.decided_by(referrer)
    assert c.events[-1] == ("referral.rejected", ReferralReason.SHARED_PHONE_OR_DEVICE)
    clean = Customer("M")
    clean.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    other = clean.decided_by(CustomerReferralState(customer_id="R", hashes=["phoneR"]))
    clean.send("customer.updated", 0.01, hashes=("phoneM",))
    clean.send("deposit", 0.02, account_id="A", amount=Decimal(5000))
    clean.decided_by(other)  # confirmed: now it qualifies
    assert [e for e, _ in clean.events] == ["referral.attributed", "referral.qualified"]


def test_a_lead_without_transactions_for_180_days_expires_and_a_new_tie_starts_afresh() -> None:
    cp = Counterparty()
    for n in range(3):
        cp.pay("A", n)
    cp.pay("B", 2 + 181)
    assert [kind for kind, *_ in cp.leads] == ["lead.detected", "lead.expired"]
    assert cp.state is not None and cp.state.lead is None
    assert [t.customer_id for t in cp.state.ties] == ["B"]


def test_a_referrer_whose_phone_arrives_late_still_catches_a_referee_sharing_it() -> None:
    """In a replay the referrer's profile can come after the referral was decided: the
    referral is rejected then, or reversed when the referee has qualified meanwhile."""
    for qualified_first in (False, True):
        referee = Customer("E")
        referee.send("customer.updated", 0, hashes=("phone-shared",))
        referee.send("account.opened", 0, code=GRANT, account_id="AE", referral_code="ABCD1234")
        referrer = referee.decided_by(CustomerReferralState(customer_id="R"))  # no hashes yet
        assert referee.events[-1] == ("referral.attributed", None)
        if qualified_first:
            referee.send("deposit", 1, account_id="AE", amount=Decimal(5000))
            assert referee.events[-1][0] == "referral.qualified"
        late = on_account_event(
            referrer,
            "R",
            Movement(
                event_id="R-profile",
                event_type="customer.updated",
                occurred_at=day(2),
                hashes=("phone-shared",),
            ),
            None,
            RULES,
        )
        (decision,) = late.decisions
        referee._take(on_decision(referee.state, decision, RULES))
        expected = "referral.reversed" if qualified_first else "referral.rejected"
        assert referee.events[-1] == (expected, ReferralReason.SHARED_PHONE_OR_DEVICE)
        # Once is enough: the same profile again decides nothing more.
        assert (
            on_account_event(
                late.state,
                "R",
                Movement(
                    event_id="R-profile-2",
                    event_type="customer.updated",
                    occurred_at=day(3),
                    hashes=("phone-shared",),
                ),
                None,
                RULES,
            ).decisions
            == []
        )


def test_a_held_referral_is_explained_in_english_and_chinese() -> None:
    referrer = CustomerReferralState(customer_id="R", accounts=["R-ACC"])
    c = Customer("N")
    c.send("account.opened", 0, code=GRANT, account_id="A", referral_code="ABCD1234")
    c.decided_by(referrer)
    outcome = on_account_event(
        c.state,
        "N",
        Movement(
            event_id="fund",
            event_type="transfer.in",
            occurred_at=day(1),
            account_id="A",
            amount=Decimal(1500),
            counterparty_own_bank_account="R-ACC",
        ),
        None,
        RULES,
    )
    (held,) = outcome.events
    assert held.explanation is not None
    assert held.explanation["en"].startswith("the referee's account was funded by the referrer")
    assert held.explanation["zh-CN"].startswith("被推荐人账户资金来自推荐人")


def test_a_referral_held_after_the_fact_ends_the_same_whether_the_money_came_first() -> None:
    """A ring closed on day 5 holds a leg attributed on day 0 whose referee deposits enough on
    day 7. Which reaches the referee first, the decision or the deposit, depends on timing (a
    restart, a rebalance): either way the referral is held, then qualified and reversed."""
    seen = []
    for money_first in (False, True):
        leg = Customer("N")
        leg.send("account.opened", 0, code=GRANT, account_id="AN", referral_code="ABCD1234")
        leg.decided_by(CustomerReferralState(customer_id="R"))
        closing = leg.candidates[-1].model_copy(
            update={"referral_id": "ring", "referee": "R", "occurred_at": day(5)}
        )
        after = Decision(
            candidate=leg.candidates[-1].model_copy(update={"occurred_at": day(5)}),
            outcome="held",
            reason_code=ReferralReason.REFERRAL_RING,
            reason=f"{closing.referee} is already in the chain",
            after_the_fact=True,
        )
        changes: list[RefereeOutcome] = []
        deposit = Movement(
            event_id="N-deposit",
            event_type="deposit",
            occurred_at=day(7),
            initiated=True,
            account_id="AN",
            amount=Decimal(5000),
        )
        for step in ("money", "decision") if money_first else ("decision", "money"):
            state = changes[-1].state if changes else leg.state
            changes.append(
                on_account_event(state, "N", deposit, None, RULES)
                if step == "money"
                else on_decision(state, after, RULES)
            )
        seen.append(sorted((e.type, e.occurred_at) for c in changes for e in c.events))
    assert (
        seen[0]
        == seen[1]
        == [
            ("referral.held", day(5)),
            ("referral.qualified", day(7)),
            ("referral.reversed", day(7)),
        ]
    )
