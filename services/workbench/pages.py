"""The workbench's pages: an RM's tasks, a customer, the team, operations. Each page asks the
services' APIs as the signed-in person (client.py) and renders a Jinja2 template; the forms
post back here with the session's CSRF token and redirect (post/redirect/get). Signing in and
what every page shares are in site.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import Any
from urllib.parse import quote

from aiokafka.errors import KafkaError
from fastapi import APIRouter
from fastapi.responses import Response

from schemas.account_events import ID_PATTERN
from services.runtime.settings import RuntimeSettings
from services.workbench import charts, operations, timeline
from services.workbench.client import ServiceError, Services
from services.workbench.config import WorkbenchSettings
from services.workbench.site import Site, View, audit, safe_next

OUTCOMES = ("contacted", "retained", "lost", "not_reachable")
# A customer's page shows their latest 200 ledger entries, of their first 5,000 at most.
LEDGER_LINES = 200
LEDGER_PAGES = 10


def routers(settings: RuntimeSettings) -> list[APIRouter]:
    config = WorkbenchSettings()
    site = Site(config)
    services = Services(settings, config)
    router = APIRouter(include_in_schema=False)

    # -- an RM's tasks ----------------------------------------------------------------------

    async def stages_of(view: View, customers: set[str]) -> dict[str, dict[str, Any] | None]:
        """Each customer's lifecycle profile, or None: a row without its stage is better than
        no list (a customer moved to another RM since the task came, the API down)."""

        async def one(customer: str) -> dict[str, Any] | None:
            try:
                found: dict[str, Any] = await services.get(
                    "lifecycle", f"/customers/{customer}/lifecycle", view.session
                )
            except ServiceError:  # unknown (404), refused, or the API down alike
                return None
            return found

        found = await asyncio.gather(*(one(c) for c in customers))
        return dict(zip(customers, found, strict=True))

    @router.get("/tasks")
    @site.guard("rm")
    async def tasks(view: View) -> Response:
        rm = view.request.query_params.get("rm") if view.session.has("admin") else None
        rm = rm or view.session.rm_id
        if rm is None:
            return site.render(view, "tasks.html", rm=None, tasks=[], saved=None)
        found = await services.get("notify", f"/rm/{quote(rm, safe='')}/tasks", view.session)
        open_tasks = [t for t in found if t["status"] == "open"]
        profiles = await stages_of(view, {t["customer_id"] for t in open_tasks})
        return site.render(
            view,
            "tasks.html",
            rm=rm,
            tasks=open_tasks,
            queued=sum(t["status"] == "queued" for t in found),
            profiles=profiles,
            outcomes=OUTCOMES,
            saved=saved_outcome(view),
        )

    @router.post("/tasks/{task_id}/outcome")
    @site.guard("rm", form=True)
    async def outcome(view: View) -> Response:
        fields = view.form
        task_id = view.request.path_params["task_id"]
        chosen = fields.get("outcome", "")
        if chosen not in OUTCOMES:
            return site.failure(view, 422, f"outcome: one of {', '.join(OUTCOMES)}")
        body = {"outcome": chosen, "note": fields.get("note", "").strip()[:500] or None}
        path = f"/tasks/{quote(task_id, safe='')}/outcome"
        await services.call("notify", "POST", path, view.session, body=body)
        audit.info("%s recorded %s on task %s", view.session.subject, chosen, task_id)
        back = safe_next(fields.get("next") or "/tasks")
        joiner = "&" if "?" in back else "?"
        return site.redirect(view, f"{back}{joiner}saved={chosen}")

    # -- a customer -------------------------------------------------------------------------

    async def latest_ledger(view: View, customer_id: str) -> list[dict[str, Any]] | None:
        """The customer's latest ledger entries: the API pages them oldest first."""
        path = f"/customers/{customer_id}/ledger"
        entries: list[dict[str, Any]] = []
        after = 0
        for _ in range(LEDGER_PAGES):
            page = await services.maybe("rewards", path, view.session, after=after, limit=500)
            if page is None:
                return None
            entries = (entries + page["entries"])[-LEDGER_LINES:]
            if page["next_after"] is None:
                break
            after = page["next_after"]
        return entries

    @router.get("/customers/{customer_id}")
    @site.guard("rm", "ops")
    async def customer(view: View) -> Response:
        customer_id = view.request.path_params["customer_id"]
        if not _matches_id(customer_id):
            return site.failure(view, 404, view.fmt.t("error.404", detail=customer_id))
        # The lifecycle API says first whether this person may see the customer (403).
        profile = await optional(
            services.maybe("lifecycle", f"/customers/{customer_id}/lifecycle", view.session)
        )
        history, referrals, rewards, ledger, notifications = await asyncio.gather(
            optional(
                services.maybe(
                    "lifecycle", f"/customers/{customer_id}/lifecycle/history", view.session
                )
            ),
            optional(
                services.maybe("referral", f"/customers/{customer_id}/referrals", view.session)
            ),
            optional(services.maybe("rewards", f"/customers/{customer_id}/rewards", view.session)),
            optional(latest_ledger(view, customer_id)),
            optional(
                services.maybe(
                    "notify", f"/customers/{customer_id}/notifications", view.session, limit=200
                )
            ),
        )
        rm = view.session.rm_id
        own_tasks: list[dict[str, Any]] = []
        if rm is not None:
            every_task = await optional(
                services.get(
                    "notify",
                    f"/rm/{quote(rm, safe='')}/tasks",
                    view.session,
                    include_closed="true",
                    all_leads="true",
                )
            )
            own_tasks = [t for t in every_task or [] if t["customer_id"] == customer_id]
        return site.render(
            view,
            "customer.html",
            customer_id=customer_id,
            profile=profile,
            referrals=referrals,
            rewards=rewards,
            notifications=notifications or [],
            tasks=own_tasks,
            outcomes=OUTCOMES,
            saved=saved_outcome(view),
            events=timeline.of(
                view.fmt,
                profile,
                history or [],
                ledger or [],
                notifications or [],
                (referrals or {}).get("referrals", []),
                (referrals or {}).get("leads", []),
                own_tasks,
            ),
        )

    # -- the team -----------------------------------------------------------------------------

    @router.get("/team")
    @site.guard("ops")
    async def team(view: View) -> Response:
        summary, uplift, stages, monthly = await asyncio.gather(
            services.get("notify", "/tasks/summary", view.session),
            services.get("notify", "/interventions/uplift", view.session),
            services.get("lifecycle", "/lifecycle/summary", view.session),
            optional(services.get("lifecycle", "/lifecycle/summary/monthly", view.session)),
        )
        return site.render(
            view,
            "team.html",
            summary=summary,
            uplift=uplift,
            stages=stages,
            charts=[(tier, charts.stage_columns(monthly or [], tier)) for tier in charts.TIERS],
            chart=charts,
        )

    # -- operations -----------------------------------------------------------------------------

    @router.get("/ops")
    @site.guard("ops")
    async def ops_page(view: View) -> Response:
        workers, dead_letters = await asyncio.gather(
            operations.workers(settings, config.metrics_urls),
            operations.dead_letter_groups(settings),
        )
        campaigns = manual = None
        if view.session.has("admin"):  # the rewards service's own administrators' views
            campaigns, manual = await asyncio.gather(
                optional(services.get("rewards", "/campaigns", view.session)),
                optional(services.get("rewards", "/audit", view.session, limit=20)),
            )
        return site.render(
            view,
            "ops.html",
            workers=workers,
            dead_letters=dead_letters,
            campaigns=campaigns,
            manual=manual,
            replayed=int(n)
            if (n := view.request.query_params.get("replayed", "")).isdigit()
            else None,
        )

    @router.post("/ops/dead-letters/replay")
    @site.guard("admin", form=True)
    async def replay(view: View) -> Response:
        fields = view.form
        group = (fields.get("topic", ""), fields.get("service", ""), fields.get("reason", ""))
        try:
            # A guarded page has a signed-in person.
            sent = await operations.replay(settings, *group, view.session.subject or "")
        except (KafkaError, TimeoutError, OSError):
            return site.failure(view, 503, view.fmt.t("ops.broker_down"))
        audit.info(
            "%s replayed %d dead letters of %s (service %s, reason %s)",
            view.session.subject,
            sent,
            *group,
        )
        return site.redirect(view, f"/ops?replayed={sent}")

    return [site.router(), router]


def saved_outcome(view: View) -> str | None:
    """The outcome just recorded, named in the address the form redirected to; only a known
    one is shown (the banner would otherwise repeat whatever the address says)."""
    saved = view.request.query_params.get("saved")
    return saved if saved in OUTCOMES else None


async def optional(call: Awaitable[Any]) -> Any:
    """A section of a page that one service cannot give is left empty; the page still shows
    what the others know. A refusal (403) is not swallowed: it is the page's answer."""
    try:
        return await call
    except ServiceError as exc:
        if exc.status in (401, 403):
            raise
        return None


def _matches_id(value: str) -> bool:
    return re.fullmatch(ID_PATTERN, value) is not None
