"""Referral rules, pure: state and event in, state and events out; no faust, no I/O.

Three keyed steps, because the facts a decision needs live with different keys:

1. per counterparty (`leads`, keyed by the counterparty's keyed hash): the ties of our customers
   to an external account over the lead window, the lead it becomes, and whether a new
   customer's first funding came from a lead's account (a chain conversion);
2. per referee (`referees`, keyed by customer): the new customer's opening, the candidate
   referrer (by code, else by chain), qualification, early exit;
3. per referrer (`referrers`, the same customer state, as a referrer): the fraud guards that
   need the referrer's own facts (phone and device hashes, its upline, its recent referrals).

The adapter moves `Link`, `Candidate` and `Decision` records between the steps through internal
topics keyed by the next step's key, so any number of workers gives the same answers.
`rules` holds the thresholds and what the steps share.
"""

from services.referral.domain.leads import (
    ChainMatch,
    CounterpartyOutcome,
    CounterpartyState,
    Link,
    counterparty_kind,
    expire,
    lead_expires_at,
    link,
)
from services.referral.domain.referees import (
    Candidate,
    CodeGrant,
    CustomerReferralState,
    Decision,
    Movement,
    RefereeOutcome,
    on_account_event,
    on_chain_match,
    on_decision,
    on_review,
    qualifying_deposits,
    referral_event,
)
from services.referral.domain.referrers import await_decision, decide, decide_awaiting
from services.referral.domain.rules import DEFAULT_HOME_BANK_CODES, ReferralRules, referral_id

__all__ = [
    "DEFAULT_HOME_BANK_CODES",
    "Candidate",
    "ChainMatch",
    "CodeGrant",
    "CounterpartyOutcome",
    "CounterpartyState",
    "CustomerReferralState",
    "Decision",
    "Link",
    "Movement",
    "RefereeOutcome",
    "ReferralRules",
    "await_decision",
    "counterparty_kind",
    "decide",
    "decide_awaiting",
    "expire",
    "lead_expires_at",
    "link",
    "on_account_event",
    "on_chain_match",
    "on_decision",
    "on_review",
    "qualifying_deposits",
    "referral_event",
    "referral_id",
]
