"""The workbench in a real browser (Debian's chromium, driven by Playwright) over the four
services' real APIs and the real broker: an RM signs in, sees only their own tasks, opens a
customer, records an outcome that is published on rapport.rm-tasks.v1 and counted on the
team page; another RM's customer is refused; a form without its CSRF token is refused; the
pages speak zh-CN and en, log no console error and pass axe-core's accessibility rules.

Screenshots go to RAPPORT_SCREENSHOTS_DIR when it is set (docs/workbench/ was made so)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from babel.dates import format_datetime
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from schemas.lifecycle import ChurnCause, ChurnSignalChanged, SignalKind, Stage, Tier
from schemas.referral import LeadChanged, LeadStrength, LeadType
from schemas.topics import (
    CHURN_SIGNALS,
    RM_TASKS,
)
from services.lifecycle import history
from services.notify import service
from services.notify.domain import NotifyRules
from services.referral import read_model as referrals
from services.runtime import db
from services.runtime.broker import LocalBroker
from services.runtime.dlq import REPLAYED_BY_HEADER, REPLAYED_FROM_HEADER
from services.runtime.settings import API_NAMES
from tests.credentials import API_KEYS_JSON, KEYS
from tests.integration.stack import (
    dead_letter_of_the_input,
    end_offsets,
    records_since,
)
from tests.integration.test_notify_store import profile_update, stage, treated

PORT_BASE = int(os.environ.get("RAPPORT_TEST_WORKBENCH_PORT_BASE", "18400"))
WORKBENCH = f"http://127.0.0.1:{PORT_BASE}"
AXE = Path(__file__).parents[1] / "vendor" / "axe.min.js"
NOW = datetime(2026, 11, 23, tzinfo=UTC)
AT_RISK_AT = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def lifecycle_story(customer: str, at_risk: Any) -> list[Any]:
    """What the lifecycle service published of the customer before their retention task: new
    in May, growing from June, a competitor's offer drawing their savings in November."""
    signal = ChurnSignalChanged(
        event_id=f"sig-{customer}",
        type="churn_signal.raised",
        occurred_at=datetime(2026, 11, 18, 9, 0, tzinfo=UTC),
        customer_id=customer,
        signal=SignalKind.COMPETITOR_TRANSFER,
        cause=ChurnCause.COMPETITOR_ATTRACTION,
        signal_weight=0.6,
        churn_score=0.6,
        stage=Stage.GROWTH,
        tier=Tier.HNW,
        evidence={"share_of_balance": 0.45},
        explanation={
            "en": "45 % of the balance sent to another bank",
            "zh-CN": "余额的45%转至他行",
        },
    )
    return [
        stage(customer, Stage.ACQUISITION, datetime(2026, 5, 4, tzinfo=UTC), Tier.HNW),
        stage(customer, Stage.GROWTH, datetime(2026, 6, 10, tzinfo=UTC), Tier.HNW).model_copy(
            update={"previous_stage": Stage.ACQUISITION}
        ),
        signal,
        at_risk.model_copy(update={"previous_stage": Stage.GROWTH}),
    ]


def lead_of(customer: str) -> LeadChanged:
    """A landlord the customer pays every month, who banks elsewhere: a lead for them."""
    at = datetime(2026, 10, 2, tzinfo=UTC)
    return LeadChanged(
        event_id=f"lead-{customer}",
        type="lead.detected",
        occurred_at=at,
        lead_id="cp-7f3a9c",
        counterparty_key="7f3a9c",
        lead_type=LeadType.RETAIL,
        suggested_referrer=customer,
        strength=LeadStrength(
            transactions=6, customers=1, amount="18000", direction="paid_to", window_days=180
        ),
        last_transaction_at=at,
        expires_at=datetime(2027, 1, 2, tzinfo=UTC),
    )


def key_of(subject: str) -> str:
    return next(k for k, grant in KEYS.items() if grant["subject"] == subject)


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Debian's chromium is needed for the browser tests (apt install chromium)")
    return found


@pytest.fixture
def stack(topics: LocalBroker, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The four APIs and the workbench as processes, on a database holding two RMs' at-risk
    customers and their retention tasks."""
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'rapport.db'}"
    db.upgrade(url)
    rules = NotifyRules()
    mine, theirs = treated("M"), treated("T")
    for customer, rm in ((mine, "RM001"), (theirs, "RM002")):
        service.apply(url, profile_update(customer, rm_id=rm), rules, NOW)  # type: ignore[arg-type]
        at_risk = stage(customer, Stage.AT_RISK, AT_RISK_AT, Tier.HNW)
        service.apply(url, at_risk, rules, NOW)  # type: ignore[arg-type]
        history.write(url, [history.history_row(e) for e in lifecycle_story(customer, at_risk)])
    referrals.write(url, [lead_of(mine)])
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": topics.bootstrap,
        "RAPPORT_HOME": str(home),
        "RAPPORT_API_PORT_BASE": str(PORT_BASE),
        "RAPPORT_AUTH_API_KEYS": API_KEYS_JSON,
        "RAPPORT_WORKBENCH_SESSION_KEY": "9mK3q7b0cKQ3b0F3mYc8Yh7s0Qj2l4Wc6wGxq1sXo3A=",
        "RAPPORT_WORKBENCH_SECURE_COOKIE": "false",  # plain http on 127.0.0.1
    }
    env.pop("DATABASE_URL", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "services.cli", "api", name],
            env=env,
            stdout=(tmp_path / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for name in API_NAMES
    ]
    try:
        for n, name in enumerate(API_NAMES):
            wait_healthy(f"http://127.0.0.1:{PORT_BASE + n}", tmp_path / f"{name}.log")
        yield {
            "mine": mine,
            "theirs": theirs,
            "bootstrap": topics.bootstrap,
            "audit": str(tmp_path / "workbench.log"),
        }
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def wait_healthy(base: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{base} did not answer: {log.read_text()[-2000:]}")


class Console:
    """Every console error and uncaught exception of the pages a context opened, but the
    refusals the test asks for (the browser logs a page answered 403 as an error)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.refusals_expected: set[str] = set()

    def watch(self, page: Page) -> Page:
        def on_console(message: ConsoleMessage) -> None:
            expected = page.url in self.refusals_expected and "status of 403" in message.text
            if message.type == "error" and not expected:
                self.errors.append(f"{page.url}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        return page


def browser_context(browser: Browser, locale: str, **options: Any) -> BrowserContext:
    context = browser.new_context(
        locale=locale, timezone_id="Europe/London", base_url=WORKBENCH, **options
    )
    # The zone the page would report on its first visit (zone.js), so it does not reload.
    context.add_cookies([{"name": "rapport_tz", "value": "Europe%2FLondon", "url": WORKBENCH}])
    return context


def sign_in(page: Page, subject: str) -> None:
    page.goto("/signin")
    page.fill("#credential", key_of(subject))
    page.click("button[type=submit]")
    page.wait_for_load_state()


def screenshot(page: Page, name: str) -> None:
    if target := os.environ.get("RAPPORT_SCREENSHOTS_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)


def accessibility_violations(browser: Browser, subject: str, paths: list[str]) -> list[str]:
    """axe-core's violations on each page. axe is added to the page as a script, which the
    pages' Content-Security-Policy forbids: this context alone bypasses it."""
    context = browser_context(browser, "en-GB", bypass_csp=True)
    page = context.new_page()
    sign_in(page, subject)
    found: list[str] = []
    for path in paths:
        page.goto(path)
        page.add_script_tag(path=str(AXE))
        result = page.evaluate("async () => (await axe.run(document)).violations")
        found += [
            f"{path}: {v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(n["target"][0] for n in v["nodes"][:3])
            for v in result
        ]
    context.close()
    return found


def test_an_rm_works_their_tasks_in_the_browser(stack: dict[str, str]) -> None:
    mine, theirs = stack["mine"], stack["theirs"]
    # Other tests of the session publish tasks too, some with the same ids: read only this one's.
    marks = end_offsets(stack["bootstrap"], RM_TASKS.name)
    console = Console()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        rm = browser_context(browser, "zh-CN")
        page = console.watch(rm.new_page())

        # Signed out, a page sends to the sign-in, in the browser's language.
        page.goto("/tasks")
        assert page.url.startswith(f"{WORKBENCH}/signin")
        assert page.locator("h1").inner_text() == "登录"
        screenshot(page, "signin-zh-CN")
        sign_in(page, "rm-ray")
        assert page.url == f"{WORKBENCH}/tasks"
        assert page.locator("h1").inner_text() == "我的任务"
        rows = page.locator("table.tasks tbody tr")
        assert rows.count() == 1
        row = rows.first
        assert mine in row.inner_text() and theirs not in page.content()
        assert "高净值客户" in row.inner_text() and "竞争对手吸引" in row.inner_text()
        # The due time in the browser's zone (London), as Chinese readers write dates.
        (task,) = httpx.get(
            f"http://127.0.0.1:{PORT_BASE + API_NAMES.index('notify')}/rm/RM001/tasks",
            headers={"X-API-Key": key_of("rm-ray")},
        ).json()
        due = datetime.fromisoformat(task["due_at"])
        assert format_datetime(due, "medium", tzinfo="Europe/London", locale="zh_CN") in (
            row.inner_text()
        )
        screenshot(page, "tasks-zh-CN")

        # The language switch, kept for the next pages.
        page.click("a[lang=en]")
        assert page.locator("h1").inner_text() == "My tasks"
        assert "high net worth" in page.locator("table.tasks").inner_text()
        screenshot(page, "tasks-en")

        page.click(f"a[href='/customers/{mine}']")
        assert page.locator("h1").inner_text() == f"Customer {mine}"
        assert "retention call" in page.locator("section", has_text="My tasks").inner_text()
        # The story the lifecycle service published, newest first, each with its why.
        story = page.locator("table.timeline tbody tr")
        assert "Stage: growth → at risk" in story.first.inner_text()
        raised = page.locator("table.timeline tr", has_text="Churn signal raised")
        assert "45 % of the balance sent to another bank" in raised.inner_text()
        assert page.locator("table.timeline tr", has_text="Stage: acquisition → growth").count()
        suggested = page.locator("table.timeline tr", has_text="Referral lead suggested: a person")
        assert "cp-7f3a9c: payments 6, customers tied 1" in suggested.inner_text()
        screenshot(page, "customer-en")

        # Another RM's customer, typed into the address bar.
        console.refusals_expected |= {f"{WORKBENCH}/customers/{theirs}", f"{WORKBENCH}/team"}
        refused = page.goto(f"/customers/{theirs}")
        assert refused is not None and refused.status == 403
        assert theirs in page.locator("p.error").inner_text()

        # A form posted without its CSRF token (the session's cookie goes with it).
        page.goto("/tasks")
        task_id = (rows.first.get_attribute("id") or "").removeprefix("task-")
        forged = rm.request.post(
            f"/tasks/{task_id}/outcome", form={"outcome": "retained"}, max_redirects=0
        )
        assert forged.status == 403

        # The outcome, recorded: the task leaves the list and is published closed.
        page.select_option(f"#outcome-{task_id}", "retained")
        page.fill(f"#note-{task_id}", "moved the savings back; rate matched")
        page.click(f"#task-{task_id} button[type=submit]")
        page.wait_for_load_state()
        assert "Outcome recorded: retained." in page.locator("p.saved").inner_text()
        assert page.locator("table.tasks").count() == 0

        # The team lead sees it on the team page; the RM may not open that page.
        assert page.goto("/team").status == 403  # type: ignore[union-attr]
        lead = browser_context(browser, "en-GB")
        team = console.watch(lead.new_page())
        sign_in(team, "ops-olga")
        assert team.url == f"{WORKBENCH}/team"
        per_rm = team.locator("section", has_text="Tasks per RM")
        assert "RM001" in per_rm.inner_text() and "retained: 1" in per_rm.inner_text()
        # Customers by stage at each month's end, a chart per tier: the two at risk in November.
        assert team.locator("figure.stage-chart").count() == 3
        hnw = team.locator("figure.stage-chart", has_text="high net worth")
        assert hnw.locator("rect.seg-at_risk title").last.text_content() == "2026-11 · at risk: 2"
        assert hnw.locator("rect.seg-growth title").first.text_content() == "2026-06 · growth: 2"
        screenshot(team, "team-en")
        # A team lead opens any customer of the team.
        team.goto(f"/customers/{mine}")
        assert team.locator("h1").inner_text() == f"Customer {mine}"
        team.goto("/ops")
        assert team.locator("h1").inner_text() == "Operations"

        violations = accessibility_violations(
            browser, "rm-ray", ["/signin", "/tasks", f"/customers/{mine}"]
        ) + accessibility_violations(browser, "ops-olga", ["/team", "/ops"])
        browser.close()
    # Read after the browser is closed: Playwright's sync API runs an event loop meanwhile.
    since = [
        orjson.loads(r.value or b"{}")
        for r in records_since(stack["bootstrap"], RM_TASKS.name, marks)
    ]
    published = [e for e in since if e["task_id"] == task_id]
    assert len(published) == 1, published
    closed = published[0]
    assert (closed["task_id"], closed["status"], closed["outcome"]) == (
        task_id,
        "closed",
        "retained",
    )
    assert closed["note"] == "moved the savings back; rate matched"
    # Who did it, in the workbench's log.
    assert f"rm-ray recorded retained on task {task_id}" in Path(stack["audit"]).read_text()
    assert not violations, "\n".join(violations)
    assert not console.errors, "\n".join(console.errors)


def test_an_admin_replays_dead_letters_from_the_operations_page(stack: dict[str, str]) -> None:
    run = uuid.uuid4().hex[:6]
    service = f"svc-{run}"
    # Not on the input's dead-letter topic and not back to the input: the session's later tests
    # (test_worker_ingest) count those. A dead-letter topic they leave alone, and a source
    # topic of this test's own.
    source = f"workbench-test-{run}"
    asyncio.run(create_source_topic(stack["bootstrap"], source))
    value = dead_letter_of_the_input(
        stack["bootstrap"], service, run, dlq=CHURN_SIGNALS.dlq, source=source
    )
    marks = end_offsets(stack["bootstrap"], source)
    # A campaign an administrator started through the rewards API.
    rewards = f"http://127.0.0.1:{PORT_BASE + API_NAMES.index('rewards')}"
    started = httpx.post(
        f"{rewards}/campaigns",
        headers={"X-API-Key": key_of("admin-ann")},
        json={
            "campaign_id": f"spring-{run}",
            "name": "Spring referrals",
            "rule": "referral.referrer",
            "multiplier": "2",
            "starts_at": "2026-03-01T00:00:00Z",
            "ends_at": "2026-06-01T00:00:00Z",
        },
    )
    assert started.status_code in (200, 201), started.text
    console = Console()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        # A team lead sees the dead letters, with a sample, but may not replay them.
        lead = console.watch(browser_context(browser, "en-GB").new_page())
        sign_in(lead, "ops-olga")
        lead.goto("/ops")
        group = lead.locator("#dead-letter-groups tr", has_text=service)
        assert "malformed_json" in group.inner_text()
        assert "the value is not valid JSON" in group.inner_text()
        assert group.locator("button").count() == 0
        assert lead.locator("#worker-table tbody tr").count() == 4
        assert lead.locator("#campaign-table").count() == 0  # the administrators' business
        # An admin does, once, for that group only.
        admin = console.watch(browser_context(browser, "zh-CN").new_page())
        sign_in(admin, "admin-ann")
        admin.goto("/ops")
        assert admin.title() == "运维 · Rapport"
        # The campaigns, and who started them, in the rewards service's own audit trail.
        assert "Spring referrals" in admin.locator("#campaign-table").inner_text()
        assert "进行中" in admin.locator("#campaign-table tr", has_text=run).inner_text()
        assert f"spring-{run}" in admin.locator("#manual-table").inner_text()
        admin.locator("#dead-letter-groups tr", has_text=service).locator("button").click()
        admin.wait_for_load_state()
        assert admin.locator("p.saved").inner_text() == "已将 1 条死信发回源主题。"
        violations = accessibility_violations(browser, "admin-ann", ["/ops"])
        browser.close()
    assert not violations, "\n".join(violations)
    assert not console.errors, "\n".join(console.errors)
    assert f"admin-ann replayed 1 dead letters of {CHURN_SIGNALS.dlq} (service {service}" in (
        Path(stack["audit"]).read_text()
    )
    (back,) = records_since(stack["bootstrap"], source, marks)
    assert back.value == value and back.headers[REPLAYED_FROM_HEADER].startswith(
        CHURN_SIGNALS.dlq.encode()
    )
    assert back.headers[REPLAYED_BY_HEADER] == b"admin-ann"  # who did it, on the record itself


async def create_source_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
