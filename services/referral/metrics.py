"""Referral business metrics (bounded labels only: event types, lead types, reason codes)."""

from __future__ import annotations

from prometheus_client import Counter

from schemas.referral import LeadChanged, ReferralChanged

LEADS = Counter(
    "rapport_referral_leads_total",
    "Leads detected and updated, by lead type.",
    ["change", "lead_type"],
)
REFERRALS = Counter(
    "rapport_referral_referrals_total",
    "Referral events, by type, attribution path and reason code (empty when none).",
    ["type", "via", "reason_code"],
)
READ_MODEL_FAILURES = Counter(
    "rapport_referral_read_model_failures_total",
    "Failed writes of the referral read model (retried with the next batch).",
)


def record(output: LeadChanged | ReferralChanged) -> None:
    if isinstance(output, LeadChanged):
        LEADS.labels(output.type.split(".", 1)[1], output.lead_type.value).inc()
    else:
        reason = output.reason_code.value if output.reason_code else ""
        REFERRALS.labels(output.type, output.via, reason).inc()
