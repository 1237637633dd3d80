"""The FastAPI app factory every service's API is built with: health, readiness, metrics and
request metrics by route template."""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.runtime import db
from services.runtime.auth import Authenticator, AuthSettings
from services.runtime.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS
from services.runtime.osutil import port_open
from services.runtime.settings import RuntimeSettings


async def broker_reachable(bootstrap: list[str]) -> str | None:
    """None when some bootstrap server accepts connections; otherwise what is wrong."""
    for server in bootstrap:
        host, _, port = server.rpartition(":")
        if await asyncio.to_thread(port_open, host or "127.0.0.1", int(port), 1.0):
            return None
    return f"no Kafka bootstrap server answers ({', '.join(bootstrap)})"


def create_api(
    service: str, settings: RuntimeSettings, routers: list[APIRouter], openapi: bool = True
) -> FastAPI:
    """A service's HTTP API: its routers plus /healthz, /readyz and /metrics (and its OpenAPI
    document and pages, unless `openapi` is False)."""
    app = FastAPI(
        title=f"Rapport {service}",
        version="0.1.0",
        description=f"HTTP API of the Rapport {service} service.",
        openapi_url="/openapi.json" if openapi else None,
        docs_url="/docs" if openapi else None,
        redoc_url="/redoc" if openapi else None,
    )

    @app.middleware("http")
    async def record_request(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        # The route template, not the path: /customers/{customer_id} is one series, not one
        # per customer.
        route = getattr(request.scope.get("route"), "path", "unmatched")
        HTTP_REQUESTS.labels(service, request.method, route, str(response.status_code)).inc()
        HTTP_REQUEST_DURATION.labels(service, request.method, route).observe(
            time.perf_counter() - started
        )
        return response

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["operations"], summary="Readiness: database and broker reachable")
    async def readyz() -> JSONResponse:
        problems = [
            problem
            for problem in (
                await asyncio.to_thread(db.check_ready, settings.resolved_database_url),
                await broker_reachable(settings.bootstrap_list),
            )
            if problem
        ]
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready", "service": service})

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics of this process",
        response_class=PlainTextResponse,
    )
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # Built here so that unusable keys stop the API at start, with the reason.
    app.state.authenticator = Authenticator(AuthSettings())
    for router in routers:
        app.include_router(router)
    return app


def load_api(service: str, settings: RuntimeSettings) -> FastAPI:
    """The API of a service, with the routers its `api` module declares (none until it has one)."""
    try:
        module = importlib.import_module(f"services.{service}.api")
    except ModuleNotFoundError as exc:
        if exc.name != f"services.{service}.api":
            raise
        return create_api(service, settings, [])
    return create_api(
        service, settings, list(module.routers(settings)), getattr(module, "OPENAPI", True)
    )
