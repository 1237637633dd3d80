"""Notify settings: routing, quiet hours, caps and the holdout (RAPPORT_NOTIFY_*)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from services.notify.domain import NotifyRules

SERVICE = "notify"


class NotifySettings(BaseSettings, NotifyRules):
    """The rules with their defaults (inherited from `NotifyRules`).
    `RAPPORT_NOTIFY_DAILY_CAP=2` overrides one."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_NOTIFY_", extra="ignore", frozen=True)

    def rules(self) -> NotifyRules:
        """The domain's rule object."""
        return NotifyRules(**self.model_dump(include=set(NotifyRules.model_fields)))
