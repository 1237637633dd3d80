"""Notify settings: routing, quiet hours, caps and the holdout (RAPPORT_NOTIFY_*)."""

from __future__ import annotations

from pydantic import (
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.notify import Channel
from services.notify.domain import NotifyRules

SERVICE = "notify"


class NotifySettings(BaseSettings, NotifyRules):
    """The rules with their defaults (inherited from `NotifyRules`).
    `RAPPORT_NOTIFY_DAILY_CAP=2` overrides one."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_NOTIFY_", extra="ignore", frozen=True)

    # Optional webhook delivery, one URL per channel (none set: the topic is the interface).
    webhook_push_url: str | None = None
    webhook_sms_url: str | None = None
    webhook_email_url: str | None = None
    # Signs every payload (HMAC-SHA256); required when any URL is set.
    webhook_secret: str | None = None
    # How long an event may wait for the profile facts before it (in the input and, for lead
    # tasks, the stage changes) to be taken, before it is decided anyway: a safety valve for a
    # stalled partition, long enough to ride out a broker restart; each time is counted
    # (rapport_notify_profile_waits_total{outcome="timed_out"}).
    profile_wait_seconds: float = Field(120.0, ge=0)
    webhook_attempts: int = Field(5, ge=1, le=20)
    webhook_backoff_seconds: float = Field(0.5, gt=0)
    webhook_backoff_max_seconds: float = Field(30.0, gt=0)
    webhook_timeout_seconds: float = Field(5.0, gt=0)

    @field_validator("default_locale", mode="wrap")
    @classmethod
    def _locale_named(cls, value: object, handler: ValidatorFunctionWrapHandler) -> str:
        # The rules' own message names the field; a start-up failure names the variable.
        try:
            return str(handler(value))
        except ValidationError as exc:
            reason = "; ".join(str(e.get("ctx", {}).get("error", e["msg"])) for e in exc.errors())
            raise ValueError(f"RAPPORT_NOTIFY_DEFAULT_LOCALE: {reason}") from None

    @model_validator(mode="after")
    def _secret_with_urls(self) -> NotifySettings:
        if self.webhook_urls() and not self.webhook_secret:
            raise ValueError("RAPPORT_NOTIFY_WEBHOOK_SECRET is required with a webhook URL")
        return self

    def webhook_urls(self) -> dict[Channel, str]:
        """The channels delivered by webhook, and where."""
        urls = {
            Channel.PUSH: self.webhook_push_url,
            Channel.SMS: self.webhook_sms_url,
            Channel.EMAIL: self.webhook_email_url,
        }
        return {channel: url for channel, url in urls.items() if url}

    def rules(self) -> NotifyRules:
        """The domain's rule object."""
        return NotifyRules(**self.model_dump(include=set(NotifyRules.model_fields)))
