"""Faust adapter of the notify service: until its rules land, it validates, counts and
dead-letters its input."""

from __future__ import annotations

import faust

from schemas.topics import ACCOUNT_EVENTS
from services.runtime.app import validating_app
from services.runtime.settings import RuntimeSettings

SERVICE = "notify"


def build_app(settings: RuntimeSettings) -> faust.App:
    """The notify worker's faust app with its agents."""
    return validating_app(SERVICE, settings, [ACCOUNT_EVENTS])
