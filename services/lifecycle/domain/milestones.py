"""Milestones: tenure anniversaries and birthdays, each announced once, at its own moment."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from schemas.account_events import CustomerUpdated
from schemas.lifecycle import CustomerBirthday, TenureAnniversary
from services.lifecycle.domain.rules import DEFAULT_TIME_ZONE
from services.lifecycle.domain.state import CustomerState, Output, output_id


def anniversary(start: datetime, years: int) -> datetime:
    """`start` plus whole years; a 29 February start has its anniversary on 28 February."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return start.replace(year=start.year + years, day=28)


def years_completed(start: datetime, t: datetime) -> int:
    years = max(t.year - start.year, 0)
    while years > 0 and anniversary(start, years) > t:
        years -= 1
    return years


def next_anniversary(state: CustomerState) -> datetime | None:
    if state.relationship_start is None or state.anniversaries_passed is None:
        return None
    return anniversary(state.relationship_start, state.anniversaries_passed + 1)


def anniversaries(state: CustomerState, t: datetime) -> list[Output]:
    outputs: list[Output] = []
    due = next_anniversary(state)
    while due is not None and due <= t and state.stage is not None:
        assert state.relationship_start is not None and state.anniversaries_passed is not None
        state.anniversaries_passed += 1
        outputs.append(
            TenureAnniversary(
                event_id=output_id(
                    state.customer_id, "anniversary", state.relationship_start.isoformat(), due
                ),
                type="tenure.anniversary",
                occurred_at=due,
                customer_id=state.customer_id,
                years=state.anniversaries_passed,
                relationship_start=state.relationship_start,
                stage=state.stage,
                tier=state.tier,
            )
        )
        due = next_anniversary(state)
    return outputs


def _birthday_in(state: CustomerState, year: int) -> datetime:
    """Midnight of the customer's birthday in `year`, in their time zone, as UTC."""
    assert state.birthday is not None
    return _midnight_of_birthday(state.birthday, year, state.time_zone or DEFAULT_TIME_ZONE)


@lru_cache(maxsize=4096)
def _midnight_of_birthday(birthday: date, year: int, time_zone: str) -> datetime:
    # Asked for at every deadline check: the time zone arithmetic is a tenth of the rules' time.
    try:
        day = birthday.replace(year=year)
    except ValueError:  # 29 February in a common year
        day = birthday.replace(year=year, day=28)
    return datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(time_zone)).astimezone(UTC)


def next_birthday(state: CustomerState) -> datetime | None:
    if state.birthday is None or state.birthday_year_done is None:
        return None
    return _birthday_in(state, state.birthday_year_done + 1)


def birthdays(state: CustomerState, t: datetime) -> list[Output]:
    outputs: list[Output] = []
    due = next_birthday(state)
    while due is not None and due <= t and state.stage is not None:
        assert state.birthday_year_done is not None
        state.birthday_year_done += 1
        outputs.append(
            CustomerBirthday(
                event_id=output_id(state.customer_id, "birthday", state.birthday_year_done),
                type="customer.birthday",
                occurred_at=due,
                customer_id=state.customer_id,
                stage=state.stage,
                tier=state.tier,
            )
        )
        due = next_birthday(state)
    return outputs


def learn_birthday(state: CustomerState, event: CustomerUpdated) -> None:
    """Take the birthday and time zone; birthdays already behind the customer are not
    announced."""
    profile = event.profile
    state.time_zone = profile.time_zone or state.time_zone
    if profile.birthday is None or profile.birthday == state.birthday:
        return
    state.birthday = profile.birthday
    t = event.occurred_at
    this_year = _birthday_in(state, t.year)
    state.birthday_year_done = t.year if this_year <= t else t.year - 1
