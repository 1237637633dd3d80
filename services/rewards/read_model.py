"""What the API and operators read from the rewards ledger: a customer's balance with what is
pending and withheld, their entries page by page, the ledger's totals, the proof that every
balance equals its entries, the campaigns and the audit trail. Queries only; the tables are in
`ledger.py`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel
from sqlmodel import col, func, select

from schemas.rewards import LedgerEntryBooked
from services.rewards.domain import Campaign, RewardRules
from services.rewards.ledger import (
    PENDING_STATUSES,
    AuditRow,
    CampaignRow,
    LedgerEntryRow,
    ReferralRewardRow,
    RewardAccountRow,
    WithholdingRow,
    campaign_of,
    published,
)
from services.rewards.outbox import outbox_backlog
from services.runtime import db


class PendingRewards(BaseModel):
    referrals: int
    points: int


class RewardsSummary(BaseModel):
    customer_id: str
    points: int
    cash: dict[str, Decimal]
    pending: PendingRewards
    withheld_points: int
    flagged: bool
    flag_reason: str | None


def summary(url: str, customer_id: str, rules: RewardRules) -> RewardsSummary | None:
    """Balance by unit, what is pending and withheld, and the review flag; None for a customer
    the ledger has never seen."""
    with db.session_scope(url) as session:
        account = session.get(RewardAccountRow, customer_id)
        referrals = session.exec(
            select(ReferralRewardRow).where(
                (ReferralRewardRow.referrer == customer_id)
                | (ReferralRewardRow.referee == customer_id),
                ReferralRewardRow.status.in_(PENDING_STATUSES),  # type: ignore[attr-defined]
            )
        ).all()
        if account is None and not referrals:
            return None
        cash = session.exec(
            select(LedgerEntryRow.currency, func.sum(LedgerEntryRow.cash))
            .where(LedgerEntryRow.customer_id == customer_id, LedgerEntryRow.cash.is_not(None))  # type: ignore[union-attr]
            .group_by(LedgerEntryRow.currency)
        ).all()
        withheld = session.exec(
            select(func.coalesce(func.sum(WithholdingRow.points), 0)).where(
                WithholdingRow.customer_id == customer_id
            )
        ).one()
        pending_points = sum(
            (rules.referrer_points if r.referrer == customer_id else 0)
            + (rules.referee_points if r.referee == customer_id else 0)
            for r in referrals
        )
        return RewardsSummary(
            customer_id=customer_id,
            points=account.points if account else 0,
            cash={str(c): Decimal(v or 0) for c, v in cash},
            pending=PendingRewards(referrals=len(referrals), points=pending_points),
            withheld_points=int(withheld),
            flagged=bool(account and account.flagged),
            flag_reason=account.flag_reason if account else None,
        )


class LedgerPage(BaseModel):
    customer_id: str
    entries: list[LedgerEntryBooked]
    # Pass as `after` for the next page; None on the last page.
    next_after: int | None


def entries(url: str, customer_id: str, after: int, limit: int) -> LedgerPage:
    """A customer's entries in booking order, `limit` at a time."""
    with db.session_scope(url) as session:
        rows = session.exec(
            select(LedgerEntryRow)
            .where(LedgerEntryRow.customer_id == customer_id, LedgerEntryRow.id > after)  # type: ignore[operator]
            .order_by(LedgerEntryRow.id)  # type: ignore[arg-type]
            .limit(limit + 1)
        ).all()
        page = rows[:limit]
        return LedgerPage(
            customer_id=customer_id,
            entries=[published(r.model_dump(), False) for r in page],
            next_after=page[-1].id if len(rows) > limit else None,
        )


class RuleTotal(BaseModel):
    rule: str
    kind: str
    entries: int
    points: int


class LedgerTotals(BaseModel):
    """The whole ledger at a glance, for operations."""

    by_rule: list[RuleTotal]
    withheld_points_by_reason: dict[str, int]
    accounts: int
    accounts_flagged: int
    outbox_backlog: int


def totals(url: str) -> LedgerTotals:
    """Entries and points by rule and kind, what caps withheld, accounts, the outbox backlog."""
    with db.session_scope(url) as session:
        by_rule = session.exec(
            select(
                LedgerEntryRow.rule,
                LedgerEntryRow.kind,
                func.count(),
                func.sum(LedgerEntryRow.points),
            )
            .group_by(LedgerEntryRow.rule, LedgerEntryRow.kind)
            .order_by(LedgerEntryRow.rule, LedgerEntryRow.kind)
        ).all()
        withheld = session.exec(
            select(WithholdingRow.reason_code, func.sum(WithholdingRow.points)).group_by(
                WithholdingRow.reason_code
            )
        ).all()
        accounts = session.exec(select(func.count()).select_from(RewardAccountRow)).one()
        flagged = session.exec(
            select(func.count())
            .select_from(RewardAccountRow)
            .where(col(RewardAccountRow.flagged).is_(True))
        ).one()
    return LedgerTotals(
        by_rule=[RuleTotal(rule=r, kind=k, entries=n, points=int(p)) for r, k, n, p in by_rule],
        withheld_points_by_reason={str(r): int(p) for r, p in withheld},
        accounts=int(accounts),
        accounts_flagged=int(flagged),
        outbox_backlog=outbox_backlog(url),
    )


@dataclass(frozen=True)
class BalanceCheck:
    """Accounts whose maintained balance differs from the sum of their entries."""

    accounts: int
    mismatches: dict[str, tuple[int, int]]  # customer -> (maintained, summed)


def check_balances(url: str) -> BalanceCheck:
    """Compare every maintained balance with the sum of that customer's entries."""
    with db.session_scope(url) as session:
        summed = dict(
            session.exec(
                select(LedgerEntryRow.customer_id, func.sum(LedgerEntryRow.points)).group_by(
                    LedgerEntryRow.customer_id
                )
            ).all()
        )
        maintained = dict(
            session.exec(select(RewardAccountRow.customer_id, RewardAccountRow.points)).all()
        )
    mismatches = {
        c: (maintained.get(c, 0), int(summed.get(c, 0)))
        for c in set(summed) | set(maintained)
        if maintained.get(c, 0) != int(summed.get(c, 0))
    }
    return BalanceCheck(len(maintained), mismatches)


class AuditEntry(BaseModel):
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


def audit_trail(url: str, limit: int) -> list[AuditEntry]:
    """The newest `limit` manual actions."""
    with db.session_scope(url) as session:
        rows = session.exec(select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
        return [
            AuditEntry(
                at=db.as_utc(r.at),
                actor=r.actor,
                action=r.action,
                target=r.target,
                detail=orjson.loads(r.detail),
            )
            for r in rows
        ]


def campaigns(url: str) -> list[Campaign]:
    """Every campaign, active or not."""
    with db.session_scope(url) as session:
        rows = session.exec(select(CampaignRow).order_by(CampaignRow.starts_at)).all()  # type: ignore[arg-type]
        return [campaign_of(row) for row in rows]
