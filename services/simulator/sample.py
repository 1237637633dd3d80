"""A small deterministic sample population: a few months of ordinary banking per customer, plus
a known share of invalid events, so the demo shows both processing and dead-lettering.

The full simulator with churners, referral chains and ground truth grows from this (issue 4).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

OWN_BANK = "RAPPORTBANK"
OTHER_BANKS = ("ICBC", "CCB", "ABC", "BOC", "CMB")
START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Sample:
    """Events (as JSON-ready dicts or raw lines) and what the services should conclude."""

    lines: list[bytes] = field(default_factory=list)
    valid_by_type: dict[str, int] = field(default_factory=dict)
    invalid_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def valid(self) -> int:
        """Number of valid events."""
        return sum(self.valid_by_type.values())

    @property
    def invalid(self) -> int:
        """Number of events the services must dead-letter."""
        return sum(self.invalid_by_reason.values())


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def _customer_events(rng: random.Random, index: int, days: int) -> Iterator[dict[str, Any]]:
    customer = f"C{index:06d}"
    account = f"A{index:06d}01"
    opened = START + timedelta(days=rng.randrange(0, max(days // 3, 1)), hours=rng.randrange(8, 18))
    seq = 0

    def event(kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        return {
            "event_id": f"{customer}-{seq:05d}",
            "event_type": kind,
            "occurred_at": at.isoformat(),
            "customer_id": customer,
            **fields,
        }

    balance = Decimal(0)
    yield event("account.opened", opened, account_id=account, channel="branch")
    yield event(
        "customer.updated",
        opened + timedelta(minutes=5),
        profile={
            "locale": rng.choice(["zh-CN", "zh-CN", "en"]),
            "time_zone": rng.choice(["Asia/Shanghai", "Asia/Shanghai", "Europe/London"]),
            "rm_id": f"RM{rng.randrange(1, 20):03d}" if rng.random() < 0.3 else None,
            "consent": {"push": True, "sms": rng.random() < 0.8, "email": rng.random() < 0.5},
        },
    )
    salary = Decimal(rng.randrange(4000, 30000))
    employer = {
        "bank_code": rng.choice(OTHER_BANKS),
        "account": f"62{rng.randrange(10**14, 10**15)}",
        "name": f"Employer {rng.randrange(1, 200)}",
        "kind": "business",
    }
    day = opened
    end = START + timedelta(days=days)
    while day < end:
        day += timedelta(days=rng.randrange(2, 9), minutes=rng.randrange(0, 600))
        if day >= end:
            break
        roll = rng.random()
        if roll < 0.25:
            balance += salary
            yield event(
                "transfer.in",
                day,
                account_id=account,
                amount=_money(salary),
                balance_after=_money(balance),
                currency="CNY",
                channel="system",
                counterparty=employer,
            )
        elif roll < 0.45:
            amount = Decimal(rng.randrange(100, 5000))
            balance += amount
            yield event(
                "deposit",
                day,
                account_id=account,
                amount=_money(amount),
                balance_after=_money(balance),
                currency="CNY",
                channel="atm",
            )
        elif roll < 0.7 and balance > 50:
            amount = min(balance, Decimal(rng.randrange(20, 800)))
            balance -= amount
            yield event(
                "card.payment",
                day,
                account_id=account,
                amount=_money(amount),
                balance_after=_money(balance),
                currency="CNY",
                channel="pos",
                attributes={"mcc": rng.choice(["5411", "5812", "4111"])},
            )
        elif roll < 0.8 and balance > 500:
            amount = (balance * Decimal(rng.uniform(0.05, 0.3))).quantize(Decimal("0.01"))
            balance -= amount
            yield event(
                "transfer.out",
                day,
                account_id=account,
                amount=_money(amount),
                balance_after=_money(balance),
                currency="CNY",
                channel="mobile",
                counterparty={
                    "bank_code": rng.choice((OWN_BANK, *OTHER_BANKS)),
                    "account": f"62{rng.randrange(10**14, 10**15)}",
                    "name": "Landlord",
                    "kind": "person",
                },
            )
        elif roll < 0.95:
            yield event("digital.login", day, channel=rng.choice(["mobile", "online"]))
        else:
            yield event(
                "balance.snapshot",
                day.replace(hour=23, minute=59),
                account_id=account,
                balance_after=_money(balance),
                currency="CNY",
                channel="system",
            )


# One specimen of each kind of bad input the services must dead-letter, with its reason code.
_INVALID_SPECIMENS: tuple[tuple[str, bytes | dict[str, Any]], ...] = (
    ("malformed_json", b'{"event_id": "broken", "event_type": "deposit",'),
    ("not_an_object", b'["deposit", "100.00"]'),
    ("unknown_event_type", {"event_type": "loan.defaulted"}),
    ("missing_field", {"event_type": "deposit", "drop": "amount"}),
    ("wrong_type", {"event_type": "deposit", "amount": 100.5}),
    ("invalid_value", {"event_type": "deposit", "amount": "-250.00"}),
    ("invalid_value", {"event_type": "deposit", "amount": "one hundred"}),
    ("invalid_value", {"event_type": "deposit", "currency": "yuan"}),
)


def _invalid(rng: random.Random, n: int, at: datetime) -> tuple[str, bytes]:
    reason, spec = _INVALID_SPECIMENS[n % len(_INVALID_SPECIMENS)]
    if isinstance(spec, bytes):
        return reason, spec
    base: dict[str, Any] = {
        "event_id": f"BAD-{n:05d}",
        "occurred_at": at.isoformat(),
        "customer_id": f"C{rng.randrange(0, 999999):06d}",
        "account_id": "A00000001",
        "amount": "100.00",
        "balance_after": "100.00",
        "currency": "CNY",
    }
    base.update({k: v for k, v in spec.items() if k != "drop"})
    if "drop" in spec:
        base.pop(str(spec["drop"]))
    return reason, orjson.dumps(base)


def generate(
    customers: int = 200, days: int = 120, seed: int = 7, invalid_share: float = 0.01
) -> Sample:
    """A deterministic sample: the same arguments always give the same bytes."""
    rng = random.Random(seed)
    events = [e for i in range(customers) for e in _customer_events(rng, i, days)]
    events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    sample = Sample()
    invalid_every = max(int(1 / invalid_share), 1) if invalid_share > 0 else 0
    for n, event in enumerate(events):
        sample.lines.append(orjson.dumps(event))
        sample.valid_by_type[event["event_type"]] = (
            sample.valid_by_type.get(event["event_type"], 0) + 1
        )
        if invalid_every and n % invalid_every == invalid_every - 1:
            reason, line = _invalid(
                rng, n // invalid_every, datetime.fromisoformat(event["occurred_at"])
            )
            sample.lines.append(line)
            sample.invalid_by_reason[reason] = sample.invalid_by_reason.get(reason, 0) + 1
    return sample
