"""Lifecycle rules: a customer's state and one event (or the passing of time) in, the new state
and the stage, tier and churn-signal events out. No faust, no I/O, no wall clock: `now` is always
event time, so replaying history gives the same answers as living through it.

- `rules`: every threshold and its default;
- `state`: what is kept of a customer;
- `balances`: end-of-day totals, averages and maxima;
- `stages`: stage, tier, churn score and probable cause;
- `signals`: the churn signals, raised by events and by time;
- `milestones`: anniversaries and birthdays;
- `events`: an event, or the passing of time, through all of them.
"""

from services.lifecycle.domain.balances import average_balance
from services.lifecycle.domain.events import advance, apply_event, next_deadline
from services.lifecycle.domain.milestones import anniversary
from services.lifecycle.domain.rules import DEFAULT_TIME_ZONE, LifecycleRules
from services.lifecycle.domain.stages import churn_score, probable_cause, target_stage, target_tier
from services.lifecycle.domain.state import CustomerState, Outcome, Output, Pseudonyms

__all__ = [
    "DEFAULT_TIME_ZONE",
    "CustomerState",
    "LifecycleRules",
    "Outcome",
    "Output",
    "Pseudonyms",
    "advance",
    "anniversary",
    "apply_event",
    "average_balance",
    "churn_score",
    "next_deadline",
    "probable_cause",
    "target_stage",
    "target_tier",
]
