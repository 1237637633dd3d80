"""Referral data in SQL: issued codes (their system of record: the API writes them, the worker
looks them up at account opening) and the read model of referrals and leads (written by the
worker from its own outputs, in batches, read by the API)."""

from __future__ import annotations

import secrets
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, model_validator
from sqlalchemy import DateTime, func, select
from sqlmodel import Field, SQLModel

from schemas.referral import REFERRAL_STATUS_RANK, LeadChanged, ReferralChanged, ReferralReason
from services.referral.domain import CodeGrant
from services.referral.domain.referees import REASONS_ZH
from services.runtime import db

_TIME = DateTime(timezone=True)
# Unambiguous characters only: a code read out over the phone must survive it.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


class ReferralCodeRow(SQLModel, table=True):
    __tablename__ = "referral_codes"

    code: str = Field(primary_key=True, max_length=32)
    owner: str = Field(index=True, max_length=64)
    issued_at: datetime = Field(sa_type=_TIME)
    expires_at: datetime = Field(sa_type=_TIME)


class ReferralRow(SQLModel, table=True):
    __tablename__ = "referrals"

    referral_id: str = Field(primary_key=True, max_length=64)
    referrer: str | None = Field(default=None, index=True, max_length=64)
    referee: str = Field(index=True, max_length=64)
    via: str = Field(max_length=8)
    lead_type: str = Field(max_length=16)
    channel: str | None = Field(default=None, max_length=16)
    status: str = Field(max_length=16)
    rank: int
    reason_code: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=300)
    updated_at: datetime = Field(sa_type=_TIME)


class LeadRow(SQLModel, table=True):
    __tablename__ = "referral_leads"

    lead_id: str = Field(primary_key=True, max_length=64)
    lead_type: str = Field(max_length=16)
    suggested_referrer: str = Field(index=True, max_length=64)
    transactions: int
    customers: int
    detected_at: datetime = Field(sa_type=_TIME)
    updated_at: datetime = Field(sa_type=_TIME)
    expires_at: datetime = Field(sa_type=_TIME)


# -- codes -------------------------------------------------------------------------------------


def issue_code(url: str, owner: str, now: datetime, validity: timedelta) -> ReferralCodeRow:
    """A new unguessable code for `owner` (40 bits from the OS's CSPRNG)."""
    with db.session_scope(url) as session:
        while True:
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            if session.get(ReferralCodeRow, code) is None:
                break
        row = ReferralCodeRow(code=code, owner=owner, issued_at=now, expires_at=now + validity)
        session.add(row)
        session.flush()
        session.expunge(row)
    return row


def register_codes(
    url: str, codes: dict[str, str], issued_at: datetime, validity: timedelta
) -> None:
    """Codes issued elsewhere (a migration, or the simulator's truth): code -> owner."""
    rows = [
        {"code": c, "owner": o, "issued_at": issued_at, "expires_at": issued_at + validity}
        for c, o in codes.items()
    ]
    table = ReferralCodeRow.__table__  # type: ignore[attr-defined]
    db.upsert(url, table, rows, "code", "issued_at")


def find_code(url: str, code: str) -> CodeGrant | None:
    with db.session_scope(url) as session:
        row = session.get(ReferralCodeRow, code.strip().upper())
        if row is None:
            return None
        return CodeGrant(owner=row.owner, issued_at=db.as_utc(row.issued_at))


# -- the worker's writes -----------------------------------------------------------------------


def write(url: str, outputs: list[LeadChanged | ReferralChanged]) -> None:
    """Upsert the referrals and leads these outputs change (the latest stage wins)."""
    referrals: dict[str, dict[str, Any]] = {}
    leads: dict[str, dict[str, Any]] = {}
    for o in outputs:
        if isinstance(o, ReferralChanged):
            status = o.type.split(".", 1)[1]
            row = ReferralRow(
                referral_id=o.referral_id,
                referrer=o.referrer,
                referee=o.referee,
                via=o.via,
                lead_type=o.lead_type.value,
                channel=o.channel,
                status=status,
                rank=REFERRAL_STATUS_RANK[status],
                reason_code=o.reason_code.value if o.reason_code else None,
                reason=o.reason,
                updated_at=o.occurred_at,
            ).model_dump()
            known = referrals.get(o.referral_id)
            if known is None or known["rank"] <= row["rank"]:
                referrals[o.referral_id] = row
        else:
            leads[o.lead_id] = LeadRow(
                lead_id=o.lead_id,
                lead_type=o.lead_type.value,
                suggested_referrer=o.suggested_referrer,
                transactions=o.strength.transactions,
                customers=o.strength.customers,
                detected_at=leads.get(o.lead_id, {}).get("detected_at", o.occurred_at),
                updated_at=o.occurred_at,
                expires_at=o.expires_at,
            ).model_dump()
    referrals_table = ReferralRow.__table__  # type: ignore[attr-defined]
    leads_table = LeadRow.__table__  # type: ignore[attr-defined]
    db.upsert(url, referrals_table, list(referrals.values()), "referral_id", "rank")
    # A lead's detection time is its first row's: later updates keep it.
    db.upsert(
        url, leads_table, list(leads.values()), "lead_id", "updated_at", keep=("detected_at",)
    )


# -- the API's views ---------------------------------------------------------------------------


class ReferralView(BaseModel):
    referral_id: str
    referrer: str | None
    channel: str | None
    referee: str
    via: str
    lead_type: str
    status: str
    reason_code: str | None
    reason: str | None
    updated_at: datetime
    # The reason as one sentence per locale ("en", "zh-CN"), for the RM.
    explanation: dict[str, str] | None = None

    @model_validator(mode="after")
    def _explained(self) -> ReferralView:
        if self.explanation is None and self.reason_code and self.reason:
            zh = REASONS_ZH.get(ReferralReason(self.reason_code))
            if zh is not None:
                self.explanation = {"en": self.reason, "zh-CN": zh + "。"}
        return self


class LeadView(BaseModel):
    """A lead naming the customer as its suggested referrer: a counterparty (by its pseudonym,
    the lead id) who does not bank here yet."""

    lead_id: str
    lead_type: str
    transactions: int
    customers: int
    detected_at: datetime
    updated_at: datetime
    expires_at: datetime


# The leads a customer's page lists at most, the latest first.
MAX_LEADS = 50


class CustomerReferrals(BaseModel):
    customer_id: str
    codes: list[str]
    referrals: list[ReferralView]
    leads_suggested: int
    # Added 2026-12-07: the latest of those leads (at most MAX_LEADS).
    leads: list[LeadView] = []


def customer_referrals(url: str, customer_id: str) -> CustomerReferrals:
    """The customer's codes, the referrals they made (latest stage of each), and the leads that
    name them as the suggested referrer (how many, and the latest)."""
    codes_table = ReferralCodeRow.__table__  # type: ignore[attr-defined]
    referrals_table = ReferralRow.__table__  # type: ignore[attr-defined]
    leads_table = LeadRow.__table__  # type: ignore[attr-defined]
    with db.get_engine(url).connect() as connection:
        codes = connection.execute(
            select(codes_table.c.code).where(codes_table.c.owner == customer_id)
        ).scalars()
        rows = connection.execute(
            select(referrals_table)
            .where(referrals_table.c.referrer == customer_id)
            .order_by(referrals_table.c.updated_at)
        ).mappings()
        referrals = [
            ReferralView(**{**row, "updated_at": db.as_utc(row["updated_at"])}) for row in rows
        ]
        theirs = leads_table.c.suggested_referrer == customer_id
        count = connection.execute(select(func.count()).where(theirs)).scalar_one()
        latest = connection.execute(
            select(leads_table)
            .where(theirs)
            .order_by(leads_table.c.updated_at.desc(), leads_table.c.lead_id)
            .limit(MAX_LEADS)
        ).mappings()
        leads = [
            LeadView(
                **{
                    **row,
                    **{k: db.as_utc(row[k]) for k in ("detected_at", "updated_at", "expires_at")},
                }
            )
            for row in latest
        ]
        return CustomerReferrals(
            customer_id=customer_id,
            codes=sorted(codes),
            referrals=referrals,
            leads_suggested=int(count),
            leads=leads,
        )


def referral(url: str, referral_id: str) -> ReferralView | None:
    """One referral at its latest stage."""
    table = ReferralRow.__table__  # type: ignore[attr-defined]
    with db.get_engine(url).connect() as connection:
        row = connection.execute(select(table).where(table.c.referral_id == referral_id)).mappings()
        found = row.first()
    if found is None:
        return None
    return ReferralView(**{**found, "updated_at": db.as_utc(found["updated_at"])})


class FunnelStep(BaseModel):
    leads: int
    attributed: int
    qualified: int
    rewarded: int | None
    rejected: int
    held: int
    reversed: int
    attribution_rate: float | None
    qualification_rate: float | None


class Funnel(BaseModel):
    """Counts by lead type and by channel; `rewarded` comes with the rewards service."""

    by_lead_type: dict[str, FunnelStep]
    by_channel: dict[str, FunnelStep]


def _step(leads: int, status: Counter[str]) -> FunnelStep:
    # A referral counts once, at its latest stage; every later stage passed through attributed.
    attributed = (
        status["attributed"] + status["released"] + status["qualified"] + status["reversed"]
    )
    qualified = status["qualified"] + status["reversed"]
    return FunnelStep(
        leads=leads,
        attributed=attributed,
        qualified=qualified,
        rewarded=None,
        rejected=status["rejected"],
        held=status["held"],
        reversed=status["reversed"],
        attribution_rate=round(attributed / leads, 4) if leads else None,
        qualification_rate=round(qualified / attributed, 4) if attributed else None,
    )


def funnel(url: str) -> Funnel:
    """Leads and referrals by lead type and by channel, each referral at its latest stage."""
    leads_table = LeadRow.__table__  # type: ignore[attr-defined]
    referrals_table = ReferralRow.__table__  # type: ignore[attr-defined]
    with db.get_engine(url).connect() as connection:
        leads = {
            lead_type: count
            for lead_type, count in connection.execute(
                select(leads_table.c.lead_type, func.count()).group_by(leads_table.c.lead_type)
            )
        }
        rows = connection.execute(
            select(referrals_table.c.lead_type, referrals_table.c.channel, referrals_table.c.status)
        ).all()
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    by_channel: dict[str, Counter[str]] = defaultdict(Counter)
    for lead_type, channel, status in rows:
        by_type[lead_type][status] += 1
        by_channel[channel or "unknown"][status] += 1
    types = sorted({*leads, *by_type})
    return Funnel(
        by_lead_type={t: _step(int(leads.get(t, 0)), by_type[t]) for t in types},
        by_channel={c: _step(0, s) for c, s in sorted(by_channel.items())},
    )
