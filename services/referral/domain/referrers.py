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
    if candidate.funding_check:
        return f"{decided_as}:funding:{candidate.occurred_at.isoformat()}"
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
    """Decide, in event-time order, the waiting candidates dated before `before`. A referrer
    whose own referral, made before theirs, is still being decided holds them until its answer
    is back: the answer brings the referrer's upline, without which a ring closing through it
    is not seen (the steps release the referrer's own referral and the ones it makes at once
    when the input is read fast). Each wait is on an earlier referral, so none waits for ever."""
    own = state.candidate if state.status == "pending" else None

    def released(c: Candidate) -> bool:
        return c.occurred_at < before and (own is None or c.occurred_at <= own.occurred_at)

    ready = sorted(
        filter(released, state.awaiting), key=lambda c: (c.occurred_at, c.referral_id, c.recheck)
    )
    state.awaiting = [c for c in state.awaiting if not released(c)]
    decisions = []
    for candidate in ready:
        state, decided = decide(state, candidate, rules)
        decisions += decided
    return state, decisions


def decide(
    state: CustomerReferralState | None, candidate: Candidate, rules: ReferralRules
) -> tuple[CustomerReferralState, list[Decision]]:
    """The fraud guards that need the referrer's facts: the answer to the candidate first, then
    any decisions on referrals let through before that this one shows to be fraud (the rest of
    a burst, the other legs of a ring). Nothing for a candidate decided before (a
    redelivery)."""
    state = working_state(
        state, lambda: CustomerReferralState(customer_id=candidate.referrer), False
    )
    decided_as = _decided_as(candidate)
    if decided_as in state.decided:
        return state, []
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
            upline=(candidate.referrer, *state.upline[: rules.ring_max_length - 2]),
            upline_legs=tuple(state.upline_legs[: rules.ring_max_length - 1]),
            referrer_accounts=tuple(state.accounts),
            referrer_counterparties=tuple(state.counterparties),
            # As of the candidate's time, whatever this referrer's input has taken since.
            referrer_payments=tuple(p for p in state.payments_out if p[1] <= t),
        )

    if candidate.funding_check:
        return state, [answer("attributed")]

    if candidate.referee == candidate.referrer:
        return state, [
            answer("rejected", ReferralReason.SELF_REFERRAL, "the referee is the referrer")
        ]
    shared = set(candidate.referee_hashes) & set(state.hashes)
    if shared:
        return state, [
            answer(
                "rejected",
                ReferralReason.SHARED_PHONE_OR_DEVICE,
                "the referee shares a phone number or device with the referrer",
            )
        ]
    if candidate.recheck:
        _vouch(state, candidate)
        return state, [answer("attributed")]  # confirmed: the referee may qualify now
    # The upline arrives with the referrer's own decision; the referrer's own candidate is
    # known from its opening on. Checking both catches A->B with B->A in either order, even
    # when both referrals are decided at the same moment.
    # Only the referrer's own referral made before this one counts: one made later is checked
    # when it is decided (its referrer's own candidate is this one), so that a replay that
    # reads the referrer's events ahead decides the same.
    own = state.candidate
    ring = None
    if candidate.referee in state.upline:
        ring = state.upline.index(candidate.referee) + 1
    elif own is not None and own.referrer == candidate.referee and own.occurred_at <= t:
        ring = 1
    if ring is not None:
        reason = (
            f"{candidate.referee} is already in {candidate.referrer}'s referral chain: "
            f"a ring of {ring + 1} customers referring one another"
        )
        # The ring's other legs, let through before it closed, are held (or reversed).
        legs = [leg for leg in state.upline_legs[:ring] if leg[0] not in state.held_after]
        state.held_after = [*state.held_after, *(rid for rid, _ in legs)][-100:]
        return state, [
            answer("rejected", ReferralReason.REFERRAL_RING, reason),
            *(
                _after_the_fact(rid, referee, candidate, ReferralReason.REFERRAL_RING, reason)
                for rid, referee in legs
            ),
        ]
    since = t - timedelta(days=rules.velocity_window_days)
    recent = [r for r in state.referred if r[0] > since]
    state.referred = [*recent, (t, candidate.referee)]
    _vouch(state, candidate)
    if len(recent) >= rules.velocity_limit:
        reason = (
            f"{len(recent) + 1} referrals by {candidate.referrer} within "
            f"{rules.velocity_window_days} days, more than {rules.velocity_limit}: held for review"
        )
        # The whole burst: the referrals of the window let through before it showed are held
        # too (or reversed, their rewards clawed back, if they had qualified).
        burst = [
            c
            for c in state.vouched
            if c.occurred_at > since
            and c.referral_id != candidate.referral_id
            and c.referral_id not in state.held_after
        ]
        held = [candidate.referral_id, *(c.referral_id for c in burst)]
        state.held_after = [*state.held_after, *held][-100:]
        return state, [
            answer("held", ReferralReason.VELOCITY, reason),
            *(
                _after_the_fact(
                    c.referral_id, c.referee, candidate, ReferralReason.VELOCITY, reason
                )
                for c in burst
            ),
        ]
    return state, [answer("attributed")]


def _after_the_fact(
    referral_id: str, referee: str, cause: Candidate, code: ReferralReason, reason: str
) -> Decision:
    """A decision for a referral already let through, sent to its referee, dated at the
    referral that showed the burst or closed the ring."""
    return Decision(
        candidate=cause.model_copy(
            update={"referral_id": referral_id, "referee": referee, "recheck": False}
        ),
        outcome="held",
        reason_code=code,
        reason=reason,
        after_the_fact=True,
    )
