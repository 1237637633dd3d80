"""The rewards service: runs one batch of events, or one redemption or adjustment, in one
serialised transaction. It reads what the rules need from the ledger once (`ledger.read_facts`),
asks the rules (`domain.py`) event by event, keeping the facts up to date as each event books,
and writes the transaction's rows together at its end (`ledger.write`).

Each event is decided on what the events before it in the batch booked, as if they were taken
one at a time: the caps count the batch's own earlier credits, an event delivered twice books
once, a clawback reverses what the batch credited. An event whose rules fail books nothing and
is returned as its exception; the others are booked.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session

from schemas.lifecycle import StageChanged, TenureAnniversary
from schemas.referral import REFERRAL_STATUS_RANK, ReferralChanged
from schemas.rewards import EntryKind, LedgerEntryBooked
from services.rewards import ledger
from services.rewards.domain import (
    Booking,
    Campaign,
    Credited,
    Decision,
    RedemptionRefused,
    ReferrerCredit,
    RewardRules,
    Rule,
    on_anniversary,
    on_referral_qualified,
    on_referral_reversed,
    on_stage_changed,
    referrer_history,
)
from services.rewards.domain import redeem as decide_redemption
from services.rewards.ledger import Account, Facts, ReferralStatus, SourceEvent, Writes
from services.runtime import db
from services.runtime.codec import encode
from services.runtime.tracing import current_traceparent

log = logging.getLogger(__name__)


@dataclass
class Applied:
    """What taking one event did."""

    duplicate: bool = False
    entries: list[LedgerEntryBooked] | None = None
    withheld: list[tuple[str, int]] | None = None  # (reason code, points)


def apply(url: str, event: SourceEvent, rules: RewardRules, now: datetime) -> Applied:
    """Take one referral or lifecycle event: decide with the rules, book, all in one
    transaction. An event taken before changes nothing."""
    (result,) = apply_all(url, [(event, current_traceparent())], rules, now)
    if isinstance(result, Exception):
        raise result
    return result


def apply_all(
    url: str,
    events: Sequence[tuple[SourceEvent, str | None]],
    rules: RewardRules,
    now: datetime,
) -> list[Applied | Exception]:
    """Take events, each with the traceparent its entries are relayed under, in order and in
    one transaction. Returns, for each event, what it did or the exception its rules failed
    on; a database failure fails the whole call. Should writing the batch fail otherwise (a
    constraint a row breaks), the events are taken again one per transaction, so that only
    the event at fault fails."""
    try:
        with db.serialised_session(url, ledger.LOCK) as session:
            return _take(session, events, rules, now)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        log.warning("writing a batch of %d events failed; taking them one at a time", len(events))
    results: list[Applied | Exception] = []
    for event, trace in events:
        try:
            with db.serialised_session(url, ledger.LOCK) as session:
                results += _take(session, [(event, trace)], rules, now)
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            results.append(exc)
    return results


def _take(
    session: Session,
    events: Sequence[tuple[SourceEvent, str | None]],
    rules: RewardRules,
    now: datetime,
) -> list[Applied | Exception]:
    facts = ledger.read_facts(session, [event for event, _ in events])
    results: list[Applied | Exception] = []
    decided: list[tuple[int, SourceEvent, str | None, Decision]] = []
    writes = Writes()
    for event, trace in events:
        if event.event_id in facts.taken:
            results.append(Applied(duplicate=True))
            continue
        try:
            decision = _decide(event, rules, facts)
        except Exception as exc:  # the event fails alone; the batch goes on
            results.append(exc)
            continue
        facts.taken.add(event.event_id)
        writes.source_events.append(
            {
                "event_id": event.event_id,
                "type": event.type,
                "occurred_at": event.occurred_at,
                "processed_at": now,
            }
        )
        if isinstance(event, ReferralChanged):
            _track_referral(facts, writes, event)
        _remember(facts, event, decision.bookings)
        decided.append((len(results), event, trace, decision))
        results.append(Applied())
    books = _Ledger(session, writes, now)
    books.open({b.customer_id for _, _, _, d in decided for b in d.bookings})
    for n, event, trace, decision in decided:
        entries = books.book(decision.bookings, event.event_id, event.occurred_at, trace=trace)
        writes.withholdings += [
            {
                "customer_id": w.customer_id,
                "points": w.points,
                "rule": w.rule.value,
                "reason_code": w.reason_code.value,
                "reason": w.reason[:300],
                "source_event_id": event.event_id,
                "referral_id": w.referral_id,
                "occurred_at": event.occurred_at,
                "booked_at": now,
            }
            for w in decision.withholdings
        ]
        results[n] = Applied(
            entries=entries,
            withheld=[(w.reason_code.value, w.points) for w in decision.withholdings],
        )
    ledger.write(session, writes, now)
    return results


def _decide(event: SourceEvent, rules: RewardRules, facts: Facts) -> Decision:
    if isinstance(event, TenureAnniversary):
        return on_anniversary(event, rules, facts.campaigns)
    if isinstance(event, StageChanged):
        matured = event.customer_id in facts.matured
        return on_stage_changed(event, rules, facts.campaigns, matured)
    if event.type == "referral.qualified":
        history = (
            None
            if event.referrer is None
            else referrer_history(facts.referrer_credits[event.referrer], event.occurred_at)
        )
        return on_referral_qualified(event, rules, facts.campaigns, history)
    if event.type == "referral.reversed":
        return on_referral_reversed(event, _standing(facts.referral_entries[event.referral_id]))
    return Decision()


def _standing(entries: list[tuple[str, str, int]]) -> list[Credited]:
    """What a referral's entries leave standing, per customer and rule."""
    net: dict[tuple[str, str], int] = defaultdict(int)
    for customer, rule, points in entries:
        net[customer, rule] += points
    return [
        Credited(customer, Rule(rule), points) for (customer, rule), points in sorted(net.items())
    ]


def _remember(facts: Facts, event: SourceEvent, bookings: list[Booking]) -> None:
    """What the event books, in the facts the batch's later events are decided on."""
    for b in bookings:
        if b.rule is Rule.LOYALTY_MATURITY:
            facts.matured.add(b.customer_id)
        if b.rule is Rule.REFERRAL_REFERRER and b.customer_id in facts.referrer_credits:
            facts.referrer_credits[b.customer_id].append(
                ReferrerCredit(b.referral_id, b.kind, b.points, event.occurred_at)
            )
        if b.referral_id in facts.referral_entries:
            facts.referral_entries[b.referral_id].append((b.customer_id, b.rule.value, b.points))


def _track_referral(facts: Facts, writes: Writes, event: ReferralChanged) -> None:
    status = event.type.split(".", 1)[1]
    known = facts.referrals.get(event.referral_id)
    if known is None:
        known = ReferralStatus(
            event.referral_id, event.referrer, event.referee, status, event.occurred_at
        )
    elif REFERRAL_STATUS_RANK[status] >= REFERRAL_STATUS_RANK[known.status]:
        known.status, known.referrer, known.updated_at = status, event.referrer, event.occurred_at
    else:
        return
    facts.referrals[event.referral_id] = writes.referrals[event.referral_id] = known


class _Ledger:
    """The accounts of one transaction and the entries it books on them."""

    def __init__(self, session: Session, writes: Writes, now: datetime) -> None:
        self.session, self.writes, self.now = session, writes, now
        self.accounts: dict[str, Account] = {}

    def open(self, customers: set[str]) -> None:
        """Read the customers' accounts, all at once."""
        self.accounts |= ledger.read_accounts(self.session, customers - set(self.accounts))

    def book(
        self,
        bookings: Sequence[Booking],
        source_event_id: str,
        occurred_at: datetime,
        actor: str | None = None,
        *,
        trace: str | None,
    ) -> list[LedgerEntryBooked]:
        """`trace`: the traceparent of the request or record that caused the entries; the relay
        sends them later, under it."""
        self.open({b.customer_id for b in bookings})
        booked = []
        for b in bookings:
            account = self.writes.accounts[b.customer_id] = self.accounts[b.customer_id]
            account.points += b.points
            if account.points < 0 and b.kind is EntryKind.REVERSAL and not account.flagged:
                # The points were spent before the clawback: the debt stays visible for review.
                account.flagged = True
                account.flag_reason = f"balance {account.points} after a clawback ({b.reason})"[
                    :300
                ]
            entry = {
                "entry_id": ledger.entry_id(source_event_id, b.rule.value, b.customer_id),
                "customer_id": b.customer_id,
                "kind": b.kind.value,
                "points": b.points,
                "rule": b.rule.value,
                "campaign_id": b.campaign_id,
                "reason": b.reason[:300],
                "source_event_id": source_event_id,
                "referral_id": b.referral_id,
                "occurred_at": occurred_at,
                "booked_at": self.now,
                "actor": actor,
                "points_balance": account.points,
            }
            event = ledger.published(entry, account.flagged)
            self.writes.entries.append(entry)
            self.writes.outbox.append(
                {
                    "entry_id": entry["entry_id"],
                    "key": b.customer_id,
                    "payload": encode(event),
                    "traceparent": trace,
                }
            )
            booked.append(event)
        return booked


# -- redemptions and adjustments -------------------------------------------------------------


class RedemptionResult(BaseModel):
    """The answer to a redemption request, stored with its idempotency key."""

    status_code: int
    customer_id: str
    points: int
    entry_id: str | None = None
    points_balance: int | None = None
    error: str | None = None
    message: str | None = None


class IdempotencyKeyReused(Exception):
    """The key was used before for a different request."""


def redeem(
    url: str, customer_id: str, key: str, points: int, what: str, now: datetime
) -> RedemptionResult:
    """Redeem points once per idempotency key: the same key gives the same answer; a key used
    with another request is refused. Serialised with every other write, so two redemptions on
    one balance can never overdraw it."""
    request_hash = hashlib.sha256(f"{points}|{what}".encode()).hexdigest()
    with db.serialised_session(url, ledger.LOCK) as session:
        known = ledger.known_redemption(session, customer_id, key)
        if known is not None:
            if known.request_hash != request_hash:
                raise IdempotencyKeyReused(key)
            return RedemptionResult.model_validate_json(known.response)
        writes = Writes()
        book = _Ledger(session, writes, now)
        book.open({customer_id})
        account = book.accounts[customer_id]
        try:
            booking = decide_redemption(customer_id, points, account.points, account.flagged, what)
        except RedemptionRefused as refused:
            result = RedemptionResult(
                status_code=409,
                customer_id=customer_id,
                points=points,
                points_balance=account.points,
                error=refused.code,
                message=refused.message,
            )
        else:
            (entry,) = book.book(
                [booking],
                f"redemption:{customer_id}:{key}",
                now,
                trace=current_traceparent(),
            )
            result = RedemptionResult(
                status_code=201,
                customer_id=customer_id,
                points=points,
                entry_id=entry.entry_id,
                points_balance=entry.points_balance,
            )
        ledger.write(session, writes, now)
        ledger.add_redemption(
            session,
            ledger.RedemptionRow(
                customer_id=customer_id,
                idempotency_key=key,
                request_hash=request_hash,
                status_code=result.status_code,
                response=result.model_dump_json(),
                created_at=now,
            ),
        )
        return result


def adjust(
    url: str, customer_id: str, points: int, reason: str, actor: str, now: datetime
) -> LedgerEntryBooked:
    """An administrator's manual entry, with its reason and author in the ledger and the audit
    trail. Each call is a new entry (its id is random): adjustments are deliberate acts."""
    booking = Booking(customer_id, points, EntryKind.ADJUSTMENT, Rule.ADJUSTMENT, reason)
    with db.serialised_session(url, ledger.LOCK) as session:
        writes = Writes()
        (entry,) = _Ledger(session, writes, now).book(
            [booking], f"adjustment:{uuid.uuid4()}", now, actor, trace=current_traceparent()
        )
        ledger.write(session, writes, now)
        ledger.audit(
            session, now, actor, "adjustment", customer_id, {"points": points, "reason": reason}
        )
        return entry


# -- review flags and campaigns -------------------------------------------------------------


def clear_flag(url: str, customer_id: str, note: str, actor: str, now: datetime) -> bool:
    """Clear a review flag; False when the account is not flagged."""
    with db.serialised_session(url, ledger.LOCK) as session:
        account = ledger.account_row(session, customer_id)
        if account is None or not account.flagged:
            return False
        previous = account.flag_reason
        account.flagged, account.flag_reason, account.updated_at = False, None, now
        ledger.audit(
            session, now, actor, "flag_cleared", customer_id, {"note": note, "was": previous}
        )
        return True


def create_campaign(url: str, campaign: Campaign, actor: str, now: datetime) -> bool:
    """Store a new campaign; False when its id is taken."""
    with db.serialised_session(url, ledger.LOCK) as session:
        if ledger.campaign_row(session, campaign.campaign_id) is not None:
            return False
        ledger.add_campaign(session, campaign, actor, now)
        ledger.audit(
            session,
            now,
            actor,
            "campaign_created",
            campaign.campaign_id,
            campaign.model_dump(mode="json"),
        )
        return True


def update_campaign(
    url: str, campaign_id: str, changes: dict[str, Any], actor: str, now: datetime
) -> Campaign | None:
    """Apply validated changes to a campaign; None when there is no such campaign."""
    with db.serialised_session(url, ledger.LOCK) as session:
        row = ledger.campaign_row(session, campaign_id)
        if row is None:
            return None
        merged = ledger.campaign_of(row).model_copy(update=changes)
        Campaign.model_validate(merged.model_dump())  # the combination must still be valid
        for name, value in changes.items():
            setattr(row, name, value)
        row.updated_at = now
        ledger.audit(
            session,
            now,
            actor,
            "campaign_updated",
            campaign_id,
            {k: str(v) for k, v in changes.items()},
        )
        return merged
