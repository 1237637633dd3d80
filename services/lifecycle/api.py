"""HTTP API of the lifecycle service, served from the read model."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from prometheus_client import REGISTRY

from schemas.account_events import ID_PATTERN
from services.lifecycle import read_model
from services.lifecycle.metrics import CustomersByStageAndTier
from services.lifecycle.read_model import CustomerLifecycle, LifecycleSummary
from services.runtime.settings import RuntimeSettings

# One per process (the registry refuses two of the same name), reading the latest API's database.
_customers_gauge: CustomersByStageAndTier | None = None


def routers(settings: RuntimeSettings) -> list[APIRouter]:
    """The lifecycle routes, and the stage/tier gauges on this process's /metrics."""
    global _customers_gauge
    url = settings.resolved_database_url
    count = partial(read_model.counts, url)
    if _customers_gauge is None:
        _customers_gauge = CustomersByStageAndTier(count)
        REGISTRY.register(_customers_gauge)
    else:
        _customers_gauge.use(count)
    router = APIRouter(tags=["lifecycle"])

    @router.get(
        "/customers/{customer_id}/lifecycle",
        summary="A customer's stage, tier, open churn signals, score and key figures",
        responses={404: {"description": "The lifecycle service has not seen this customer"}},
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

    @router.get("/lifecycle/summary", summary="Customers by stage and by tier")
    async def lifecycle_summary() -> LifecycleSummary:
        return await asyncio.to_thread(read_model.summary, url)

    return [router]
