"""The calendar a household lives by: paydays moved to a banking day, the Spring Festival."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta

# The first day of the lunar new year (春节). Outside these years the simulator takes 5 February,
# the middle of its range.
SPRING_FESTIVAL = {
    2020: date(2020, 1, 25),
    2021: date(2021, 2, 12),
    2022: date(2022, 2, 1),
    2023: date(2023, 1, 22),
    2024: date(2024, 2, 10),
    2025: date(2025, 1, 29),
    2026: date(2026, 2, 17),
    2027: date(2027, 2, 6),
    2028: date(2028, 1, 26),
    2029: date(2029, 2, 13),
    2030: date(2030, 2, 3),
    2031: date(2031, 1, 23),
    2032: date(2032, 2, 11),
    2033: date(2033, 1, 31),
    2034: date(2034, 2, 19),
    2035: date(2035, 2, 8),
}


def spring_festival(year: int) -> datetime:
    """Midnight UTC of the Spring Festival of that year."""
    day = SPRING_FESTIVAL.get(year, date(year, 2, 5))
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def banking_day(day: datetime) -> datetime:
    """The day itself on a weekday; the Friday before on a weekend (a payroll run falling on a
    Saturday or Sunday is paid the banking day before)."""
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def day_of_month(year: int, month: int, day: int) -> datetime:
    """Midnight UTC of that day of the month, the month's last day for days it does not have."""
    last = calendar.monthrange(year, month)[1]
    return datetime(year, month, min(max(day, 1), last), tzinfo=UTC)


def months(first: datetime, last: datetime) -> list[tuple[int, int]]:
    """(year, month) of every month from the one of `first` to the one of `last`."""
    found = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        found.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found
