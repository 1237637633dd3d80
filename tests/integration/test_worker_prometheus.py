"""Rapport's metrics as Prometheus sees them: every exposition passes `promtool check metrics`,
the alert rules pass their unit tests, and a real Prometheus server (Debian's package) scrapes
a running worker and answers PromQL queries with the counts of the events sent.

It adds events to the input topic, so it runs after test_worker_ingest (alphabetical order)."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from fastapi.testclient import TestClient

from schemas.topics import ACCOUNT_EVENTS
from services.runtime.api import load_api
from services.runtime.broker import LocalBroker
from services.runtime.osutil import free_port
from services.runtime.settings import SERVICE_NAMES, RuntimeSettings
from tests.integration.stack import produce, service_env, worker

DEPLOY = Path(__file__).parents[2] / "deploy" / "prometheus"
CUSTOMERS = 25


def dashboard_queries() -> list[tuple[str, str]]:
    """Every PromQL expression of the Grafana dashboards, with its dashboard's file name."""
    return [
        (path.name, target["expr"])
        for path in sorted((DEPLOY.parent / "grafana" / "dashboards").glob("*.json"))
        for panel in orjson.loads(path.read_bytes())["panels"]
        for target in panel["targets"]
    ]


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is needed (Debian package prometheus; ./run test installs it)")
    return found


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], input=stdin, capture_output=True, text=True, check=False
    )


def test_the_alert_rules_are_valid_and_pass_their_unit_tests() -> None:
    for config in ("prometheus.yml", "compose.yml"):
        checked = promtool("check", "config", str(DEPLOY / config))
        assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(DEPLOY / "tests" / "rapport_test.yml"))
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

        port = free_port()
        target = running.metrics_url.removeprefix("http://").removesuffix("/metrics")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(DEPLOY / "rules" / "rapport.yml")],
            "scrape_configs": [
                {"job_name": "rapport-workers", "static_configs": [{"targets": [target]}]}
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        server = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "prometheus.log").open("wb"),
        )
        try:

            def query(promql: str) -> float | None:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query", params={"query": promql}, timeout=5
                ).json()
                result = answer["data"]["result"]
                return float(result[0]["value"][1]) if result else None

            opened_total = 'sum(rapport_events_consumed_total{event_type="account.opened"})'
            into_acquisition = (
                'sum(rapport_lifecycle_stage_transitions_total{to_stage="acquisition"})'
            )
            deadline = time.monotonic() + 60
            seen: float | None = None
            while time.monotonic() < deadline:
                try:
                    seen = query(opened_total)
                except (httpx.HTTPError, KeyError, ValueError):
                    seen = None
                if seen is not None:
                    break
                time.sleep(0.5)
            assert seen is not None, (tmp_path / "prometheus.log").read_text()[-2000:]
            worker_says = running.total(
                "rapport_events_consumed_total", event_type="account.opened"
            )
            assert seen == worker_says >= CUSTOMERS
            acquisitions = query(into_acquisition)
            assert acquisitions is not None and acquisitions >= CUSTOMERS
            assert query('up{job="rapport-workers"}') == 1.0
            # Everything sent was handled: the worker reports its partitions, none behind.
            lag_series = query('count(rapport_consumer_lag_records{service="lifecycle"})')
            assert lag_series is not None and 1 <= lag_series <= 6
            assert query('sum(rapport_consumer_lag_records{service="lifecycle"})') == 0
            # Its tables are recovered: it would not take input otherwise.
            assert query('rapport_table_recovery_in_progress{service="lifecycle"}') == 0
            assert query('rapport_table_recovery_remaining_records{service="lifecycle"}') == 0
            for board, expr in dashboard_queries():
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=5
                ).json()
                assert answer["status"] == "success", f"{board}: {expr}: {answer}"
        finally:
            server.terminate()
            server.wait(timeout=30)
