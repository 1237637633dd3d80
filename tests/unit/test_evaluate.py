"""The evaluator's figures on hand-made outputs whose right answers are known."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.topics import DLQ_HEADER_REASON, DLQ_HEADER_SERVICE, STAGE_CHANGED
from services.simulator.evaluate import (
    INPUT_DLQ,
    dead_letters,
    decode_outputs,
    evaluate,
    notify_section,
    rewards_section,
    stage_series,
)
from services.simulator.report import headline, write
from services.simulator.truth import (
    Conversion,
    CustomerTruth,
    FraudCase,
    GenuineReferral,
    Noise,
    SyntheticCounterparty,
    Truth,
)
from tests.unit.simulated import churner, day, stage, truth_of


@pytest.fixture
def truth() -> Truth:
    return truth_of(
        {
            "S1": CustomerTruth(persona="stable_saver", stable=True),
            "S2": CustomerTruth(persona="salaried", stable=True),
            "X": churner("competitor_attraction", 100, 150),
            "Y": churner("financial_distress", 100, 160),
            "Z": churner("disengagement", 100, 200),
            "W": churner("disengagement", 300, None),
        },
        noise={"expected_dead_letters": {"malformed_json": 2, "wrong_type": 1}},
    )


def test_churn_detection_figures(truth: Truth) -> None:
    events = [
        stage("S1", 0, "growth"),
        stage("S1", 200, "at_risk", "disengagement"),  # false alarm on a stable customer
        stage("S2", 0, "growth"),
        stage("S2", 10, "at_risk", "disengagement"),  # before evaluate_from: the initial load
        stage("X", 0, "growth"),
        stage("X", 120, "at_risk", "competitor_attraction"),  # detected 30 days ahead, right cause
        stage("X", 120, "at_risk", "competitor_attraction"),  # the same event again
        stage("X", 150, "churned"),
        stage("Y", 0, "growth"),
        stage(
            "Y", 90, "at_risk", "competitor_attraction"
        ),  # 10 days before onset: counts; wrong cause
        stage("Y", 160, "churned"),
        stage("Z", 0, "growth"),
        stage("Z", 200, "churned"),  # missed
    ]
    churn = evaluate(truth, {STAGE_CHANGED.name: events}, {}).churn
    assert churn is not None
    assert (churn.churners, churn.detected, churn.recall) == (3, 2, 0.6667)
    assert (churn.flags, churn.right_flags, churn.precision) == (3, 2, 0.6667)
    assert churn.cause_accuracy == 0.5
    assert churn.lead_times_days == [30.0, 70.0]
    assert churn.lead_time_days_median == 50.0
    assert churn.lead_time_days_p10 == 30.0
    assert (churn.stable_customers, churn.false_alarms, churn.false_alarms_per_1000_stable) == (
        2,
        1,
        500.0,
    )
    competitor = churn.by_cause["competitor_attraction"]
    assert (competitor.churners, competitor.detected, competitor.flagged_with_cause) == (1, 1, 2)
    assert competitor.precision == 1.0  # both competitor flags were followed by a churn
    assert churn.by_cause["disengagement"].flagged_with_cause == 1
    assert churn.by_cause["disengagement"].precision == 0.0
    assert churn.by_cause["disengagement"].recall == 0.0


def test_stage_series_counts_each_customer_once_per_week(truth: Truth) -> None:
    series = stage_series(
        truth,
        [
            stage("X", 0, "acquisition"),
            stage("X", 8, "growth"),
            stage("Y", 9, "growth"),
            stage("Y", 15, "at_risk"),
        ],
    )
    assert series.weeks[:3] == ["2025-01-08", "2025-01-15", "2025-01-22"]
    assert [series.counts["acquisition"][i] for i in range(3)] == [1, 0, 0]
    assert [series.counts["growth"][i] for i in range(3)] == [0, 2, 1]
    assert [series.counts["at_risk"][i] for i in range(3)] == [0, 0, 1]


def test_dead_letters_and_sections_of_services_not_running(truth: Truth) -> None:
    result = evaluate(
        truth,
        {},
        {"lifecycle": {"malformed_json": 2, "wrong_type": 1}, "referral": {"malformed_json": 2}},
    )
    assert result.dead_letters.matches == {"lifecycle": True, "referral": False}
    assert result.churn is None and result.stages is None
    assert not result.referral.running and "rapport.referral.events.v1" in result.referral.note
    assert not result.rewards.running and not result.notify.running


def test_referral_attribution_and_fraud(truth: Truth) -> None:
    landlord = SyntheticCounterparty(bank_code="ICBC", account="6200001", name="L", kind="person")
    truth.conversions = [
        Conversion(
            counterparty=landlord,
            customer_id="N1",
            opened_at=day(100),
            introduced_by="S1",
            via="chain",
        ),
        Conversion(
            counterparty=landlord,
            customer_id="N2",
            opened_at=day(120),
            introduced_by="S2",
            via="code",
            code="ABCD2345",
        ),
    ]
    truth.fraud = [FraudCase(pattern="velocity", referrer="S2", referees=["F1", "F2"])]
    at = day(100).isoformat()
    events = [
        {"type": "referral.attributed", "referee": "N1", "referrer": "S1", "occurred_at": at},
        {"type": "referral.attributed", "referee": "N2", "referrer": "S1", "occurred_at": at},
        {"type": "referral.held", "referee": "F1", "referrer": "S2", "occurred_at": at},
        # A new hire's first salary taken for a conversion: in the initial load, then after it.
        {
            "type": "referral.attributed",
            "referee": "H1",
            "referrer": "S1",
            "occurred_at": day(5).isoformat(),
        },
        {"type": "referral.attributed", "referee": "H2", "referrer": "S1", "occurred_at": at},
    ]
    section = evaluate(truth, {"rapport.referral.events.v1": events}, {}).referral
    assert section.running
    assert section.figures["attribution_accuracy"] == 0.5
    assert section.figures["fraud_referees_caught"] == {"velocity": 1}
    assert section.figures["attributions_without_a_true_referrer"] == 1
    rows = dict(headline(evaluate(truth, {"rapport.referral.events.v1": events}, {})))
    assert rows["conversions attributed to the true introducer"] == "1/2"
    assert rows["planted fraud referees rejected or held"] == "velocity 1/2"


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int
    value: bytes | None
    headers: dict[str, bytes]


def test_decode_outputs_reads_on_from_the_marks() -> None:
    records = {
        STAGE_CHANGED.name: [
            Rec(0, 4, orjson.dumps({"n": "old"}), {}),
            Rec(0, 5, orjson.dumps({"n": "new"}), {}),
            Rec(1, 0, orjson.dumps({"n": "other partition"}), {}),
        ],
        INPUT_DLQ: [
            Rec(
                0, 0, b"x", {DLQ_HEADER_SERVICE: b"lifecycle", DLQ_HEADER_REASON: b"malformed_json"}
            ),
            Rec(
                0, 1, b"y", {DLQ_HEADER_SERVICE: b"lifecycle", DLQ_HEADER_REASON: b"malformed_json"}
            ),
        ],
        STAGE_CHANGED.dlq: [
            Rec(0, 0, b"z", {DLQ_HEADER_SERVICE: b"rewards", DLQ_HEADER_REASON: b"missing_field"})
        ],
    }
    outputs, dead = decode_outputs(records, {STAGE_CHANGED.name: {0: 5}, INPUT_DLQ: {0: 1}})
    assert [o["n"] for o in outputs[STAGE_CHANGED.name]] == ["new", "other partition"]
    assert dead == {"lifecycle": {"malformed_json": 1}}
    dlq = {STAGE_CHANGED.dlq: outputs[STAGE_CHANGED.dlq]}
    refused = dead_letters(Truth.model_construct(noise=Noise()), dead, dlq)
    assert refused.outputs_refused == {f"rewards: {STAGE_CHANGED.name}": {"missing_field": 1}}


def test_report_files(truth: Truth, tmp_path: Path) -> None:
    events = [
        stage("X", 0, "growth"),
        stage("X", 120, "at_risk", "competitor_attraction"),
        stage("X", 150, "churned"),
    ]
    path = write(evaluate(truth, {STAGE_CHANGED.name: events}, {}), tmp_path)
    text = path.read_text()
    assert "churners detected (recall) | 1/3" in text
    assert "not running" in text
    assert (tmp_path / "stage-flow.png").stat().st_size > 1000
    assert (tmp_path / "lead-time.png").exists() and not (tmp_path / "referral-funnel.png").exists()
    assert orjson.loads((tmp_path / "report.json").read_bytes())["churn"]["detected"] == 1


def test_rewards_section_checks_the_ledger_against_its_source_events() -> None:
    referral_events = [
        {"event_id": "q1", "type": "referral.qualified", "referral_id": "r1"},
        {"event_id": "q2", "type": "referral.qualified", "referral_id": "r2"},
    ]
    stages = [{"event_id": "s1", "type": "stage.changed", "stage": "maturity", "customer_id": "C"}]
    milestones = [
        {"event_id": "m1", "type": "tenure.anniversary", "customer_id": "C"},
        {"event_id": "b1", "type": "customer.birthday", "customer_id": "C"},
    ]

    def entry(n: str, rule: str, source: str, points: int = 100) -> dict[str, object]:
        return {
            "entry_id": n,
            "rule": rule,
            "kind": "credit",
            "points": points,
            "source_event_id": source,
            "customer_id": "C",
        }

    entries = [
        entry("e1", "referral.referee", "q1"),
        entry("e2", "referral.referrer", "q1", 200),
        entry("e3", "referral.referee", "q2"),
        entry("e3", "referral.referee", "q2"),  # published twice
        entry("e4", "loyalty.maturity", "s1", 500),
        entry("e5", "loyalty.anniversary", "m1"),
        entry("e6", "loyalty.anniversary", "gone"),
    ]
    section = rewards_section(entries, referral_events, stages, milestones)
    f = section.figures
    assert section.running and f["ledger_entries"] == 6 and f["entries_published_twice"] == 1
    assert f["welcome_credits (one per qualified referral)"] == 2 == f["qualified_referrals"]
    assert (f["maturity_rewards"], f["customers_that_reached_maturity"]) == (1, 1)
    assert (f["anniversary_rewards"], f["tenure_anniversaries"]) == (2, 1)
    assert f["entries_without_a_published_source_event"] == 1
    assert f["points_by_rule"]["referral.referee"] == 200
    assert not rewards_section([], referral_events, stages, milestones).running


def test_notify_section_counts_policy_violations_in_notifys_own_outputs() -> None:
    def note(n: int, send_at: str, **fields: object) -> dict[str, object]:
        return {
            "type": "notification.scheduled",
            "notification_id": f"n{n}",
            "customer_id": "C",
            "category": "engagement",
            "dedupe_key": f"k{n}",
            "time_zone": "Asia/Shanghai",
            "occurred_at": send_at,
            "send_at": send_at,
            **fields,
        }

    notifications = [
        note(1, "2026-03-10T02:00:00Z"),  # 10:00 local
        note(2, "2026-03-10T14:00:00Z"),  # 22:00 local: quiet hours
        note(3, "2026-03-10T03:00:00Z", dedupe_key="k1"),  # same message an hour later
        note(4, "2026-03-10T04:00:00Z"),  # a fourth message that day
        note(5, "2026-03-11T02:00:00Z", category="retention"),
    ]
    stages = [
        {
            "type": "stage.changed",
            "stage": "at_risk",
            "tier": "hnw",
            "customer_id": "C",
            "occurred_at": "2026-03-11T02:00:00Z",
        }
    ]
    f = notify_section(notifications, [], stages).figures
    assert f["policy_violations_by_rule"] == {
        "automated_retention_message_to_hnw": 1,
        "over_daily_cap": 1,
        "same_message_within_24_hours": 1,
        "scheduled_in_quiet_hours": 1,
    }
    assert notify_section(notifications[:1], [], []).figures["policy_violations"] == 0


def signal(customer: str, at: float, kind: str, cause: str, n: int = 0) -> dict[str, Any]:
    return {
        "event_id": f"{customer}-{at}-{kind}-{n}",
        "type": "churn_signal.raised",
        "occurred_at": day(at).isoformat(),
        "customer_id": customer,
        "signal": kind,
        "cause": cause,
    }


def test_feed_shapes_score_silence_bills_and_moved_payments(truth: Truth) -> None:
    customers = truth.customers
    customers["Z"].quiet_from, customers["Z"].postings_while_quiet = day(120), True
    customers["W"].quiet_from, customers["W"].postings_while_quiet = day(300), True
    customers["X"].moved_money = True
    assert customers["X"].churn is not None
    customers["X"].churn.payments_moved_at = day(100)
    signals = [
        signal("Z", 165, "inactivity", "disengagement"),
        signal("W", 250, "inactivity", "disengagement"),  # before W went quiet: not this silence
        signal("X", 104, "payments_moved", "competitor_attraction"),
        signal("X", 110, "competitor_transfer", "competitor_attraction"),
        signal("S1", 50, "competitor_transfer", "competitor_attraction"),  # bills only
        signal("S2", 60, "balance_drain", "financial_distress"),
        signal("S2", 70, "payments_moved", "competitor_attraction"),
    ]
    feeds = evaluate(truth, {"rapport.lifecycle.churn-signals.v1": signals}, {}).feeds
    assert feeds is not None
    assert (feeds.quiet_with_postings, feeds.quiet_flagged_inactive) == (2, 1)
    assert feeds.competitor_alarms_without_money_moved == 1
    assert (feeds.bill_movers, feeds.bill_movers_flagged_14_days_before) == (1, 1)
    assert feeds.payments_moved_false_alarms == 1


def test_customers_who_keep_transacting_flagged_per_year(truth: Truth) -> None:
    customers = truth.customers
    customers["Q"] = CustomerTruth(persona="salaried", stable=True, quiet_from=day(100))
    customers["N"] = CustomerTruth(persona="never_active", stable=False)
    customers["F"] = CustomerTruth(persona="fraud_referee", stable=False)
    events = [
        stage("S1", 200, "at_risk", "disengagement"),  # keeps transacting: counted
        stage("S2", 10, "at_risk", "disengagement"),  # before evaluate_from: not counted
        stage("Q", 160, "at_risk", "disengagement"),  # went quiet: not ordinary life
        stage("N", 90, "at_risk", "disengagement"),  # never active: left out
        stage("F", 90, "at_risk", "disengagement"),  # a planted referee: left out
        stage("X", 120, "at_risk", "competitor_attraction"),  # a churner
    ]
    churn = evaluate(truth, {STAGE_CHANGED.name: events}, {}).churn
    assert churn is not None
    assert (churn.transacting_customers, churn.transacting_flagged) == (2, 1)
    # One of two over 335 scored days: 0.5 / (335 / 365) a year.
    assert churn.transacting_flagged_share_per_year == round(0.5 / (335 / 365), 4)


def lead(n: int, at: float, score: float | None, kind: str = "lead.detected") -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"{kind}-{n}",
        "type": kind,
        "lead_id": f"L{n}",
        "occurred_at": day(at).isoformat(),
        "counterparty_key": f"ICBC:62{n}",
    }
    if score is not None:
        event["score"] = score
    return event


def test_lead_volume_and_the_weekly_lists_ranked_by_score(truth: Truth) -> None:
    def converted(n: int, opened: float) -> Conversion:
        counterparty = SyntheticCounterparty(
            bank_code="ICBC", account=f"62{n}", name="P", kind="person"
        )
        return Conversion(
            counterparty=counterparty,
            customer_id=f"N{n}",
            opened_at=day(opened),
            introduced_by="S1",
            via="chain",
        )

    # Two weekly lists (days 30 and 37), each followed for 90 days.
    truth.end = day(127)
    truth.conversions = [converted(3, 100), converted(5, 10), converted(10, 126)]
    events = [lead(n, 20, 10.0 * (n + 1)) for n in range(9)]
    events.append(lead(9, 20, None))  # no score: ranked as 0 ...
    events.append(lead(9, 32, 95.0, "lead.updated"))  # ... until it has one
    events.append(lead(7, 35, 80.0, "lead.expired"))
    events.append(lead(10, 33, 99.0))
    events.append(events[0])  # the same event again
    key_of = lambda bank, account: f"{bank}:{account}"  # noqa: E731
    evaluation = evaluate(truth, {"rapport.referral.events.v1": events}, {}, key_of)
    f = evaluation.referral.figures
    # Only L10 was detected after the warm-up.
    assert f["leads_detected_from_evaluate_from"] == 1
    assert f["leads_per_1000_customers_per_month"] == round(1000 / 6 / (97 / (365 / 12)), 2)
    # N5 opened before either list: never listed. Day 30: L0-L4, L6-L9, L8 on top (90), L3
    # opens on day 100. Day 37: L7 expired, L10 (99) on top and opens on day 126, L9 at 95.
    assert (f["lead_lists"], f["leads_listed"], f["listed_leads_converted"]) == (2, 18, 3)
    assert (f["top_leads"], f["top_leads_converted"], f["leads_converted"]) == (2, 1, 2)
    assert f["lead_conversion_top_10_percent"] == 0.5
    assert f["lead_conversion_all"] == round(3 / 18, 4)
    assert f["lead_lift_top_10_percent"] == 3.0
    rows = dict(headline(evaluation))
    label = "leads converted within 90 days of a weekly list: top 10 % / all (lift)"
    assert rows[label] == "50.0 % / 16.7 % (3)"


def test_planted_fraud_and_genuine_referrals_by_outcome(truth: Truth) -> None:
    truth.fraud = [
        FraudCase(pattern="ring", referrer="A", referees=["B", "C", "A"], length=3),
        FraudCase(pattern="ring", referrer="D", referees=["E", "D"], length=2),
        FraudCase(pattern="funded_by_referrer", referrer="S1", referees=["F1"]),
        FraudCase(pattern="velocity", referrer="S2", referees=["V1", "V2"]),
    ]
    truth.genuine_referrals = [
        GenuineReferral(referee="G1", referrer="S1", via="code", opened_at=day(90)),
        GenuineReferral(referee="G2", referrer="S2", via="chain", opened_at=day(95)),
        GenuineReferral(referee="G3", referrer="S2", via="chain", opened_at=day(96)),
    ]
    at = day(100).isoformat()

    def referral(kind: str, referee: str, reason: str | None = None) -> dict[str, Any]:
        return {
            "type": f"referral.{kind}",
            "referee": referee,
            "reason_code": reason,
            "occurred_at": at,
        }

    events = [
        referral("attributed", "B"),
        referral("held", "B"),
        referral("reversed", "C", "referral_ring"),
        referral("rejected", "A", "referral_ring"),
        referral("rejected", "D", "referral_ring"),
        referral("held", "F1", "funded_by_referrer"),
        referral("reversed", "V1", "early_exit"),  # the referee left: not a guard
        referral("held", "G1", "velocity"),
        referral("rejected", "G2", "funded_by_referrer"),
        referral("qualified", "G3"),
    ]
    f = evaluate(truth, {"rapport.referral.events.v1": events}, {}).referral.figures
    assert f["fraud_outcomes"] == {
        "ring_of_3": {"referees": 3, "rejected": 1, "held": 1, "reversed": 1, "stopped": 3},
        "ring_of_2": {"referees": 2, "rejected": 1, "held": 0, "reversed": 0, "stopped": 1},
        "funded_by_referrer": {
            "referees": 1,
            "rejected": 0,
            "held": 1,
            "reversed": 0,
            "stopped": 1,
        },
        "velocity": {"referees": 2, "rejected": 0, "held": 0, "reversed": 0, "stopped": 0},
    }
    # Rings of every length together, as the figure always was: rejected or held.
    assert f["fraud_referees_caught"] == {"ring": 3, "funded_by_referrer": 1, "velocity": 0}
    assert f["fraud_referees"] == {"ring": 5, "funded_by_referrer": 1, "velocity": 2}
    assert (
        f["genuine_referrals"],
        f["genuine_referrals_held"],
        f["genuine_referrals_rejected"],
    ) == (
        3,
        1,
        1,
    )
    assert f["genuine_referrals_held_or_rejected_share"] == 0.6667
    rows = dict(headline(evaluate(truth, {"rapport.referral.events.v1": events}, {})))
    assert rows["genuine referrals held or rejected"] == "2/3 (66.7 %)"
    assert "ring_of_3 1/1/1 of 3" in rows["planted fraud referees rejected / held / reversed"]
