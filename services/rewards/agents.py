"""Faust adapter of the rewards service: until its rules land, it validates, counts and
dead-letters its input."""

from __future__ import annotations

import faust

from schemas.topics import REFERRAL_EVENTS, STAGE_CHANGED
from services.runtime.app import validating_app
from services.runtime.settings import RuntimeSettings

SERVICE = "rewards"


def build_app(settings: RuntimeSettings) -> faust.App:
    """The rewards worker's faust app with its agents."""
    return validating_app(SERVICE, settings, [STAGE_CHANGED, REFERRAL_EVENTS])
