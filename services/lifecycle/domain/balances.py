"""A customer's total balance over time: end-of-day totals of the last 90 days, their averages
and maxima (tiers, maturity and the balance-drain rule read them)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from services.lifecycle.domain.state import CustomerState, day_of

# Longer than a month without any balance: the month the balance comes back was not followed.
BALANCE_GAP = timedelta(days=31)


def _runs(state: CustomerState, t: datetime, days: int) -> list[tuple[int, Decimal, int]]:
    """End-of-day total balances for the `days` days ending at t as runs of equal days (first
    day, total, days), carrying the last known value forward; days before the first known
    balance are left out. Runs, not days: the averages are asked for at every evaluation."""
    totals = state.daily_totals
    end = day_of(t)
    start = end - days + 1
    before = [day for day in totals if day < start]
    day, value = (start, totals[max(before)]) if before else (start, None)
    runs = []
    for changed in sorted(d for d in totals if start <= d <= end):
        if value is not None and changed > day:
            runs.append((day, value, changed - day))
        day, value = changed, totals[changed]
    if value is not None:
        runs.append((day, value, end + 1 - day))
    return runs


def average_balance(state: CustomerState, t: datetime, days: int) -> Decimal:
    """Average end-of-day total balance over the last `days` days."""
    runs = _runs(state, t, days)
    if not runs:
        return Decimal(0)
    total = sum((value * length for _, value, length in runs), Decimal(0))
    return (total / sum(length for _, _, length in runs)).quantize(Decimal("0.01"))


def max_balance(state: CustomerState, t: datetime, days: int) -> tuple[Decimal, int]:
    """The highest end-of-day total in the window and its (first) day."""
    best, best_day = Decimal(0), day_of(t)
    for first_day, value, _ in _runs(state, t, days):
        if value > best:
            best, best_day = value, first_day
    return best, best_day


def month_of(t: datetime) -> int:
    """A month as one number: year * 12 + month - 1."""
    return t.year * 12 + t.month - 1


def usual_monthly_low(state: CustomerState, t: datetime) -> Decimal | None:
    """The median of the lowest end-of-day totals of the three months before t's month: where
    the customer's balance usually gets to each month. None with fewer than two such months.
    A month the balance was not followed through (`resumed_month`) has no usual low."""
    month = month_of(t)
    lows = sorted(
        v
        for m, v in state.monthly_lows.items()
        if month - 3 <= m < month and m != state.resumed_month
    )
    if len(lows) < 2:
        return None
    return lows[len(lows) // 2] if len(lows) % 2 else (lows[0] + lows[1]) / 2


def record_balance(state: CustomerState, account_id: str, balance: Decimal, t: datetime) -> None:
    """The account's balance as of t (an older one than already known changes only the day's
    total), and the end-of-day totals of the last 90 days."""
    seen = max(state.balance_as_of.values(), default=None)
    if seen is None or t - seen > BALANCE_GAP:
        # The first balance after a gap (the initial load, a feed that stopped): the month's
        # low so far says nothing of where the balance usually gets to.
        state.resumed_month = month_of(t)
    as_of = state.balance_as_of.get(account_id)
    if as_of is None or t >= as_of:
        state.balances[account_id] = balance
        state.balance_as_of[account_id] = t
    state.daily_totals[day_of(t)] = state.total_balance
    month = month_of(t)
    low = state.monthly_lows.get(month)
    if low is None or state.total_balance < low:
        state.monthly_lows[month] = state.total_balance
        for old in sorted(state.monthly_lows)[:-5]:
            del state.monthly_lows[old]
    oldest = day_of(t) - 90
    older = sorted(d for d in state.daily_totals if d < oldest)
    # The newest of the older days stays: it is the value carried into the 90-day window.
    for day in older[:-1]:
        del state.daily_totals[day]
