"""The simulator is deterministic, its invalid share is exact, and its truth agrees with the
events it wrote."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest

from services.runtime.codec import Rejection, decode_account_event
from services.runtime.produce import records_from_lines
from services.simulator.simulate import Simulation, simulate
from tests.unit.simulated import customer_events


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return simulate(300, 365, seed=5, invalid_share=0.02)


@pytest.mark.parametrize("profile", ["standard", "varied"])
def test_same_seed_same_bytes_and_truth(profile: str) -> None:
    a, b = simulate(40, 120, seed=3, profile=profile), simulate(40, 120, seed=3, profile=profile)
    assert a.lines == b.lines
    assert a.truth == b.truth
    assert a.truth.profile == profile
    assert simulate(40, 120, seed=4, profile=profile).lines != a.lines


def test_codec_agrees_with_what_the_simulation_says_is_invalid(simulation: Simulation) -> None:
    reasons: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    for record in records_from_lines(simulation.lines):
        result = decode_account_event(record.key, record.value)
        if isinstance(result, Rejection):
            reasons[result.reason.value] += 1
        else:
            accepted[result.event_type] += 1
    assert (
        dict(reasons)
        == simulation.invalid_by_reason
        == simulation.truth.noise.expected_dead_letters
    )
    assert dict(accepted) == simulation.valid_by_type
    assert simulation.invalid > 0


def test_every_persona_and_cause_is_present(simulation: Simulation) -> None:
    personas = Counter(t.persona for t in simulation.truth.customers.values())
    for persona in (
        "stable_saver",
        "pensioner",
        "salaried",
        "growing",
        "high_net_worth",
        "late_joiner",
        "never_active",
        "converted_counterparty",
    ):
        assert personas[persona] > 0, persona
    causes = Counter(t.churn.cause for t in simulation.truth.customers.values() if t.churn)
    assert set(causes) == {
        "competitor_attraction",
        "service_dissatisfaction",
        "financial_distress",
        "disengagement",
    }
    assert {f.pattern for f in simulation.truth.fraud} == {
        "self_referral",
        "ring",
        "velocity",
        "funded_by_referrer",
        "funded_through_hop",
    }
    assert sorted(f.length for f in simulation.truth.fraud if f.pattern == "ring") == [2, 3, 4]


def test_churn_dates_rederived_from_the_events(simulation: Simulation) -> None:
    """A churner's true churn date is when their last open account closed, in the events."""
    open_accounts: dict[str, set[str]] = defaultdict(set)
    emptied_at: dict[str, datetime] = {}
    first_emptied: dict[str, datetime] = {}
    for event in sorted(customer_events(simulation), key=lambda e: e["occurred_at"]):
        customer = event["customer_id"]
        if event["event_type"] == "account.opened":
            open_accounts[customer].add(event["account_id"])
            emptied_at.pop(customer, None)
        elif event["event_type"] == "account.closed":
            open_accounts[customer].discard(event["account_id"])
            if not open_accounts[customer]:
                emptied_at[customer] = datetime.fromisoformat(event["occurred_at"])
                # A ring's churner who comes back later: the churn is the first closure.
                first_emptied.setdefault(customer, emptied_at[customer])
    churners = {c: t.churn for c, t in simulation.truth.customers.items() if t.churn}
    for customer, known in simulation.truth.customers.items():
        if known.win_back:
            assert customer in first_emptied and customer not in emptied_at
            emptied_at[customer] = first_emptied[customer]
    assert churners
    for customer, churn in churners.items():
        assert churn is not None
        if churn.churned_at is None:
            assert customer not in emptied_at and churn.planned_at >= simulation.truth.end
        else:
            # closing several accounts takes a minute each
            assert emptied_at[customer] - churn.churned_at < timedelta(minutes=5), customer
            assert churn.onset < churn.churned_at
    stable_closed = [
        c for c, t in simulation.truth.customers.items() if t.stable and c in emptied_at
    ]
    assert stable_closed == []


def test_conversions_and_fraud_are_in_the_events(simulation: Simulation) -> None:
    events = customer_events(simulation)
    first: dict[str, dict[str, Any]] = {}
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e["occurred_at"]):
        first.setdefault(event["customer_id"], event)
        by_customer[event["customer_id"]].append(event)
    truth = simulation.truth
    assert {c.via for c in truth.conversions} == {"code", "chain"}
    for conversion in truth.conversions:
        opened = first[conversion.customer_id]
        assert opened["event_type"] == "account.opened"
        assert opened.get("referral_code") == conversion.code
        if conversion.code:
            assert truth.codes[conversion.code] == conversion.introduced_by
        funded = [
            e
            for e in by_customer[conversion.customer_id]
            if e["event_type"] == "transfer.in"
            and e["counterparty"]["account"] == conversion.counterparty.account
        ]
        assert (
            funded
            and funded[0]["occurred_at"] < (conversion.opened_at + timedelta(days=30)).isoformat()
        )
        # the introducer really paid or was paid by that counterparty
        assert any(
            e.get("counterparty", {}).get("account") == conversion.counterparty.account
            for e in by_customer[conversion.introduced_by]
        )
    phones = {
        e["customer_id"]: e["profile"]["phone_hash"]
        for e in events
        if e["event_type"] == "customer.updated"
    }
    self_referral = next(f for f in truth.fraud if f.pattern == "self_referral")
    assert phones[self_referral.referees[0]] == phones[self_referral.referrer]
    velocity = next(f for f in truth.fraud if f.pattern == "velocity")
    assert len(velocity.referees) > 10
    code = next(c for c, owner in truth.codes.items() if owner == velocity.referrer)
    assert all(first[r].get("referral_code") == code for r in velocity.referees)


def test_noise_is_counted(simulation: Simulation) -> None:
    events = customer_events(simulation)
    ids = Counter(e["event_id"] for e in events)
    assert sum(n - 1 for n in ids.values()) == simulation.truth.noise.duplicates > 0
    published = [e["occurred_at"] for e in events]
    out_of_order = sum(1 for a, b in itertools.pairwise(published) if b < a)
    assert out_of_order > 0 and simulation.truth.noise.late > 0


def test_accounts_look_like_real_current_accounts(simulation: Simulation) -> None:
    events = customer_events(simulation)
    ledger = [e for e in events if "balance_after" in e and e["event_type"] != "balance.snapshot"]
    postings = [e for e in ledger if e["event_type"] in ("interest.credited", "fee.charged")]
    by_mandate = [e for e in ledger if "mandate_id" in e]
    # The bank's own postings and payments on standing instructions: a good share of the lines.
    assert 0.1 < len(postings) / len(ledger) < 0.5
    assert len(by_mandate) > len(postings) / 4
    assert {e["kind"] for e in events if e["event_type"] == "fee.charged"} >= {
        "account_fee",
        "card_fee",
    }
    bills = [e for e in by_mandate if e.get("purpose") in ("utilities", "insurance", "bill")]
    assert bills and all(e["counterparty"]["bank_code"] != "RAPPORTBANK" for e in bills)
    salaries = [e for e in events if e["event_type"] == "transfer.in" and "Employer" in str(e)]
    assert 0 < sum("purpose" not in e for e in salaries) < len(salaries)
    kinds = Counter(
        "kind" in e["counterparty"] for e in events if e["event_type"] == "transfer.out"
    )
    assert kinds[False] > kinds[True] > 0  # most feeds do not say what a counterparty is
    locales = Counter(
        e["profile"].get("locale") for e in events if e["event_type"] == "customer.updated"
    )
    assert locales[None] > 0 and {"zh-HK", "de-AT", "cs-CZ"} <= set(locales)


def test_bill_movers_cancel_their_mandates_before_they_close(simulation: Simulation) -> None:
    events = customer_events(simulation)
    movers = {
        c: t.churn
        for c, t in simulation.truth.customers.items()
        if t.churn is not None and t.churn.payments_moved_at is not None
    }
    assert movers
    for customer, churn in movers.items():
        assert churn is not None
        cancelled = sorted(
            datetime.fromisoformat(e["occurred_at"])
            for e in events
            if e["customer_id"] == customer and e["event_type"].endswith(".cancelled")
        )
        assert len(cancelled) >= 2 and cancelled[0] == churn.payments_moved_at
        if churn.churned_at is not None:
            assert churn.churned_at - cancelled[1] >= timedelta(days=14)


def test_silent_customers_are_in_the_truth_with_the_postings_they_kept_getting(
    simulation: Simulation,
) -> None:
    quiet = {c: t for c, t in simulation.truth.customers.items() if t.quiet_from is not None}
    personas = Counter(t.persona for t in quiet.values())
    assert personas["churn_disengagement"] > 0 and personas["never_active"] > 0
    silent = [t for t in quiet.values() if t.persona in ("churn_disengagement", "never_active")]
    assert sum(t.postings_while_quiet for t in silent) > len(silent) / 2
