"""Step 3, per referrer (the same customer state, as a referrer): the fraud guards that need
the referrer's own facts (phone and device hashes, upline, recent referrals), decided in
event-time order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from schemas.referral import (
    ReferralReason,
)
from services.referral.domain.referees import (
    Candidate,
    CustomerReferralState,
    Decision,
)
from services.referral.domain.rules import ReferralRules, working_state

# -- 3. referrers ------------------------------------------------------------------------------


def _vouch(state: CustomerReferralState, candidate: Candidate) -> None:
    kept = [c for c in state.vouched if c.referral_id != candidate.referral_id]
    state.vouched = [*kept, candidate.model_copy(update={"recheck": False})][-50:]


def _decided_as(candidate: Candidate) -> str:
    decided_as = candidate.referral_id
    if candidate.recheck:
        decided_as += ":" + ",".join(sorted(candidate.referee_hashes))
    return decided_as


def await_decision(
    state: CustomerReferralState | None, candidate: Candidate
) -> CustomerReferralState | None:
    """A candidate reaching its referrer waits there until every candidate dated before it has
    arrived (the steps watermarks); returns the state with it waiting, or None for one decided
    or waiting already (a redelivery)."""
    state = working_state(
        state, lambda: CustomerReferralState(customer_id=candidate.referrer), False
    )
    decided_as = _decided_as(candidate)
    if decided_as in state.decided or any(_decided_as(c) == decided_as for c in state.awaiting):
        return None
    state.awaiting = [*state.awaiting, candidate]
    return state


def decide_awaiting(
    state: CustomerReferralState, before: datetime, rules: ReferralRules
) -> tuple[CustomerReferralState, list[Decision]]:
    """Decide, in event-time order, the waiting candidates dated before `before`."""
    ready = sorted(
        (c for c in state.awaiting if c.occurred_at < before),
        key=lambda c: (c.occurred_at, c.referral_id, c.recheck),
    )
    state.awaiting = [c for c in state.awaiting if c.occurred_at >= before]
    decisions = []
    for candidate in ready:
        state, decision = decide(state, candidate, rules)
        if decision is not None:
            decisions.append(decision)
    return state, decisions


def decide(
    state: CustomerReferralState | None, candidate: Candidate, rules: ReferralRules
) -> tuple[CustomerReferralState, Decision | None]:
    """The fraud guards that need the referrer's facts. Returns None for a candidate decided
    before (a redelivery)."""
    state = working_state(
        state, lambda: CustomerReferralState(customer_id=candidate.referrer), False
    )
    decided_as = _decided_as(candidate)
    if decided_as in state.decided:
        return state, None
    state.decided = [*state.decided, decided_as][-200:]
    t = candidate.occurred_at

    def answer(
        outcome: Literal["attributed", "held", "rejected"],
        code: ReferralReason | None = None,
        reason: str | None = None,
    ) -> Decision:
        return Decision(
            candidate=candidate,
            outcome=outcome,
            reason_code=code,
            reason=reason,
            upline=(candidate.referrer, *state.upline[:1]),
            referrer_accounts=tuple(state.accounts),
            referrer_counterparties=tuple(state.counterparties),
        )

    if candidate.referee == candidate.referrer:
        return state, answer(
            "rejected", ReferralReason.SELF_REFERRAL, "the referee is the referrer"
        )
    shared = set(candidate.referee_hashes) & set(state.hashes)
    if shared:
        return state, answer(
            "rejected",
            ReferralReason.SHARED_PHONE_OR_DEVICE,
            "the referee shares a phone number or device with the referrer",
        )
    if candidate.recheck:
        _vouch(state, candidate)
        return state, answer("attributed")  # confirmed: the referee may qualify now
    # The upline arrives with the referrer's own decision; the referrer's own candidate is
    # known from its opening on. Checking both catches A->B with B->A in either order, even
    # when both referrals are decided at the same moment.
    # Only the referrer's own referral made before this one counts: one made later is checked
    # when it is decided (its referrer's own candidate is this one), so that a replay that
    # reads the referrer's events ahead decides the same.
    own = state.candidate
    if candidate.referee in state.upline or (
        own is not None and own.referrer == candidate.referee and own.occurred_at <= t
    ):
        return state, answer(
            "rejected",
            ReferralReason.REFERRAL_RING,
            f"{candidate.referee} is already in {candidate.referrer}'s referral chain, so "
            "the two would refer each other",
        )
    since = t - timedelta(days=rules.velocity_window_days)
    recent = [r for r in state.referred if r[0] > since]
    state.referred = [*recent, (t, candidate.referee)]
    _vouch(state, candidate)
    if len(recent) >= rules.velocity_limit:
        return state, answer(
            "held",
            ReferralReason.VELOCITY,
            f"{len(recent) + 1} referrals by {candidate.referrer} within "
            f"{rules.velocity_window_days} days, more than {rules.velocity_limit}: held for review",
        )
    return state, answer("attributed")
