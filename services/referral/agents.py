"""Faust adapter of the referral service: until its rules land, it validates, counts and
dead-letters its input."""

from __future__ import annotations

import faust

from schemas.topics import ACCOUNT_EVENTS
from services.runtime.app import validating_app
from services.runtime.settings import RuntimeSettings

SERVICE = "referral"


def build_app(settings: RuntimeSettings) -> faust.App:
    """The referral worker's faust app with its agents."""
    return validating_app(SERVICE, settings, [ACCOUNT_EVENTS])
