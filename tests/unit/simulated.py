"""What the simulator and evaluator tests share: a calendar from the simulated period's start,
hand-made truths and stage changes, and the customer events of a simulated feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.simulator.simulate import Simulation
from services.simulator.truth import ChurnTruth, CustomerTruth, Truth

START = datetime(2025, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return START + timedelta(days=n)


def churner(cause: str, onset: float, churned: float | None) -> CustomerTruth:
    return CustomerTruth(
        persona=f"churn_{cause}",
        stable=False,
        churn=ChurnTruth(
            cause=cause,
            onset=day(onset),
            churned_at=day(churned) if churned is not None else None,
            planned_at=day(churned if churned is not None else 400),
        ),
    )


def truth_of(customers: dict[str, CustomerTruth], seed: int = 1, **fields: Any) -> Truth:
    """A year from START, evaluated from day 30, with these customers."""
    return Truth(
        seed=seed,
        population=len(customers),
        days=365,
        start=START,
        end=day(365),
        evaluate_from=day(30),
        own_bank="RAPPORTBANK",
        customers=customers,
        **fields,
    )


def stage(
    customer: str, at: float, stage: str, cause: str | None = None, n: int = 0
) -> dict[str, Any]:
    return {
        "event_id": f"{customer}-{at}-{stage}-{n}",
        "type": "stage.changed",
        "occurred_at": day(at).isoformat(),
        "customer_id": customer,
        "stage": stage,
        "probable_cause": cause,
    }


def customer_events(simulation: Simulation) -> list[dict[str, Any]]:
    """The feed's customer events in the order written, duplicates included; malformed lines
    and records that are no customer's event left out."""
    found = []
    for line in simulation.lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict) and str(event.get("event_id", "")).startswith("C"):
            found.append(event)
    return found
