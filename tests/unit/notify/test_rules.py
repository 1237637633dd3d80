"""Notify rules: routing by tier, templates in both languages, quiet hours across time zones
and midnight, consent, caps, de-duplication and the holdout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schemas.lifecycle import ChurnCause, Stage, StageChanged, Strategy, Tier
from schemas.notify import Category, Channel, Priority, RmTaskChanged
from schemas.referral import Direction, LeadChanged, LeadStrength, LeadType
from services.notify.domain import (
    Message,
    NotifyRules,
    Profile,
    Sent,
    in_holdout,
    next_allowed,
    on_lead,
    on_stage_changed,
    render,
    schedule,
    task_created,
    within_lead_budget,
)

RULES = NotifyRules()
# 10:00 in Shanghai.
T = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def treated_customer(prefix: str = "C") -> str:
    return next(f"{prefix}{n}" for n in range(1000) if not in_holdout(f"{prefix}{n}", 0.10))


def at_risk(
    customer: str, tier: Tier, cause: ChurnCause = ChurnCause.COMPETITOR_ATTRACTION
) -> StageChanged:
    return StageChanged(
        event_id=f"s-{customer}",
        type="stage.changed",
        occurred_at=T,
        customer_id=customer,
        previous_stage=Stage.GROWTH,
        stage=Stage.AT_RISK,
        previous_tier=tier,
        tier=tier,
        reason="churn score 0.7",
        churn_score=0.7,
        churn_causes=[cause],
        probable_cause=cause,
        strategy=Strategy.for_stage(Stage.AT_RISK),
        balance_avg_30d="5000000.00",
    )


def test_hnw_at_risk_gets_an_urgent_rm_task_and_no_automated_message() -> None:
    customer = treated_customer()
    profile = Profile(customer_id=customer, rm_id="RM7", tier=Tier.HNW)
    decision = on_stage_changed(profile, at_risk(customer, Tier.HNW), RULES)
    (task,) = decision.tasks
    assert (task.assignee, task.priority, task.due_at - T) == (
        "RM7",
        Priority.HIGH,
        timedelta(hours=24),
    )
    assert task.cause == "competitor_attraction" and task.evidence["churn_score"] == 0.7
    assert decision.messages == []
    assert decision.intervention is not None and decision.intervention.treated


def test_affluent_at_risk_gets_a_normal_task_and_a_push() -> None:
    customer = treated_customer()
    decision = on_stage_changed(
        Profile(customer_id=customer), at_risk(customer, Tier.AFFLUENT), RULES
    )
    (task,) = decision.tasks
    assert (task.priority, task.assignee) == (Priority.NORMAL, RULES.team_queue)
    (message,) = decision.messages
    assert (message.category, message.channel) == (Category.RETENTION, Channel.PUSH)


def test_mass_at_risk_gets_an_offer_matched_to_the_cause() -> None:
    customer = treated_customer()
    event = at_risk(customer, Tier.MASS, ChurnCause.SERVICE_DISSATISFACTION)
    decision = on_stage_changed(Profile(customer_id=customer), event, RULES)
    assert decision.tasks == []
    (message,) = decision.messages
    assert message.cause == "service_dissatisfaction"
    assert "fees" in render(message.template, "en", message.context)[1]


def test_the_holdout_is_deterministic_near_its_share_and_gets_nothing() -> None:
    held = [f"C{n}" for n in range(10_000) if in_holdout(f"C{n}", 0.10)]
    assert 900 < len(held) < 1100
    assert held == [f"C{n}" for n in range(10_000) if in_holdout(f"C{n}", 0.10)]
    decision = on_stage_changed(Profile(customer_id=held[0]), at_risk(held[0], Tier.HNW), RULES)
    assert decision.tasks == [] and decision.messages == []
    assert decision.intervention is not None and not decision.intervention.treated


def test_templates_render_in_both_languages_without_account_details() -> None:
    assert render("reward_credited", "en", {"points": 200}) == (
        "Points credited",
        "200 points were credited to your rewards account. Your balance is in the app.",
    )
    subject, body = render("reward_credited", "zh-CN", {"points": 200})
    assert subject == "积分到账" and "200 积分" in body
    assert render("anniversary", "en", {"years": 1})[1] == "Thank you for 1 year with us."


def test_sandboxed_templates_cannot_reach_python_internals() -> None:
    from jinja2.exceptions import SecurityError

    from services.notify import domain

    with pytest.raises(SecurityError):
        domain._ENV.from_string("{{ x.__class__.__mro__[1].__subclasses__() }}").render(x=1)


@pytest.mark.parametrize(
    ("local", "zone", "expected_local"),
    [
        ("2026-03-10 10:00", "Asia/Shanghai", "2026-03-10 10:00"),
        ("2026-03-10 21:00", "Asia/Shanghai", "2026-03-11 08:00"),
        ("2026-03-10 23:59", "Asia/Shanghai", "2026-03-11 08:00"),
        ("2026-03-11 00:30", "Asia/Shanghai", "2026-03-11 08:00"),
        ("2026-03-11 07:59", "Europe/London", "2026-03-11 08:00"),
        ("2026-03-11 08:00", "America/New_York", "2026-03-11 08:00"),
    ],
)
def test_quiet_hours_defer_to_eight_in_the_customers_zone(
    local: str, zone: str, expected_local: str
) -> None:
    tz = ZoneInfo(zone)
    at = datetime.fromisoformat(local).replace(tzinfo=tz).astimezone(UTC)
    assert next_allowed(at, tz, RULES).astimezone(tz).strftime("%Y-%m-%d %H:%M") == expected_local


def message(
    key: str = "stage:growth", at: datetime = T, category: Category = Category.ENGAGEMENT
) -> Message:
    return Message("C1", category, "recommendation", {}, key, at)


def test_a_message_at_night_is_scheduled_for_the_morning_not_dropped() -> None:
    night = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
    out = schedule(message(at=night), Profile(customer_id="C1", locale="en"), [], RULES, "e1")
    assert out.type == "notification.scheduled" and out.deferred
    assert out.send_at is not None and out.send_at.astimezone(SHANGHAI).hour == 8
    assert out.locale == "en" and out.subject == "Picked for you"


def test_opt_out_is_absolute_and_consent_chooses_the_channel() -> None:
    profile = Profile(customer_id="C1", consent={Channel.PUSH: False, Channel.EMAIL: True})
    assert schedule(message(), profile, [], RULES, "e1").channel is Channel.SMS
    profile.opted_out = [Channel.SMS, Channel.EMAIL]
    out = schedule(message(), profile, [], RULES, "e1")
    assert (out.type, out.reason_code) == ("notification.suppressed", "no_channel")


def test_the_same_message_within_24_hours_is_suppressed() -> None:
    sent = [Sent(Category.ENGAGEMENT, "stage:growth", T - timedelta(hours=23))]
    out = schedule(message(), Profile(customer_id="C1"), sent, RULES, "e1")
    assert out.reason_code == "duplicate"
    older = [Sent(Category.ENGAGEMENT, "stage:growth", T - timedelta(hours=25))]
    assert (
        schedule(message(), Profile(customer_id="C1"), older, RULES, "e1").type
        == "notification.scheduled"
    )


def test_duplicates_are_judged_by_when_the_customer_would_get_them() -> None:
    # The first came at 22:00 and was deferred to 08:00; the second, 24.5 hours after the
    # first's cause but at 22:30 the next night, would also go at 08:00: a day apart, not less.
    night = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
    first = schedule(message(at=night), Profile(customer_id="C1"), [], RULES, "e1")
    assert first.send_at is not None
    sent = [Sent(Category.ENGAGEMENT, "stage:growth", first.send_at)]
    morning = datetime(2026, 3, 11, 1, 0, tzinfo=UTC)  # 09:00, an hour after the first went
    assert (
        schedule(message(at=morning), Profile(customer_id="C1"), sent, RULES, "e2").reason_code
        == "duplicate"
    )
    next_night = night + timedelta(hours=24, minutes=30)
    out = schedule(message(at=next_night), Profile(customer_id="C1"), sent, RULES, "e3")
    assert out.type == "notification.scheduled"


def test_three_messages_a_day_then_suppressed_while_service_messages_have_their_own_cap() -> None:
    sent = [Sent(Category.ENGAGEMENT, f"k{n}", T - timedelta(hours=1)) for n in range(3)]
    out = schedule(message(), Profile(customer_id="C1"), sent, RULES, "e1")
    assert (out.type, out.reason_code) == ("notification.suppressed", "daily_cap")
    service = schedule(
        message("reward:1", category=Category.SERVICE), Profile(customer_id="C1"), sent, RULES, "e1"
    )
    assert service.type == "notification.scheduled"
    # The day is the customer's: 01:00 the next morning in Shanghai is another day.
    next_day = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)
    assert (
        schedule(message(at=next_day), Profile(customer_id="C1"), sent, RULES, "e1").type
        == "notification.scheduled"
    )


def lead(kind: LeadType) -> LeadChanged:
    return LeadChanged(
        event_id="l1",
        type="lead.detected",
        occurred_at=T,
        lead_id="L1",
        counterparty_key="cp-hash",
        lead_type=kind,
        suggested_referrer="C1",
        strength=LeadStrength(
            transactions=4,
            customers=3,
            amount="900.00",
            direction=Direction.PAID_TO,
            window_days=90,
        ),
        last_transaction_at=T,
        expires_at=T + timedelta(days=180),
    )


def test_corporate_leads_go_to_the_corporate_team_retail_leads_to_the_referrers_rm() -> None:
    (corporate,) = on_lead(lead(LeadType.CORPORATE), None, RULES).tasks
    assert (corporate.kind, corporate.assignee) == ("corporate_lead", RULES.corporate_queue)
    (retail,) = on_lead(lead(LeadType.RETAIL), Profile(customer_id="C1", rm_id="RM2"), RULES).tasks
    assert (retail.kind, retail.assignee, retail.customer_id) == (
        "introduction_request",
        "RM2",
        "C1",
    )
    assert retail.counterparty_key == "cp-hash"


def test_tasks_beyond_an_rms_daily_capacity_are_queued() -> None:
    (task,) = on_lead(lead(LeadType.RETAIL), Profile(customer_id="C1", rm_id="RM2"), RULES).tasks
    assert task_created(task, RULES.rm_daily_capacity - 1, RULES, "l1").status == "open"
    assert task_created(task, RULES.rm_daily_capacity, RULES, "l1").status == "queued"


def test_leads_under_the_minimum_score_are_not_handed_out() -> None:
    weak = lead(LeadType.RETAIL).model_copy(update={"score": 20.0})
    strict = NotifyRules(lead_task_min_score=30)
    assert on_lead(weak, Profile(customer_id="C1"), strict).tasks == []


def test_a_worklist_shows_each_days_budget_of_the_best_scored_leads() -> None:
    def handed_out(score: float, day: int, kind: LeadType = LeadType.RETAIL) -> RmTaskChanged:
        event = lead(kind).model_copy(
            update={"score": score, "occurred_at": T + timedelta(days=day)}
        )
        (task,) = on_lead(event, Profile(customer_id="C1", rm_id="RM2"), RULES).tasks
        return task_created(task, 0, RULES, f"lead-{score}-{day}")

    first_day = [handed_out(score, 0) for score in (40.0, 90.0, 10.0, 70.0)]
    next_day = [handed_out(5.0, 1)]
    shown = within_lead_budget([*first_day, *next_day], RULES)
    assert RULES.lead_daily_budget == 2
    assert [t.evidence["score"] for t in shown] == [90.0, 70.0, 5.0]
    queue = [handed_out(float(n), 0, LeadType.CORPORATE) for n in range(12)]
    assert len(within_lead_budget(queue, RULES)) == RULES.lead_queue_daily_budget
