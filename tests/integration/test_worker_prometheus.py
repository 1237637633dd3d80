"""Rapport's metrics as Prometheus sees them: every exposition passes `promtool check metrics`,
the alert rules pass their unit tests, and a real Prometheus server (Debian's package) scrapes
a running worker and answers PromQL queries with the counts of the events sent.

It adds events to the input topic, so it runs after test_worker_ingest (alphabetical order)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx
import orjson
from fastapi.testclient import TestClient

from schemas.topics import ACCOUNT_EVENTS
from services.runtime.api import load_api
from services.runtime.broker import LocalBroker
from services.runtime.settings import SERVICE_NAMES, RuntimeSettings
from tests.integration.stack import DEPLOY, produce, prometheus, service_env, tool, worker

CUSTOMERS = 25


def dashboard_queries() -> list[tuple[str, str]]:
    """Every PromQL expression of the Grafana dashboards, with its dashboard's file name."""
    return [
        (path.name, target["expr"])
        for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
        for panel in orjson.loads(path.read_bytes())["panels"]
        for target in panel["targets"]
    ]


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], input=stdin, capture_output=True, text=True, check=False
    )


def test_the_alert_rules_are_valid_and_pass_their_unit_tests() -> None:
    for config in ("prometheus.yml", "compose.yml"):
        checked = promtool("check", "config", str(DEPLOY / "prometheus" / config))
        assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(DEPLOY / "prometheus" / "tests" / "rapport_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_api_exposition_passes_promtool(tmp_path: Path) -> None:
    for service in SERVICE_NAMES:
        client = TestClient(load_api(service, RuntimeSettings(home=tmp_path)))
        client.get("/healthz")  # so the request metrics have a sample
        linted = promtool("check", "metrics", stdin=client.get("/metrics").text)
        assert linted.returncode == 0, f"{service}: {linted.stdout}{linted.stderr}"


def opened(run: str, n: int) -> tuple[bytes, bytes]:
    customer = f"{run}-{n}"
    event = {
        "event_id": f"{customer}-open",
        "event_type": "account.opened",
        "occurred_at": "2026-04-01T09:00:00Z",
        "customer_id": customer,
        "account_id": f"{customer}-A",
        "currency": "CNY",
    }
    return customer.encode(), orjson.dumps(event)


def test_a_real_prometheus_scrapes_the_worker_and_counts_what_was_sent(
    topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    env = service_env(topics, rapport_home)
    produce(topics.bootstrap, ACCOUNT_EVENTS.name, [opened(run, n) for n in range(CUSTOMERS)])
    with worker("lifecycle", env, tmp_path) as running:
        running.wait_for("rapport_events_consumed_total", CUSTOMERS, event_type="account.opened")
        exposition = httpx.get(running.metrics_url, timeout=5).text
        linted = promtool("check", "metrics", stdin=exposition)
        assert linted.returncode == 0, linted.stdout + linted.stderr

        with prometheus([running], tmp_path) as server:
            seen = server.wait_for(
                'sum(rapport_events_consumed_total{event_type="account.opened"})'
            )
            worker_says = running.total(
                "rapport_events_consumed_total", event_type="account.opened"
            )
            assert seen == worker_says >= CUSTOMERS
            acquisitions = server.query(
                'sum(rapport_lifecycle_stage_transitions_total{to_stage="acquisition"})'
            )
            assert acquisitions is not None and acquisitions >= CUSTOMERS
            assert server.query('up{job="rapport-workers"}') == 1.0
            # Everything sent was handled: the worker reports its partitions, none behind.
            # (Its own outputs, which it reads for its history, have their partitions too.)
            lag_series = server.query(
                f'count(rapport_consumer_lag_records{{service="lifecycle",topic="{ACCOUNT_EVENTS.name}"}})'
            )
            assert lag_series is not None and 1 <= lag_series <= 6
            assert server.query('sum(rapport_consumer_lag_records{service="lifecycle"})') == 0
            # Its tables are recovered: it would not take input otherwise.
            assert server.query('rapport_table_recovery_in_progress{service="lifecycle"}') == 0
            assert (
                server.query('rapport_table_recovery_remaining_records{service="lifecycle"}') == 0
            )
            for board, expr in dashboard_queries():
                answer = server.answer(expr)
                assert answer["status"] == "success", f"{board}: {expr}: {answer}"
