"""HTTP API of the notify service: customer preferences and notification status, RM task lists
and outcomes, the team lead's summary, and the uplift of interventions over the holdout."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field

from schemas.account_events import ID_PATTERN
from schemas.notify import RmTaskChanged, TaskKind
from schemas.topics import RM_TASKS
from services.notify import read_model, service
from services.notify.config import NotifySettings
from services.notify.domain import Profile
from services.notify.metrics import intervention_samples, task_samples
from services.notify.read_model import NotificationView, TaskSummary, UpliftCell
from services.notify.service import Preferences
from services.runtime.auth import Principal, Role, assigned_rm, customer_reader, require, rm_scope
from services.runtime.codec import encode
from services.runtime.metrics import read_model_gauge
from services.runtime.produce import send_and_confirm
from services.runtime.settings import RuntimeSettings

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="Bank customer id")]
RmCaller = Annotated[Principal, Depends(require(Role.RM))]


class OutcomeRequest(BaseModel):
    outcome: Literal["contacted", "retained", "lost", "not_reachable"]
    note: Annotated[str, Field(max_length=500)] | None = None


def routers(settings: RuntimeSettings) -> list[APIRouter]:
    url = settings.resolved_database_url
    rules = NotifySettings().rules()
    read_model_gauge(
        "rapport_notify_rm_tasks_by_status",
        "RM tasks by status (open, queued, closed), and open tasks past due (overdue).",
        ["status"],
        task_samples(lambda: read_model.task_summary(url, datetime.now(UTC))),
    )
    read_model_gauge(
        "rapport_notify_interventions",
        "At-risk customers with a known outcome, by tier, cause, group (treated, holdout) and "
        "outcome (retained, lost).",
        ["tier", "cause", "group", "outcome"],
        intervention_samples(partial(read_model.uplift, url)),
    )
    router = APIRouter(tags=["notify"])
    for_customer = Depends(customer_reader(assigned_rm(url), Role.CHANNEL, Role.OPS))

    @router.put(
        "/customers/{customer_id}/preferences",
        summary="A customer's channel opt-outs (absolute), language and time zone",
        dependencies=[Depends(require(Role.CHANNEL))],
    )
    async def preferences(customer_id: CustomerId, body: Preferences) -> Profile:
        return await asyncio.to_thread(
            service.set_preferences, url, customer_id, body, datetime.now(UTC)
        )

    @router.get(
        "/customers/{customer_id}/notifications",
        summary="A customer's notifications and their status, newest first",
        dependencies=[for_customer],
    )
    async def notifications(
        customer_id: CustomerId, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> list[NotificationView]:
        return await asyncio.to_thread(read_model.notifications, url, customer_id, limit)

    @router.get(
        "/rm/{rm_id}/tasks",
        summary="An RM's (or a queue's) tasks: open first, then queued, by priority and due "
        "time; of the lead tasks, each day's budget of the best scored",
    )
    async def tasks(
        rm_id: Annotated[str, Path(max_length=64)],
        principal: RmCaller,
        include_closed: bool = False,
        all_leads: Annotated[
            bool,
            Query(description="every lead task, not only the day's budget of the best scored"),
        ] = False,
        kind: Annotated[TaskKind | None, Query(description="only the tasks of this kind")] = None,
    ) -> list[RmTaskChanged]:
        rm_scope(principal, rm_id, f"the task list of {rm_id!r}")
        budget = None if all_leads else rules
        return await asyncio.to_thread(
            read_model.tasks_of, url, rm_id, include_closed, budget, kind
        )

    @router.post(
        "/tasks/{task_id}/outcome",
        summary="Record what came of a task: it closes, and the RM's most urgent queued task "
        "opens; the changed tasks are published and returned",
        responses={404: {"description": "No such task"}},
    )
    async def outcome(
        task_id: Annotated[str, Path(max_length=64)], body: OutcomeRequest, principal: RmCaller
    ) -> list[RmTaskChanged]:
        assignee = await asyncio.to_thread(read_model.task_assignee, url, task_id)
        if assignee is None:
            raise HTTPException(404, detail=f"no task {task_id!r}")
        rm_scope(principal, assignee, f"task {task_id!r}")
        changed = await asyncio.to_thread(
            service.record_outcome, url, task_id, body.outcome, body.note, datetime.now(UTC)
        )
        if changed is None:
            raise HTTPException(404, detail=f"no task {task_id!r}")
        await send_and_confirm(
            settings.bootstrap_list,
            [(RM_TASKS.name, task.task_id.encode(), encode(task), []) for task in changed],
        )
        return changed

    @router.get(
        "/tasks/summary",
        summary="Tasks per assignee and status, outcomes, overdue",
        dependencies=[Depends(require(Role.OPS))],
    )
    async def summary() -> TaskSummary:
        return await asyncio.to_thread(read_model.task_summary, url, datetime.now(UTC))

    @router.get(
        "/interventions/uplift",
        summary="Retention of treated against holdout at-risk customers, per tier and cause",
        dependencies=[Depends(require(Role.OPS))],
    )
    async def uplift() -> list[UpliftCell]:
        return await asyncio.to_thread(read_model.uplift, url)

    return [router]
