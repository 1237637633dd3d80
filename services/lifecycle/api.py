"""HTTP API of the lifecycle service, served from the read model."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from schemas.account_events import ID_PATTERN
from services.lifecycle import history, read_model
from services.lifecycle.history import HistoryEntry, MonthCounts
from services.lifecycle.metrics import customer_samples
from services.lifecycle.read_model import CustomerLifecycle, LifecycleSummary
from services.runtime.auth import Role, assigned_rm, customer_reader, require
from services.runtime.metrics import read_model_gauge
from services.runtime.settings import RuntimeSettings


def routers(settings: RuntimeSettings) -> list[APIRouter]:
    """The lifecycle routes, and the stage/tier gauges on this process's /metrics."""
    url = settings.resolved_database_url
    read_model_gauge(
        "rapport_lifecycle_customers",
        "Customers in each lifecycle stage and value tier (from the read model).",
        ["stage", "tier"],
        customer_samples(partial(read_model.counts, url)),
    )
    router = APIRouter(tags=["lifecycle"])

    @router.get(
        "/customers/{customer_id}/lifecycle",
        summary="A customer's stage, tier, open churn signals, score and key figures",
        responses={404: {"description": "The lifecycle service has not seen this customer"}},
        # The bank's view of a customer, for their RM (and administrators); not the channel's.
        dependencies=[Depends(customer_reader(assigned_rm(url), Role.OPS))],
    )
    async def customer_lifecycle(
        customer_id: Annotated[str, Path(pattern=ID_PATTERN, description="Bank customer id")],
    ) -> CustomerLifecycle:
        found = await asyncio.to_thread(read_model.customer, url, customer_id)
        if found is None:
            raise HTTPException(
                404,
                detail=f"customer {customer_id!r} has no lifecycle yet: no account event of "
                "theirs has been processed (the read model trails the stream by about a second)",
            )
        return found

    @router.get(
        "/customers/{customer_id}/lifecycle/history",
        summary="A customer's stage and tier changes and churn signals, newest first",
        description="Every stage change, tier change and churn signal raised, escalated or "
        "resolved that the lifecycle service published for the customer, with the reason, "
        "evidence and explanation it carried. Empty for a customer with none (yet).",
        dependencies=[Depends(customer_reader(assigned_rm(url), Role.OPS))],
    )
    async def customer_history(
        customer_id: Annotated[str, Path(pattern=ID_PATTERN, description="Bank customer id")],
        limit: Annotated[int, Query(ge=1, le=history.MAX_ENTRIES)] = history.MAX_ENTRIES,
    ) -> list[HistoryEntry]:
        return await asyncio.to_thread(history.of_customer, url, customer_id, limit)

    @router.get(
        "/lifecycle/summary/monthly",
        summary="Customers by stage and tier at the end of each month",
        description="The months are those up to the newest stage or tier change, in event "
        "time; each customer is counted where their latest change by the month's end left "
        "them. Empty before the first change.",
        dependencies=[Depends(require(Role.OPS))],
    )
    async def lifecycle_monthly(
        months: Annotated[int, Query(ge=1, le=history.MAX_MONTHS)] = 12,
    ) -> list[MonthCounts]:
        return await asyncio.to_thread(history.monthly, url, months)

    @router.get(
        "/lifecycle/summary",
        summary="Customers by stage and by tier",
        dependencies=[Depends(require(Role.OPS))],
    )
    async def lifecycle_summary() -> LifecycleSummary:
        return await asyncio.to_thread(read_model.summary, url)

    return [router]
