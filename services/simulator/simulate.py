"""A simulated feed: the population's events in the order a core-banking system would publish
them, with noise, as JSON lines, and the truth behind them."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from services.simulator.noise import invalid_record
from services.simulator.population import START, Simulator
from services.simulator.truth import Truth

MAX_LATENESS = timedelta(hours=23)


@dataclass
class Simulation:
    """The feed (JSON lines in publishing order) and what the services should conclude."""

    lines: list[bytes]
    truth: Truth
    valid_by_type: dict[str, int] = field(default_factory=dict)
    invalid_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def valid(self) -> int:
        return sum(self.valid_by_type.values())

    @property
    def invalid(self) -> int:
        return sum(self.invalid_by_reason.values())


def simulate(
    customers: int = 200,
    days: int = 365,
    seed: int = 7,
    *,
    invalid_share: float = 0.005,
    duplicate_share: float = 0.003,
    late_share: float = 0.005,
    start: datetime = START,
    profile: str = "standard",
) -> Simulation:
    """Deterministic: the same arguments always give the same bytes and the same truth.
    `start`: the first day of the simulated period (midnight UTC). `profile`: the population
    profile (services/simulator/profiles.py: `standard` or `varied`)."""
    events, truth = Simulator(customers, days, seed, start, profile).run()
    noise_rng = random.Random(seed * 7919 + 1)
    # Each record is published at its event time, except the late ones and the duplicates.
    published: list[tuple[datetime, str, int, dict[str, Any]]] = []
    duplicates = late = 0
    for n, event in enumerate(events):
        at = datetime.fromisoformat(event["occurred_at"])
        published_at = at
        if noise_rng.random() < late_share:
            published_at = at + MAX_LATENESS * noise_rng.random()
            late += 1
        published.append((published_at, event["event_id"], n, event))
        if noise_rng.random() < duplicate_share:
            published.append(
                (at + timedelta(minutes=noise_rng.randrange(1, 180)), event["event_id"], n, event)
            )
            duplicates += 1
    published.sort(key=lambda p: (p[0], p[1], p[2]))

    lines: list[bytes] = []
    valid: Counter[str] = Counter()
    invalid: Counter[str] = Counter()
    invalid_every = max(int(1 / invalid_share), 1) if invalid_share > 0 else 0
    for n, (published_at, _, _, event) in enumerate(published):
        lines.append(orjson.dumps(event))
        valid[event["event_type"]] += 1
        if invalid_every and n % invalid_every == invalid_every - 1:
            reason, line = invalid_record(noise_rng, n // invalid_every, published_at)
            lines.append(line)
            invalid[reason] += 1

    truth.events = len(lines)
    truth.valid_by_type = dict(sorted(valid.items()))
    truth.noise.duplicates = duplicates
    truth.noise.late = late
    truth.noise.max_lateness_hours = MAX_LATENESS.total_seconds() / 3600
    truth.noise.expected_dead_letters = dict(sorted(invalid.items()))
    return Simulation(lines, truth, dict(valid), dict(invalid))
