"""The rewards ledger on both databases: exactly-once booking, caps at their boundaries,
clawbacks after redemption, idempotent and concurrent redemptions, the outbox, campaigns."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from schemas.referral import LeadType, ReferralChanged
from services.rewards import ledger, outbox, read_model, service
from services.rewards.domain import Campaign, RewardRules, Rule
from services.rewards.ledger import LedgerEntryRow, OutboxRow, WithholdingRow
from services.runtime import db

RULES = RewardRules()
T = datetime(2026, 1, 5, 10, tzinfo=UTC)
NOW = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture
def url(database_url: str) -> str:
    db.upgrade(database_url)
    return database_url


def referral(
    kind: str, n: int, referrer: str = "R1", at: datetime = T, referee: str | None = None
) -> ReferralChanged:
    return ReferralChanged(
        event_id=f"{kind}-{n}",
        type=kind,  # type: ignore[arg-type]
        occurred_at=at,
        referral_id=f"ref-{n}",
        referrer=referrer,
        referee=referee or f"E{n}",
        via="code",
        lead_type=LeadType.RETAIL,
    )


def points(url: str, customer: str) -> int:
    found = read_model.summary(url, customer, RULES)
    return found.points if found else 0


def rows(url: str, model: type) -> list:  # type: ignore[type-arg]
    with Session(db.get_engine(url)) as session:
        return list(session.exec(select(model)).all())


def test_replaying_the_same_events_books_nothing_new(url: str) -> None:
    events = [referral("referral.attributed", 1), referral("referral.qualified", 1)]
    for event in events:
        service.apply(url, event, RULES, NOW)
    first = rows(url, LedgerEntryRow)
    for event in events:
        assert service.apply(url, event, RULES, NOW).duplicate
    assert rows(url, LedgerEntryRow) == first
    assert sorted((e.customer_id, e.points) for e in first) == [("E1", 100), ("R1", 200)]
    assert len(rows(url, OutboxRow)) == 2
    assert read_model.check_balances(url).mismatches == {}


def test_a_batch_books_what_its_events_book_one_at_a_time(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transaction for a batch: the caps count the batch's own earlier events, an event
    delivered twice books once, and an event whose rules fail loses only its own changes."""
    events = [referral("referral.qualified", n, at=T + timedelta(days=n)) for n in range(1, 13)]
    events.insert(3, events[2])
    decide = service.on_referral_qualified

    def failing_on_the_fifth(event: ReferralChanged, *args: object) -> object:
        if event.referral_id == "ref-5":
            raise ValueError("the rules failed")
        return decide(event, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "on_referral_qualified", failing_on_the_fifth)
    results = service.apply_all(url, [(e, None) for e in events], RULES, NOW)
    failed = [n for n, r in enumerate(results) if isinstance(r, Exception)]
    assert failed == [5]
    assert [n for n, r in enumerate(results) if not isinstance(r, Exception) and r.duplicate] == [3]
    # Eleven qualified: ten rewarded up to the caps, the eleventh withheld.
    assert points(url, "R1") == 2000
    assert len(rows(url, WithholdingRow)) == 1
    referees = Counter(e.customer_id for e in rows(url, LedgerEntryRow) if e.customer_id != "R1")
    assert sorted(referees) == sorted(f"E{n}" for n in range(1, 13) if n != 5)
    assert set(referees.values()) == {1}
    assert read_model.check_balances(url).mismatches == {}


def test_a_batch_whose_rows_cannot_be_written_is_taken_one_event_at_a_time(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row the database refuses fails its own event only: the batch is taken again one
    event per transaction, and the others are booked."""
    events = [referral("referral.qualified", n, referrer=f"R{n}") for n in range(1, 4)]
    write = ledger.write

    def refusing_the_second(session: Session, writes: ledger.Writes, now: datetime) -> None:
        if any(row["event_id"] == "referral.qualified-2" for row in writes.source_events):
            raise ValueError("a constraint refused a row")
        write(session, writes, now)

    monkeypatch.setattr(ledger, "write", refusing_the_second)
    results = service.apply_all(url, [(e, None) for e in events], RULES, NOW)
    assert [isinstance(r, Exception) for r in results] == [False, True, False]
    assert (points(url, "R1"), points(url, "R2"), points(url, "R3")) == (200, 0, 200)
    assert read_model.check_balances(url).mismatches == {}


def test_pending_rewards_follow_the_referral_until_it_qualifies(url: str) -> None:
    service.apply(url, referral("referral.attributed", 1), RULES, NOW)
    pending = read_model.summary(url, "R1", RULES)
    assert pending is not None and (pending.pending.referrals, pending.pending.points) == (1, 200)
    service.apply(url, referral("referral.qualified", 1), RULES, NOW)
    done = read_model.summary(url, "R1", RULES)
    assert done is not None and (done.points, done.pending.referrals) == (200, 0)


def test_the_monthly_cap_at_its_boundary_with_a_double_points_campaign(url: str) -> None:
    double = Campaign(
        campaign_id="double-jan",
        name="Double referral points in January",
        rule=Rule.REFERRAL_REFERRER,
        multiplier=Decimal(2),
        starts_at=datetime(2026, 1, 1, tzinfo=UTC),
        ends_at=datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert service.create_campaign(url, double, "ops-anna", NOW)
    for n in range(1, 7):  # 5 x 400 fill 2,000; the sixth is withheld whole
        service.apply(url, referral("referral.qualified", n, at=T + timedelta(days=n)), RULES, NOW)
    assert points(url, "R1") == 2000
    (withheld,) = rows(url, WithholdingRow)
    assert (withheld.points, withheld.reason_code) == (400, "monthly_referral_points_cap")
    # A new month, without the campaign: the cap starts again.
    service.apply(
        url, referral("referral.qualified", 7, at=datetime(2026, 2, 2, tzinfo=UTC)), RULES, NOW
    )
    assert points(url, "R1") == 2200
    summary = read_model.summary(url, "R1", RULES)
    assert summary is not None and summary.withheld_points == 400


def test_the_yearly_cap_of_ten_rewarded_referrals(url: str) -> None:
    for n in range(1, 12):
        at = datetime(2026, n, 3, tzinfo=UTC)
        service.apply(url, referral("referral.qualified", n, at=at), RULES, NOW)
    assert points(url, "R1") == 10 * 200
    assert [w.reason_code for w in rows(url, WithholdingRow)] == ["yearly_rewarded_referrals_cap"]
    service.apply(
        url, referral("referral.qualified", 12, at=datetime(2027, 1, 3, tzinfo=UTC)), RULES, NOW
    )
    assert points(url, "R1") == 11 * 200


def test_a_clawback_after_redemption_leaves_a_debt_flagged_for_review(url: str) -> None:
    service.apply(url, referral("referral.qualified", 1), RULES, NOW)
    spent = service.redeem(url, "R1", "key-0001", 150, "coffee voucher", NOW)
    assert (spent.status_code, spent.points_balance) == (201, 50)
    service.apply(url, referral("referral.reversed", 1, at=T + timedelta(days=40)), RULES, NOW)
    summary = read_model.summary(url, "R1", RULES)
    assert summary is not None and summary.points == -150 and summary.flagged
    kinds = Counter(e.kind for e in rows(url, LedgerEntryRow))
    assert kinds == {"credit": 2, "redemption": 1, "reversal": 2}
    # A second reversal event of the same referral takes nothing more back.
    service.apply(
        url,
        referral("referral.reversed", 1, at=T + timedelta(days=41)).model_copy(
            update={"event_id": "referral.reversed-again"}
        ),
        RULES,
        NOW,
    )
    assert points(url, "R1") == -150
    refused = service.redeem(url, "R1", "key-0002", 1, "anything", NOW)
    assert (refused.status_code, refused.error) == (409, "account_flagged")
    assert service.clear_flag(url, "R1", "debt accepted by branch", "ops-anna", NOW)
    assert [a.action for a in read_model.audit_trail(url, 10)] == ["flag_cleared"]


def test_the_same_idempotency_key_gives_the_same_answer(url: str) -> None:
    service.adjust(url, "C1", 500, "goodwill after complaint 123", "ops-anna", NOW)
    first = service.redeem(url, "C1", "key-0001", 200, "voucher", NOW)
    again = service.redeem(url, "C1", "key-0001", 200, "voucher", NOW)
    assert first == again and first.points_balance == 300
    refused = service.redeem(url, "C1", "key-0002", 301, "voucher", NOW)
    assert (refused.status_code, refused.error) == (409, "insufficient_balance")
    assert service.redeem(url, "C1", "key-0002", 301, "voucher", NOW) == refused
    with pytest.raises(service.IdempotencyKeyReused):
        service.redeem(url, "C1", "key-0001", 100, "voucher", NOW)
    assert points(url, "C1") == 300


def test_concurrent_redemptions_never_overdraw(url: str) -> None:
    service.adjust(url, "C1", 1000, "opening balance for the test", "ops-anna", NOW)

    def attempt(n: int) -> int:
        return service.redeem(url, "C1", f"key-{n:04d}", 100, "voucher", NOW).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = Counter(pool.map(attempt, range(25)))
    assert codes == {201: 10, 409: 15}
    assert points(url, "C1") == 0
    assert read_model.check_balances(url).mismatches == {}


def test_outbox_rows_come_in_booking_order_and_are_marked_once_published(url: str) -> None:
    for n in range(1, 4):
        service.apply(url, referral("referral.qualified", n, referrer=f"R{n}"), RULES, NOW)
    waiting = outbox.unpublished(url, 100)
    assert [r.seq for r in waiting] == sorted(r.seq for r in waiting) and len(waiting) == 6
    outbox.mark_published(url, [r.seq for r in waiting[:4] if r.seq], NOW)
    assert outbox.outbox_backlog(url) == 2
    assert outbox.take_lease(url, "a", NOW, 10)
    assert not outbox.take_lease(url, "b", NOW + timedelta(seconds=5), 10)
    assert outbox.take_lease(url, "b", NOW + timedelta(seconds=11), 10)


def test_campaign_changes_are_validated_and_audited(url: str) -> None:
    campaign = Campaign(
        campaign_id="anniv-bonus",
        name="Anniversary bonus",
        rule=Rule.LOYALTY_ANNIVERSARY,
        bonus_points=50,
        starts_at=datetime(2026, 6, 1, tzinfo=UTC),
        ends_at=datetime(2026, 7, 1, tzinfo=UTC),
    )
    assert service.create_campaign(url, campaign, "ops-anna", NOW)
    assert not service.create_campaign(url, campaign, "ops-anna", NOW)
    changed = service.update_campaign(url, "anniv-bonus", {"active": False}, "ops-ben", NOW)
    assert changed is not None and not changed.active
    with pytest.raises(ValueError, match="ends_at"):
        service.update_campaign(
            url, "anniv-bonus", {"ends_at": datetime(2026, 5, 1, tzinfo=UTC)}, "ops-ben", NOW
        )
    assert service.update_campaign(url, "nope", {"active": True}, "ops-ben", NOW) is None
    assert [(a.actor, a.action) for a in read_model.audit_trail(url, 10)] == [
        ("ops-ben", "campaign_updated"),
        ("ops-anna", "campaign_created"),
    ]
