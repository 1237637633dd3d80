"""Properties that hold for any input (hypothesis): the input validator answers every record
with an event or a reason and never fails; valid money and times are taken exactly; the
lifecycle rules ignore a redelivered event; the referral caps hold for any stream of
referrals; no message is scheduled inside quiet hours."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.account_events import EARLIEST_EVENT_TIME, LATEST_EVENT_TIME
from schemas.referral import LeadType, ReferralChanged
from services.lifecycle.domain import LifecycleRules, apply_event
from services.notify.domain import NotifyRules, next_allowed
from services.rewards.domain import ReferrerHistory, RewardRules, Rule, on_referral_qualified
from services.runtime.codec import Rejection, RejectReason, decode_account_event, encode
from tests.unit.test_account_events import VALID, event

FAST = settings(
    max_examples=int(os.environ.get("RAPPORT_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


def answered(key: bytes | None, value: bytes | None) -> Any:
    """The decoder's answer, which must be an event or a reason with a sentence."""
    result = decode_account_event(key, value)
    if isinstance(result, Rejection):
        assert result.reason in set(RejectReason)
        assert result.message and len(result.message) < 2_000
    return result


@FAST
@given(key=st.none() | st.binary(max_size=40), value=st.none() | st.binary(max_size=400))
def test_any_bytes_get_an_event_or_a_reason(key: bytes | None, value: bytes | None) -> None:
    answered(key, value)


@FAST
@given(value=json_values)
def test_any_json_gets_an_event_or_a_reason(value: Any) -> None:
    answered(b"C000001", json.dumps(value).encode())


@FAST
@given(
    kind=st.sampled_from(sorted(VALID)),
    field=st.sampled_from(
        [
            "event_id",
            "occurred_at",
            "customer_id",
            "amount",
            "account_id",
            "counterparty",
            "profile",
            "product",
            "currency",
            "balance_after",
            "referral_code",
            "attributes",
            "channel",
            "schema_version",
            "unexpected",
        ]
    ),
    replacement=json_values,
)
def test_a_valid_event_with_any_field_replaced_is_taken_or_refused_never_crashes(
    kind: str, field: str, replacement: Any
) -> None:
    data = event(kind)
    data[field] = replacement
    key = str(data.get("customer_id")).encode()
    result = answered(key, json.dumps(data).encode())
    if not isinstance(result, Rejection):
        # What is taken survives its own encoding unchanged.
        assert decode_account_event(key, encode(result)) == result


amounts = st.decimals(
    min_value=Decimal("0.000001"),
    max_value=Decimal("999999999999999999.999999"),
    places=6,
    allow_nan=False,
    allow_infinity=False,
)


@FAST
@given(amount=amounts)
def test_any_valid_amount_is_taken_exactly(amount: Decimal) -> None:
    data = event("deposit", amount=str(amount))
    result = answered(b"C000001", orjson.dumps(data))
    assert not isinstance(result, Rejection), result
    assert result.amount == amount  # type: ignore[union-attr]
    assert isinstance(result.amount, Decimal)  # type: ignore[union-attr]


@FAST
@given(at=st.datetimes(timezones=st.just(UTC), allow_imaginary=False))
def test_event_times_are_taken_inside_1970_2100_and_refused_outside(at: datetime) -> None:
    data = event("deposit", occurred_at=at.isoformat())
    result = answered(b"C000001", orjson.dumps(data))
    inside = EARLIEST_EVENT_TIME <= at < LATEST_EVENT_TIME
    if inside:
        assert not isinstance(result, Rejection), result
        assert result.occurred_at == at  # type: ignore[union-attr]
    else:
        assert isinstance(result, Rejection) and result.reason is RejectReason.INVALID_VALUE


# -- rules -------------------------------------------------------------------------------------

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
steps = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "deposit",
                "withdrawal",
                "card.payment",
                "digital.login",
                "transfer.out",
                "complaint.filed",
                "balance.snapshot",
            ]
        ),
        st.integers(min_value=0, max_value=400),  # days after opening
        st.integers(min_value=1, max_value=50_000),  # amount
    ),
    max_size=25,
)


def stream_of(customer: str, plan: list[tuple[str, int, int]]) -> list[Any]:
    """An opening, then the planned events in time order, as the decoder gives them."""
    raw = [
        event(
            "account.opened",
            customer_id=customer,
            event_id=f"{customer}-open",
            occurred_at=T0.isoformat(),
        )
    ]
    for n, (kind, day, amount) in enumerate(sorted(plan, key=lambda p: p[1])):
        data = event(
            kind,
            customer_id=customer,
            event_id=f"{customer}-{n}",
            occurred_at=(T0 + timedelta(days=day, minutes=n)).isoformat(),
        )
        if "amount" in data:
            data["amount"] = f"{amount}.00"
        raw.append(data)
    decoded = [decode_account_event(customer.encode(), orjson.dumps(d)) for d in raw]
    assert not any(isinstance(d, Rejection) for d in decoded), decoded
    return decoded


@FAST
@given(plan=steps, redelivered=st.sets(st.integers(min_value=0, max_value=25)))
def test_a_redelivered_event_changes_nothing_in_the_lifecycle(
    plan: list[tuple[str, int, int]], redelivered: set[int]
) -> None:
    rules = LifecycleRules()
    events = stream_of("C000001", plan)

    def run(stream: list[Any]) -> tuple[list[str], Any]:
        state, outputs = None, []
        for e in stream:
            outcome = apply_event(state, e, e.occurred_at, rules)
            state = outcome.state
            outputs += [o.event_id for o in outcome.outputs]
        return outputs, state

    once = run(events)
    twice = run([x for n, e in enumerate(events) for x in ([e, e] if n in redelivered else [e])])
    assert once == twice


@FAST
@given(
    days=st.lists(st.integers(min_value=0, max_value=729), min_size=1, max_size=60),
    history_points=st.integers(min_value=0, max_value=2_500),
)
def test_referral_rewards_never_pass_the_monthly_and_yearly_caps(
    days: list[int], history_points: int
) -> None:
    rules = RewardRules()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    month_points: Counter[str] = Counter()
    year_rewarded: Counter[int] = Counter()
    for n, day in enumerate(sorted(days)):
        at = start + timedelta(days=day, minutes=n)
        qualified = ReferralChanged(
            event_id=f"q{n}",
            type="referral.qualified",
            occurred_at=at,
            referral_id=f"r{n}",
            referrer="R",
            referee=f"E{n}",
            via="code",
            lead_type=LeadType.RETAIL,
        )
        history = ReferrerHistory(month_points[f"{at:%Y-%m}"], year_rewarded[at.year])
        decision = on_referral_qualified(qualified, rules, [], history)
        credited = sum(b.points for b in decision.bookings if b.rule is Rule.REFERRAL_REFERRER)
        assert credited >= 0
        month_points[f"{at:%Y-%m}"] += credited
        year_rewarded[at.year] += credited > 0
        withheld = sum(w.points for w in decision.withholdings)
        assert credited + withheld == rules.referrer_points
    assert max(month_points.values()) <= rules.monthly_referral_points_cap
    assert max(year_rewarded.values()) <= rules.yearly_rewarded_referrals_cap


@FAST
@given(
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(
        ["Asia/Shanghai", "Europe/London", "America/New_York", "Australia/Lord_Howe", "UTC"]
    ),
    quiet=st.tuples(st.integers(0, 23), st.integers(0, 23)).filter(lambda q: q[0] != q[1]),
)
def test_no_message_is_scheduled_inside_quiet_hours(
    at: datetime, zone: str, quiet: tuple[int, int]
) -> None:
    rules = NotifyRules(quiet_start_hour=quiet[0], quiet_end_hour=quiet[1])
    allowed = next_allowed(at, ZoneInfo(zone), rules)
    assert at <= allowed <= at + timedelta(hours=26)
    hour = allowed.astimezone(ZoneInfo(zone)).hour
    start, end = quiet
    inside = start <= hour < end if start < end else hour >= start or hour < end
    assert not inside, (at, allowed, zone, quiet)
