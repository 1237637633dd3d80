"""`rapport api workbench`: the pages, on the same app factory as the services' APIs (health,
readiness, metrics)."""

from __future__ import annotations

from fastapi import APIRouter

from services.runtime.settings import RuntimeSettings
from services.workbench import pages

# Pages, not an API for programs: no /docs, /redoc or /openapi.json (Swagger UI would load
# from a CDN, past the pages' Content-Security-Policy).
OPENAPI = False


def routers(settings: RuntimeSettings) -> list[APIRouter]:
    return pages.routers(settings)
