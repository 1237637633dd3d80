"""The customer's profile as it stood at an event's time, whatever order the changes came in."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from schemas.lifecycle import Tier
from schemas.notify import Channel
from services.notify.domain import ProfileChange, profile_as_of

OPENED = datetime(2028, 3, 1, 9, 0, tzinfo=UTC)
CHANGES = [
    ProfileChange(OPENED + timedelta(minutes=5), "u1", {"locale": "en", "consent": {"sms": True}}),
    ProfileChange(OPENED + timedelta(days=30), "s1", {"tier": "affluent", "stage": "growth"}),
    ProfileChange(OPENED + timedelta(days=40), "u2", {"consent": {"email": True}, "rm_id": "RM7"}),
    ProfileChange(
        OPENED + timedelta(days=90), "u3", {"locale": "zh-CN", "consent": {"sms": False}}
    ),
]


def test_nothing_known_before_the_first_change() -> None:
    assert profile_as_of("C1", CHANGES, OPENED) is None


def test_changes_later_in_event_time_are_not_in_force_yet() -> None:
    """A welcome decided at the opening does not use the profile sent five minutes later."""
    at_day_35 = profile_as_of("C1", CHANGES, OPENED + timedelta(days=35))
    assert at_day_35 is not None
    assert (at_day_35.locale, at_day_35.tier, at_day_35.rm_id) == ("en", Tier.AFFLUENT, None)
    assert at_day_35.consent == {Channel.SMS: True}


def test_consent_entries_merge_and_later_ones_win() -> None:
    latest = profile_as_of("C1", CHANGES, OPENED + timedelta(days=365))
    assert latest is not None
    assert latest.consent == {Channel.SMS: False, Channel.EMAIL: True}
    assert (latest.locale, latest.rm_id) == ("zh-CN", "RM7")


def test_the_order_the_changes_were_taken_in_does_not_matter() -> None:
    at = OPENED + timedelta(days=60)
    answers = {
        profile.model_dump_json()
        for order in itertools.permutations(CHANGES)
        if (profile := profile_as_of("C1", list(order), at)) is not None
    }
    assert len(answers) == 1


def test_ties_in_time_are_broken_by_event_id() -> None:
    same_time = [
        ProfileChange(OPENED, "b", {"locale": "zh-CN"}),
        ProfileChange(OPENED, "a", {"locale": "en"}),
    ]
    assert profile_as_of("C1", same_time, OPENED).locale == "zh-CN"  # type: ignore[union-attr]
