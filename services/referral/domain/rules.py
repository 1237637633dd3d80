"""The referral policy's thresholds, and what the three steps share: ids from content, and
how a rule takes the state it changes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.account_events import InstitutionCodes

_NAMESPACE = uuid.UUID("6f1c2a3e-0d4b-5c6e-9f70-8a1b2c3d4e5f")
DEFAULT_HOME_BANK_CODES = frozenset({"RAPPORTBANK"})


class ReferralRules(BaseModel):
    """Every threshold of the referral policy; defaults as in docs/referral.md."""

    model_config = ConfigDict(frozen=True)

    # The bank's own institution codes (several after a merger).
    home_bank_codes: InstitutionCodes = DEFAULT_HOME_BANK_CODES
    lead_window_days: int = Field(90, ge=1)
    lead_min_transactions: int = Field(3, ge=1)
    lead_min_customers: int = Field(2, ge=1)
    # Leads scoring below this (0-100, `lead_score`) are not raised: an RM team works a list,
    # not every payee. Chosen on the simulator's seeds 1-3 (docs/referral.md).
    lead_min_score: float = Field(0.0, ge=0, le=100)
    corporate_min_customers: int = Field(3, ge=1)
    lead_expiry_days: int = Field(180, ge=1)
    code_validity_days: int = Field(365, ge=1)
    chain_funding_days: int = Field(30, ge=1)
    qualify_within_days: int = Field(30, ge=1)
    qualify_deposit: Decimal = Decimal("1000")
    qualify_transactions: int = Field(3, ge=1)
    # The longest referral ring caught (A refers B, B refers C, ... and the last refers A).
    ring_max_length: int = Field(4, ge=2, le=8)
    # A referee funded through one hop: the referrer paid an external account, and within
    # these days that account paid the referee about as much (within a tenth).
    funding_hop_days: int = Field(7, ge=1)
    velocity_limit: int = Field(10, ge=1)
    velocity_window_days: int = Field(30, ge=1)
    early_exit_days: int = Field(90, ge=1)


S = TypeVar("S", bound=BaseModel)


def working_state(state: S | None, new: Callable[[], S], owned: bool) -> S:
    """The state a rule changes: a new one, the caller's own (`owned`: a state loaded for this
    call, changed in place), or a deep copy that leaves the caller's as it was."""
    if state is None:
        return new()
    return state if owned else state.model_copy(deep=True)


def content_id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


def referral_id(referee: str, opened_at: datetime) -> str:
    """One referral per referee and opening: the same input always gives the same id."""
    return content_id("referral", referee, opened_at.isoformat())
