"""Every simulated account lives the year of a real current account (../shared/domain.md): the
monthly cycle, pensions, holidays, the seasons, one-off large payments, payroll runs that move;
each balance follows from the one before; and the planted referral fraud is in the events as the
truth says."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.simulator import planted
from services.simulator.dates import banking_day, spring_festival
from services.simulator.life import ONE_OFF_PAYEES
from services.simulator.profiles import STANDARD, VARIED, profile_named
from services.simulator.simulate import Simulation, simulate
from tests.unit.simulated import customer_events

OUTGOING = {"withdrawal", "transfer.out", "card.payment", "fee.charged"}
SALARIED = {"salaried", "growing"}
# Who can open an account after our customers paid them (planted.conversions).
PROSPECT_NAMES = {"Landlord", "Family", "Supplier", "School", "Employer"}
STABLE = {"stable_saver", "pensioner", "salaried", "growing", "high_net_worth"}


@pytest.fixture(scope="module")
def standard() -> Simulation:
    return simulate(240, 365, seed=5)


@pytest.fixture(scope="module")
def varied() -> Simulation:
    return simulate(240, 365, seed=5, profile="varied")


def events_of(simulation: Simulation) -> list[dict[str, Any]]:
    """The valid events, each once, in time order (then the order they were written)."""
    found = {event["event_id"]: event for event in customer_events(simulation)}
    return sorted(
        found.values(), key=lambda e: (e["occurred_at"], int(e["event_id"].split("-")[1]))
    )


def by_customer(simulation: Simulation) -> dict[str, list[dict[str, Any]]]:
    customers: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events_of(simulation):
        customers[event["customer_id"]].append(event)
    return customers


def at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def month_ratios(events: list[dict[str, Any]], first: str, last: str) -> list[float]:
    """The balance at each calendar month's low over its peak, months `first` to `last`."""
    balances: dict[str, list[Decimal]] = defaultdict(list)
    for e in events:
        if "balance_after" in e and e["event_type"] != "balance.snapshot":
            balances[e["occurred_at"][:7]].append(Decimal(e["balance_after"]))
    return [
        float(min(b) / max(b))
        for month, b in sorted(balances.items())
        if first <= month <= last and max(b) > 0
    ]


def test_the_profiles_make_different_populations() -> None:
    standard, varied = simulate(100, 150, seed=3), simulate(100, 150, seed=3, profile="varied")
    assert standard.lines != varied.lines
    shares = {
        name: Counter(t.persona for t in s.truth.customers.values())
        for name, s in (("standard", standard), ("varied", varied))
    }
    assert shares["varied"]["pensioner"] > shares["standard"]["pensioner"]
    assert shares["varied"]["high_net_worth"] > shares["standard"]["high_net_worth"]
    for profile in (STANDARD, VARIED):
        assert sum(share for _, share in profile.shares) == pytest.approx(1.0)
    assert VARIED.one_off_share > STANDARD.one_off_share
    assert VARIED.holidays[1] > STANDARD.holidays[1]
    with pytest.raises(ValueError, match="standard"):
        profile_named("noisy")


@pytest.mark.parametrize("name", ["standard", "varied"])
def test_every_balance_follows_from_the_one_before(
    name: str, standard: Simulation, varied: Simulation
) -> None:
    """In time order, each balance is the one before plus or minus the amount: the one-off
    payments, the seasons and the planted fraud transfers included."""
    simulation = standard if name == "standard" else varied
    for customer, events in by_customer(simulation).items():
        balance: Decimal | None = None
        for e in events:
            if "balance_after" not in e:
                continue
            after = Decimal(e["balance_after"])
            if e["event_type"] != "balance.snapshot":
                amount = Decimal(e["amount"])
                moved = -amount if e["event_type"] in OUTGOING else amount
                assert balance is None or balance + moved == after, (customer, e)
            else:
                assert after == balance, (customer, e)
            balance = after


def test_salaried_households_end_each_month_at_a_third_to_a_half_of_the_peak(
    standard: Simulation,
) -> None:
    """The monthly cycle: most salaried customers' months have their low between 0.2 and 0.6
    of their peak (a third to a half for most), while savers and high-net-worth customers
    keep a buffer that puts them higher."""
    customers = by_customer(standard)
    truth = standard.truth.customers
    salaried = [
        r
        for c, t in truth.items()
        if t.persona in SALARIED
        for r in month_ratios(customers[c], "2025-02", "2025-12")
    ]
    assert len(salaried) > 500
    assert sum(0.2 <= r <= 0.6 for r in salaried) / len(salaried) > 0.75
    assert sum(1 / 3 - 0.05 <= r <= 0.55 for r in salaried) / len(salaried) > 0.6
    savers = [
        r
        for c, t in truth.items()
        if t.persona in ("stable_saver", "high_net_worth", "pensioner")
        for r in month_ratios(customers[c], "2025-02", "2025-12")
    ]
    assert statistics.median(savers) > 0.6
    # Their ratio varies: not one value month after month.
    assert statistics.pstdev(savers) > 0.05


def test_salaries_come_on_the_employers_banking_day(
    standard: Simulation, varied: Simulation
) -> None:
    """Each employer pays everyone on one day of the month, the banking day before when it
    falls on a weekend; in the noisier profile some payroll runs move by a few days."""

    def paydays(simulation: Simulation) -> dict[tuple[str, str], set[int]]:
        found: dict[tuple[str, str], set[int]] = defaultdict(set)
        # An employer that opens an account moves its own money over: not a payroll run.
        converted = {c.customer_id for c in simulation.truth.conversions}
        for e in events_of(simulation):
            name = e.get("counterparty", {}).get("name", "")
            if e["customer_id"] in converted:
                continue
            if e["event_type"] == "transfer.in" and name.startswith("Employer"):
                found[(name, e["occurred_at"][:7])].add(at(e).day)
                assert at(e).weekday() < 5, e
        return found

    steady = paydays(standard)
    assert steady
    # One day per employer and month (January has bonuses, paid on days of their own).
    assert all(len(days) == 1 for (_, month), days in steady.items() if not month.endswith("-01"))
    spread: dict[str, set[int]] = defaultdict(set)
    for (employer, month), days in steady.items():
        if not month.endswith("-01"):
            spread[employer] |= days
    # Weekends move a payday back by two days at most.
    assert all(max(days) - min(days) <= 2 for days in spread.values())
    moved: dict[str, set[int]] = defaultdict(set)
    for (employer, month), days in paydays(varied).items():
        if not month.endswith("-01"):
            moved[employer] |= days
    assert any(max(days) - min(days) >= 3 for days in moved.values())
    assert banking_day(datetime(2025, 3, 16, tzinfo=UTC)) == datetime(2025, 3, 14, tzinfo=UTC)


def test_pensioners_are_paid_monthly_by_a_government_fund(standard: Simulation) -> None:
    customers = by_customer(standard)
    pensioners = [c for c, t in standard.truth.customers.items() if t.persona == "pensioner"]
    assert pensioners and all(standard.truth.customers[c].stable for c in pensioners)
    purposes: Counter[str | None] = Counter()
    for customer in pensioners:
        pensions = [
            e
            for e in customers[customer]
            if e["event_type"] == "transfer.in"
            and e["counterparty"]["name"].startswith("Social Security Fund")
        ]
        assert len(pensions) >= 12, customer
        assert len({e["amount"] for e in pensions}) == 1
        assert all(e["counterparty"].get("kind", "government") == "government" for e in pensions)
        purposes[pensions[0].get("purpose")] += 1
    # Most funds mark the credit as a pension, some send it unmarked.
    assert set(purposes) <= {"pension", None} and purposes["pension"] > 0


@pytest.mark.parametrize("name", ["standard", "varied"])
def test_holidays_without_card_spending_while_bills_go_on(
    name: str, standard: Simulation, varied: Simulation
) -> None:
    simulation = standard if name == "standard" else varied
    customers = by_customer(simulation)
    checked = 0
    for customer, truth in simulation.truth.customers.items():
        if not truth.stable:
            continue
        for first, back in truth.holidays:
            assert timedelta(days=7) <= back - first <= timedelta(days=28)
            during = [e for e in customers[customer] if first <= at(e) < back]
            assert not [e for e in during if e["event_type"] in ("card.payment", "withdrawal")]
            if back < simulation.truth.end and first > simulation.truth.start:
                around = [
                    e
                    for e in customers[customer]
                    if e["event_type"] == "card.payment"
                    and (
                        first - timedelta(days=21) <= at(e) < first
                        or back <= at(e) < back + timedelta(days=21)
                    )
                ]
                assert around, (customer, first)
                checked += 1
    assert checked > 50
    # The bank's postings and payments on standing instructions do not stop for a holiday.
    mandates_on_holiday = sum(
        1
        for customer, truth in simulation.truth.customers.items()
        for first, back in truth.holidays
        for e in customers[customer]
        if first <= at(e) < back and "mandate_id" in e
    )
    assert mandates_on_holiday > 20
    if name == "varied":
        counts = Counter(len(t.holidays) for t in simulation.truth.customers.values() if t.stable)
        assert max(counts) >= 2


def test_one_off_large_payments_and_life_goes_on(standard: Simulation) -> None:
    customers = by_customer(standard)
    truth = standard.truth
    payers = {c: t for c, t in truth.customers.items() if t.one_off_at is not None}
    stable = [t for t in truth.customers.values() if t.stable]
    assert 0.03 < len(payers) / len(stable) < 0.15
    for customer, known in payers.items():
        assert known.stable
        (payment,) = [
            e for e in customers[customer] if e["occurred_at"] == known.one_off_at.isoformat()
        ]
        assert payment["event_type"] == "transfer.out"
        assert payment["counterparty"]["name"] in ONE_OFF_PAYEES
        assert payment["counterparty"]["bank_code"] != truth.own_bank
        assert payment.get("purpose") in (None, "other") and "mandate_id" not in payment
        share = Decimal(payment["amount"]) / (
            Decimal(payment["amount"]) + Decimal(payment["balance_after"])
        )
        assert Decimal("0.29") <= share <= Decimal("0.81"), (customer, share)
        after = [
            e
            for e in customers[customer]
            if known.one_off_at < at(e) < known.one_off_at + timedelta(days=45)
            and e["event_type"] in ("card.payment", "withdrawal", "deposit")
        ]
        if known.one_off_at + timedelta(days=45) < truth.end:
            assert after, customer


def test_the_seasons_swing_the_balance(standard: Simulation, varied: Simulation) -> None:
    """Red packets, gifts and travel before the Spring Festival, a January bonus for some,
    school fees in September; the festival's weeks cost households more than a plain month's."""
    for simulation in (standard, varied):
        events = events_of(simulation)
        wage_earners = {c for c, t in simulation.truth.customers.items() if t.persona in SALARIED}
        festival = spring_festival(2025)
        before = [e for e in events if festival - timedelta(days=15) <= at(e) < festival]
        gifts = [
            e
            for e in before
            if e.get("attributes", {}).get("mcc") == "5947"
            or (
                e["event_type"] == "transfer.out"
                and e["counterparty"]["name"] == "Family"
                and e.get("purpose") in (None, "family")
            )
        ]
        assert len({e["customer_id"] for e in gifts}) > 40
        school = [
            e
            for e in events
            if e["event_type"] == "transfer.out" and e["counterparty"]["name"].startswith("School")
        ]
        assert school and all(at(e).month == 9 for e in school)
        salaries = defaultdict(list)
        for e in events:
            if e["event_type"] == "transfer.in" and e["counterparty"]["name"].startswith(
                "Employer"
            ):
                salaries[e["customer_id"]].append(e)
        bonus = [
            c
            for c, credits in salaries.items()
            if len([e for e in credits if e["occurred_at"].startswith("2025-01")]) >= 2
        ]
        assert bonus

        def outflow(
            first: datetime,
            days: int,
            events: list[dict[str, Any]] = events,
            who: set[str] = wage_earners,
        ) -> Decimal:
            """What salaried households spent and gave of their own accord in those days."""
            return sum(
                (
                    Decimal(e["amount"])
                    for e in events
                    if e["customer_id"] in who
                    and first <= at(e) < first + timedelta(days=days)
                    and e["event_type"] in ("card.payment", "withdrawal", "transfer.out")
                    and "mandate_id" not in e
                    and e.get("counterparty", {}).get("name") not in ONE_OFF_PAYEES
                ),
                Decimal(0),
            )

        # The festival's fortnight against the same days of the plain months (March to
        # November): red packets, gifts and travel come on top of the usual spending.
        festive = outflow(festival - timedelta(days=15), 15)
        plain = [
            outflow(festival.replace(month=month) - timedelta(days=15), 15)
            for month in range(3, 12)
        ]
        usual = sum(plain, Decimal(0)) / len(plain)
        assert festive > usual * Decimal("1.1"), (simulation.truth.profile, festive, usual)


def test_new_fraud_patterns_are_in_the_events_as_the_truth_says(standard: Simulation) -> None:
    truth = standard.truth
    customers = by_customer(standard)
    codes = {owner: code for code, owner in truth.codes.items()}
    opened_with = {
        c: [e.get("referral_code") for e in events if e["event_type"] == "account.opened"]
        for c, events in customers.items()
    }
    rings = {case.length: case for case in truth.fraud if case.pattern == "ring"}
    assert set(rings) == {2, 3, 4}
    for length, ring in rings.items():
        assert len(ring.referees) == length and ring.referees[-1] == ring.referrer
        a = ring.referrer
        chain = [a, *ring.referees]
        for referrer, referee in itertools.pairwise(chain):
            assert opened_with[referee][-1] == codes[referrer], (length, referee)
        closed = [at(e) for e in customers[a] if e["event_type"] == "account.closed"]
        back = [at(e) for e in customers[a] if e["event_type"] == "account.opened"][-1]
        assert closed and max(closed) < back
        assert truth.customers[a].win_back and not truth.customers[a].stable
    directly = [c for c in truth.fraud if c.pattern == "funded_by_referrer"]
    through_hop = [c for c in truth.fraud if c.pattern == "funded_through_hop"]
    assert len(directly) == len(through_hop) == 3
    assert len({c.referrer for c in directly + through_hop}) == 6
    for direct in directly:
        (referee,) = direct.referees
        assert opened_with[referee][0] == codes[direct.referrer]
        referrer_account = next(
            e["account_id"]
            for e in customers[direct.referrer]
            if e["event_type"] == "account.opened"
        )
        funding = [
            e
            for e in customers[referee]
            if e["event_type"] == "transfer.in" and e["counterparty"]["bank_code"] == truth.own_bank
        ]
        assert funding and funding[0]["counterparty"]["account"] == referrer_account
        sent = [
            e
            for e in customers[direct.referrer]
            if e["event_type"] == "transfer.out"
            and e["counterparty"]["bank_code"] == truth.own_bank
            and e["counterparty"]["account"] == f"A{referee[1:]}01"
            and e["amount"] == funding[0]["amount"]
        ]
        assert sent and timedelta(0) <= at(funding[0]) - at(sent[0]) < timedelta(hours=1)
    for hop in through_hop:
        (referee,) = hop.referees
        assert opened_with[referee][0] == codes[hop.referrer]
        received = next(e for e in customers[referee] if e["event_type"] == "transfer.in")
        account = received["counterparty"]["account"]
        paid = next(
            e
            for e in customers[hop.referrer]
            if e["event_type"] == "transfer.out" and e["counterparty"]["account"] == account
        )
        assert timedelta(0) < at(received) - at(paid) <= timedelta(days=7)
        assert (
            abs(Decimal(received["amount"]) - Decimal(paid["amount"]))
            <= Decimal(paid["amount"]) / 10
        )
        assert received["counterparty"]["bank_code"] != truth.own_bank
    # The conversions are the genuine referrals, with their true introducers.
    assert [(g.referee, g.referrer, g.via) for g in truth.genuine_referrals] == [
        (c.customer_id, c.introduced_by, c.via) for c in truth.conversions
    ]


def test_prospects_with_stronger_ties_open_accounts_more_often(standard: Simulation) -> None:
    """Conversions follow the ties (planted.py): a counterparty paid every month by several
    customers opens an account far more often than one sent money once."""
    ties_of = planted.ties
    mid_year = standard.truth.start + timedelta(days=200)
    prospects: dict[str, list[tuple[str, str, Decimal]]] = defaultdict(list)
    for event in events_of(standard):
        counterparty = event.get("counterparty")
        if counterparty and counterparty.get("name", "").split(" ")[0] in PROSPECT_NAMES:
            prospects[counterparty["account"]].append(
                (event["occurred_at"], event["customer_id"], Decimal(event["amount"]))
            )
    converted = {
        c.counterparty.account: ties_of(prospects[c.counterparty.account], c.opened_at)
        for c in standard.truth.conversions
    }
    assert len(converted) >= 8 and {c.counterparty.kind for c in standard.truth.conversions} == {
        "person",
        "business",
    }
    everyone = [ties_of(transfers, mid_year) for transfers in prospects.values()]
    assert statistics.mean(converted.values()) > 3 * statistics.mean(everyone)


def test_a_tie_counts_the_months_paid_in_the_half_year_before() -> None:
    at = datetime(2025, 7, 1, tzinfo=UTC)
    monthly = [(f"2025-0{m}-05T09:00:00+00:00", "C1", Decimal(3000)) for m in range(1, 7)]
    once = [("2025-02-01T09:00:00+00:00", "C2", Decimal(500))]
    later = [("2025-07-02T09:00:00+00:00", "C3", Decimal(500))]
    assert planted.ties(monthly + once + later, at) == pytest.approx(1 + 1 / 6)
    assert planted.conversion_chance(0) == 0
    assert planted.conversion_chance(1) == pytest.approx(planted.CONVERSION_PER_TIE)
    assert planted.conversion_chance(20) > 10 * planted.conversion_chance(1 / 6)
