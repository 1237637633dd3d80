"""The imperfections of a real feed: duplicates, events late by up to a day, and a small share
of invalid records, each counted so that the evaluator knows what to expect."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import orjson

# One specimen of each kind of bad input the services must dead-letter, with its reason code.
INVALID_SPECIMENS: tuple[tuple[str, bytes | dict[str, Any]], ...] = (
    ("malformed_json", b'{"event_id": "broken", "event_type": "deposit",'),
    ("not_an_object", b'["deposit", "100.00"]'),
    ("unknown_event_type", {"event_type": "loan.defaulted"}),
    ("missing_field", {"event_type": "deposit", "drop": "amount"}),
    ("wrong_type", {"event_type": "deposit", "amount": 100.5}),
    ("invalid_value", {"event_type": "deposit", "amount": "-250.00"}),
    ("invalid_value", {"event_type": "deposit", "amount": "one hundred"}),
    ("invalid_value", {"event_type": "deposit", "currency": "yuan"}),
)


def invalid_record(rng: random.Random, n: int, at: datetime) -> tuple[str, bytes]:
    """The n-th invalid record and the reason code the services must give it."""
    reason, spec = INVALID_SPECIMENS[n % len(INVALID_SPECIMENS)]
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
