"""Outputs of the referral service on `rapport.referral.events.v1` (issue 5).

Two families share the topic, told apart by `type`: lead events (keyed by the counterparty's
keyed hash) and referral events (keyed by the referral id). Counterparties appear only as keyed
hashes (HMAC-SHA256), never as account numbers or names.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.account_events import CounterpartyKind, EventTime, Money
from schemas.envelope import RapportEvent


class LeadType(StrEnum):
    """Who follows the lead up: a retail branch or a corporate relationship manager."""

    RETAIL = "retail"
    CORPORATE = "corporate"


class Direction(StrEnum):
    """Whether our customers pay the counterparty, are paid by it, or both."""

    PAID_TO = "paid_to"
    PAID_BY = "paid_by"
    BOTH = "both"


class LeadStrength(BaseModel):
    """The tie between our customers and the counterparty over the lead window."""

    model_config = ConfigDict(frozen=True)

    transactions: int
    customers: int
    amount: Money
    direction: Direction
    window_days: int


class LeadChanged(RapportEvent):
    """`lead.detected` (once per counterparty and lead period), `lead.updated` (at most once
    a day, when the suggested referrer or the strength changed) or `lead.expired` (no
    transaction for the expiry period; dated at `expires_at`, with the lead's last strength).
    New types are added, existing ones never change: a consumer should skip the types it does
    not handle."""

    type: Literal["lead.detected", "lead.updated", "lead.expired"]
    lead_id: str
    counterparty_key: str
    lead_type: LeadType
    suggested_referrer: str
    strength: LeadStrength
    last_transaction_at: EventTime
    # No transaction until then and the lead lapses; a later tie makes a new lead.
    expires_at: EventTime
    evidence_event_ids: Annotated[list[str], Field(max_length=10)] = []
    # Added 2026-12: the counterparty's kind, and what says so (the feed declared it, or the
    # evidence it was inferred from: a payee of many customers, a monthly credit, a purpose).
    counterparty_kind: CounterpartyKind | None = None
    kind_basis: str | None = None
    # Added 2026-12: how promising the lead is, 0-100 (docs/referral.md, "Leads"): RM lists are
    # ranked by it.
    score: float | None = None


class ReferralReason(StrEnum):
    """Machine-readable reasons of rejections, holds and reversals."""

    SELF_REFERRAL = "self_referral"
    SHARED_PHONE_OR_DEVICE = "shared_phone_or_device"
    REFERRAL_RING = "referral_ring"
    VELOCITY = "velocity"
    CODE_UNKNOWN = "code_unknown"
    CODE_EXPIRED = "code_expired"
    EARLY_EXIT = "early_exit"
    # Added 2026-12: the referee's account was funded by the referrer, directly or through an
    # account the referrer had just paid.
    FUNDED_BY_REFERRER = "funded_by_referrer"
    REVIEW_REJECTED = "review_rejected"


class ReferralChanged(RapportEvent):
    """A referral's life: attributed, then qualified, or rejected, held (and released or
    rejected on review), or reversed."""

    type: Literal[
        "referral.attributed",
        "referral.qualified",
        "referral.rejected",
        "referral.held",
        "referral.released",
        "referral.reversed",
    ]
    referral_id: str
    referrer: str | None = None
    referee: str
    via: Literal["code", "chain"]
    lead_type: LeadType
    channel: str | None = None
    counterparty_key: str | None = None
    reason_code: ReferralReason | None = None
    reason: str | None = None
    qualifying_amount: Money | None = None
    qualifying_transactions: int | None = None
    # Added 2026-12, with a reason: the reason as one sentence per locale ("en", "zh-CN").
    explanation: dict[str, str] | None = None


# How far each status of a referral has got (the part of `type` after "referral."): readers
# keep the furthest, so that a replayed or late older event never moves a referral back.
REFERRAL_STATUS_RANK: dict[str, int] = {
    "attributed": 1,
    "held": 1,
    "released": 2,
    "qualified": 3,
    "rejected": 4,
    "reversed": 5,
}


ReferralEvent = Annotated[LeadChanged | ReferralChanged, Field(discriminator="type")]
REFERRAL_EVENT_ADAPTER: TypeAdapter[LeadChanged | ReferralChanged] = TypeAdapter(ReferralEvent)
