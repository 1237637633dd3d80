"""HTTP API of the referral service: codes (the system of record), a customer's referrals, the
funnel, and the review of held referrals."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel

from schemas.account_events import ID_PATTERN
from services.referral import read_model
from services.referral.config import ReferralSettings, internal_topics, topics_to_create
from services.referral.read_model import CustomerReferrals, Funnel
from services.referral.steps import Review, Step
from services.runtime.auth import Role, assigned_rm, customer_reader, require
from services.runtime.codec import encode
from services.runtime.produce import send_and_confirm
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import create_topics

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="Bank customer id")]


class IssuedCode(BaseModel):
    code: str
    owner: str
    issued_at: datetime
    expires_at: datetime


class ReviewRequest(BaseModel):
    decision: Literal["release", "reject"]


class ReviewAccepted(BaseModel):
    referral_id: str
    decision: str
    note: str


def routers(settings: RuntimeSettings) -> list[APIRouter]:
    url = settings.resolved_database_url
    config = ReferralSettings()
    router = APIRouter(tags=["referral"])
    for_customer = Depends(customer_reader(assigned_rm(url), Role.CHANNEL, Role.OPS))

    @router.post(
        "/customers/{customer_id}/referral-codes",
        status_code=201,
        summary="Issue a referral code to a customer (valid for a year by default)",
        dependencies=[for_customer],
    )
    async def issue(customer_id: CustomerId) -> IssuedCode:
        row = await asyncio.to_thread(
            read_model.issue_code,
            url,
            customer_id,
            datetime.now(UTC),
            timedelta(days=config.code_validity_days),
        )
        return IssuedCode(**row.model_dump())

    @router.get(
        "/customers/{customer_id}/referrals",
        summary="A customer's codes, the referrals they made and their status",
        dependencies=[for_customer],
    )
    async def referrals(customer_id: CustomerId) -> CustomerReferrals:
        return await asyncio.to_thread(read_model.customer_referrals, url, customer_id)

    @router.get(
        "/referrals/funnel",
        summary="Leads, attributed, qualified and rejected counts",
        dependencies=[Depends(require(Role.OPS))],
    )
    async def funnel() -> Funnel:
        return await asyncio.to_thread(read_model.funnel, url)

    @router.post(
        "/referrals/{referral_id}/review",
        status_code=202,
        summary="Release or reject a held referral (administrators)",
        dependencies=[Depends(require())],
        responses={
            404: {"description": "No such referral"},
            409: {"description": "The referral is not held"},
        },
    )
    async def review(
        referral_id: Annotated[str, Path(max_length=64)],
        body: ReviewRequest,
    ) -> ReviewAccepted:
        found = await asyncio.to_thread(read_model.referral, url, referral_id)
        if found is None:
            raise HTTPException(404, detail=f"no referral {referral_id!r}")
        if found.status != "held":
            raise HTTPException(
                409,
                detail=f"referral {referral_id!r} is {found.status}, not held: nothing to review",
            )
        step = Step(
            review=Review(
                referral_id=referral_id,
                referee=found.referee,
                approve=body.decision == "release",
                reviewed_at=datetime.now(UTC),
            ),
        )
        _, steps = internal_topics(settings)
        # Normally the worker created them; a review before its first start must not fail.
        await create_topics(settings, specs=topics_to_create(settings))
        await send_and_confirm(
            settings.bootstrap_list, [(steps.name, found.referee.encode(), encode(step), [])]
        )
        return ReviewAccepted(
            referral_id=referral_id,
            decision=body.decision,
            note="the referral worker applies it within seconds; GET the referrer's referrals "
            "to see the new status",
        )

    return [router]
