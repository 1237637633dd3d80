"""Outputs of the rewards service on `rapport.rewards.ledger.v1` (issue 6): each ledger entry as
booked, published through the transactional outbox. The entry id is the event id, so a consumer
that sees an entry twice (a relay restarted between sending and recording) can tell."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import TypeAdapter

from schemas.account_events import CurrencyCode, EventTime, SignedMoney
from schemas.envelope import RapportEvent


class EntryKind(StrEnum):
    """What an entry does to a balance."""

    CREDIT = "credit"
    REVERSAL = "reversal"
    REDEMPTION = "redemption"
    ADJUSTMENT = "adjustment"


class LedgerEntryBooked(RapportEvent):
    """`ledger_entry.booked`: one append-only entry. `occurred_at` is the event time of what
    caused it (the qualifying referral, the anniversary, the redemption request); `booked_at`
    is when the ledger wrote it."""

    type: Literal["ledger_entry.booked"]
    entry_id: str
    customer_id: str
    kind: EntryKind
    # Signed: credits are positive, reversals and redemptions negative.
    points: int
    cash: SignedMoney | None = None
    currency: CurrencyCode | None = None
    rule: str
    campaign_id: str | None = None
    reason: str
    source_event_id: str
    referral_id: str | None = None
    booked_at: EventTime
    # The customer's points balance once this entry is booked, and whether the account is
    # flagged for review (a clawback took it below zero).
    points_balance: int
    flagged: bool = False


LEDGER_ENTRY_ADAPTER: TypeAdapter[LedgerEntryBooked] = TypeAdapter(LedgerEntryBooked)
