"""The compose stack checked end to end from the host, after deploy/compose/debian/up.sh fed it a
simulated population: every worker took records, the APIs answer from PostgreSQL what the
workers concluded, Prometheus scrapes every worker and API, and the workbench serves its pages.
Prints what it found; exits 1 on the first thing missing after its wait."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

PROMETHEUS = "http://127.0.0.1:9090"
API = {"lifecycle": 8101, "referral": 8102, "rewards": 8103, "notify": 8104}


def wait(what: str, probe: Callable[[], Any], seconds: float = 300) -> Any:
    """`probe`'s first true answer; exits naming `what` when none comes in time."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (httpx.HTTPError, KeyError, ValueError, IndexError) as exc:
            last = exc
        else:
            if last:
                print(f"ok  {what}: {last}")
                return last
        time.sleep(5)
    print(f"FAILED  {what}: {last!r}", file=sys.stderr)
    sys.exit(1)


def query(promql: str) -> dict[str, float]:
    """An instant vector as {service or job: value}."""
    body = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": promql}, timeout=10).json()
    return {
        r["metric"].get("service") or r["metric"].get("instance", "?"): float(r["value"][1])
        for r in body["data"]["result"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    headers = {"X-API-Key": args.api_key}

    def api(service: str, path: str) -> Any:
        response = httpx.get(f"http://127.0.0.1:{API[service]}{path}", headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def targets_up() -> str:
        active = httpx.get(f"{PROMETHEUS}/api/v1/targets", timeout=10).json()["data"]
        health = {t["labels"]["instance"]: t["health"] for t in active["activeTargets"]}
        return "" if len(health) < 8 or set(health.values()) != {"up"} else f"{health}"

    wait("Prometheus scrapes the 4 workers and the 4 APIs", targets_up)
    wait(
        "every worker took records (rapport_events_consumed_total, by service)",
        lambda: (
            (c := query("sum by (service) (rapport_events_consumed_total)"))
            and len(c) == 4
            and all(v > 0 for v in c.values())
            and c
        ),
    )

    def settled() -> dict[str, int]:
        first = api("lifecycle", "/lifecycle/summary")["customers"]
        time.sleep(10)
        summary = api("lifecycle", "/lifecycle/summary")
        return summary["by_stage"] if summary["customers"] == first > 0 else {}

    wait("customers by stage, from the lifecycle API (settled for 10 s)", settled, 600)
    wait(
        "stages at each month's end, from the lifecycle history",
        lambda: [m["customers"] for m in api("lifecycle", "/lifecycle/summary/monthly")],
    )
    wait("RM tasks, from the notify API", lambda: api("notify", "/tasks/summary")["by_assignee"])
    wait(
        "the workbench's sign-in page",
        lambda: httpx.get("http://127.0.0.1:8100/signin", timeout=10).status_code == 200,
    )


if __name__ == "__main__":
    main()
