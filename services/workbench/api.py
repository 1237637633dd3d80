"""`rapport api workbench`: the pages, on the same app factory as the services' APIs (health,
readiness, metrics)."""

from __future__ import annotations

from fastapi import APIRouter

from services.runtime.settings import RuntimeSettings
from services.workbench import pages


def routers(settings: RuntimeSettings) -> list[APIRouter]:
    return pages.routers(settings)
