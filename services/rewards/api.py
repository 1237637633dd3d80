"""HTTP API of the rewards service: balances and ledgers, idempotent redemptions, and the
administrators' campaigns, adjustments, flag reviews and audit trail."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field, ValidationError, field_validator

from schemas.account_events import ID_PATTERN
from schemas.rewards import LedgerEntryBooked
from services.rewards import ledger, metrics, read_model, service
from services.rewards.config import RewardsSettings
from services.rewards.domain import Campaign
from services.rewards.read_model import AuditEntry, LedgerPage, LedgerTotals, RewardsSummary
from services.rewards.service import IdempotencyKeyReused, RedemptionResult
from services.runtime.auth import Principal, Role, assigned_rm, customer_reader, require
from services.runtime.settings import RuntimeSettings

CustomerId = Annotated[str, Path(pattern=ID_PATTERN, description="Bank customer id")]
# The administrator acting, recorded in the audit trail by their subject.
Admin = Annotated[Principal, Depends(require())]


class RedemptionRequest(BaseModel):
    points: Annotated[int, Field(gt=0, le=10_000_000)]
    description: Annotated[str, Field(min_length=1, max_length=200)]


class AdjustmentRequest(BaseModel):
    points: Annotated[int, Field(ge=-10_000_000, le=10_000_000)]
    reason: Annotated[str, Field(min_length=5, max_length=300)]

    @field_validator("points")
    @classmethod
    def _moves_the_balance(cls, points: int) -> int:
        if points == 0:
            raise ValueError("an adjustment of 0 points changes nothing")
        return points


class FlagClearance(BaseModel):
    note: Annotated[str, Field(min_length=5, max_length=300)]


class CampaignChange(BaseModel):
    """The fields a PATCH may change; the campaign id and rule are fixed once created."""

    name: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    multiplier: Annotated[Decimal, Field(ge=0, le=100, decimal_places=2)] | None = None
    bonus_points: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    active: bool | None = None


def unprocessable(loc: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 of the shape FastAPI gives a request it cannot validate (and OpenAPI declares), for
    a rule only the service can check."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])


def routers(settings: RuntimeSettings) -> list[APIRouter]:
    url = settings.resolved_database_url
    config = RewardsSettings()
    rules = config.rules()
    router = APIRouter(tags=["rewards"])
    admin = APIRouter(tags=["rewards administration"], dependencies=[Depends(require())])
    for_customer = Depends(customer_reader(assigned_rm(url), Role.CHANNEL, Role.OPS))

    @router.get(
        "/customers/{customer_id}/rewards",
        summary="Points and cash balances, pending referral rewards, withheld points, flag",
        responses={404: {"description": "The ledger has never seen this customer"}},
        dependencies=[for_customer],
    )
    async def rewards(customer_id: CustomerId) -> RewardsSummary:
        found = await asyncio.to_thread(read_model.summary, url, customer_id, rules)
        if found is None:
            raise HTTPException(404, detail=f"no rewards for customer {customer_id!r}")
        return found

    @router.get(
        "/rewards/summary",
        summary="Entries and points by rule, withheld points, flagged accounts, outbox backlog",
        dependencies=[Depends(require(Role.OPS))],
    )
    async def totals() -> LedgerTotals:
        return await asyncio.to_thread(read_model.totals, url)

    @router.get(
        "/customers/{customer_id}/ledger",
        summary="A customer's ledger entries in booking order, with their source events",
        dependencies=[for_customer],
    )
    async def entries(
        customer_id: CustomerId,
        # A row id: SQL's BIGINT bounds it (a larger one answers 422, not a database error).
        after: Annotated[
            int, Query(ge=0, le=2**63 - 1, description="next_after of the previous page")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> LedgerPage:
        return await asyncio.to_thread(read_model.entries, url, customer_id, after, limit)

    @router.post(
        "/customers/{customer_id}/redemptions",
        status_code=201,
        summary="Redeem points, once per Idempotency-Key (the customer's channel)",
        dependencies=[Depends(require(Role.CHANNEL))],
        responses={
            409: {"description": "Not enough points, or the account is flagged for review"},
            422: {"description": "The Idempotency-Key was used for a different request"},
        },
    )
    async def redeem(
        customer_id: CustomerId,
        body: RedemptionRequest,
        idempotency_key: Annotated[
            str,
            Header(
                min_length=8,
                max_length=128,
                description="a key of the client's choosing; the same key gives the same answer",
            ),
        ],
    ) -> JSONResponse:
        try:
            result: RedemptionResult = await asyncio.to_thread(
                service.redeem,
                url,
                customer_id,
                idempotency_key,
                body.points,
                body.description,
                ledger.utcnow(),
            )
        except IdempotencyKeyReused:
            metrics.REDEMPTIONS.labels("key_reused").inc()
            raise unprocessable(
                ("header", "idempotency-key"),
                f"Idempotency-Key {idempotency_key!r} was used for a different redemption; "
                "use a new key for a new request",
            ) from None
        outcome = "booked" if result.status_code == 201 else (result.error or "refused")
        metrics.REDEMPTIONS.labels(outcome).inc()
        return JSONResponse(result.model_dump(mode="json"), status_code=result.status_code)

    @admin.post(
        "/customers/{customer_id}/adjustments",
        status_code=201,
        summary="Book a manual adjustment with its reason (administrators)",
    )
    async def adjust(
        customer_id: CustomerId,
        body: AdjustmentRequest,
        principal: Admin,
    ) -> LedgerEntryBooked:
        return await asyncio.to_thread(
            service.adjust,
            url,
            customer_id,
            body.points,
            body.reason,
            principal.subject,
            ledger.utcnow(),
        )

    @admin.post(
        "/customers/{customer_id}/flag-clearance",
        summary="Clear a customer's review flag (administrators)",
        responses={409: {"description": "The account is not flagged"}},
    )
    async def clear_flag(
        customer_id: CustomerId,
        body: FlagClearance,
        principal: Admin,
    ) -> dict[str, str]:
        cleared = await asyncio.to_thread(
            service.clear_flag, url, customer_id, body.note, principal.subject, ledger.utcnow()
        )
        if not cleared:
            raise HTTPException(409, detail=f"customer {customer_id!r} is not flagged")
        return {"customer_id": customer_id, "status": "cleared"}

    @admin.post(
        "/campaigns",
        status_code=201,
        summary="Start a time-boxed campaign on one rule (administrators)",
        responses={409: {"description": "A campaign with this id exists"}},
    )
    async def create_campaign(
        campaign: Campaign,
        principal: Admin,
    ) -> Campaign:
        created = await asyncio.to_thread(
            service.create_campaign, url, campaign, principal.subject, ledger.utcnow()
        )
        if not created:
            raise HTTPException(409, detail=f"campaign {campaign.campaign_id!r} exists")
        return campaign

    @admin.get("/campaigns", summary="Every campaign, active or not (administrators)")
    async def list_campaigns() -> list[Campaign]:
        return await asyncio.to_thread(read_model.campaigns, url)

    @admin.patch(
        "/campaigns/{campaign_id}",
        summary="Change or end a campaign (administrators)",
        responses={404: {"description": "No such campaign"}},
    )
    async def change_campaign(
        campaign_id: Annotated[str, Path(max_length=64)],
        change: CampaignChange,
        principal: Admin,
    ) -> Campaign:
        changes = change.model_dump(exclude_unset=True)
        try:
            updated = await asyncio.to_thread(
                service.update_campaign,
                url,
                campaign_id,
                changes,
                principal.subject,
                ledger.utcnow(),
            )
        except ValidationError as exc:
            problems = "; ".join(e["msg"] for e in exc.errors(include_url=False))
            raise unprocessable(("body",), f"the campaign would not be valid: {problems}") from None
        if updated is None:
            raise HTTPException(404, detail=f"no campaign {campaign_id!r}")
        return updated

    @admin.get("/audit", summary="Who did what by hand, newest first (administrators)")
    async def audit(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[AuditEntry]:
        return await asyncio.to_thread(read_model.audit_trail, url, limit)

    return [router, admin]
