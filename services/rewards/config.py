"""Rewards settings: point values and caps (RAPPORT_REWARDS_*), and how the worker runs."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from services.rewards.domain import RewardRules

SERVICE = "rewards"


class RewardsSettings(BaseSettings, RewardRules):
    """The rules with their defaults (inherited from `RewardRules`), plus the worker's and the
    API's own settings. `RAPPORT_REWARDS_REFERRER_POINTS=300` overrides one rule."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_REWARDS_", extra="ignore", frozen=True)

    # How often the outbox relay looks for entries to publish when this worker booked none
    # (it looks at once when it did), and how long its lease lasts (another worker takes over
    # that long after the relaying one died).
    relay_interval_seconds: float = 2.0
    relay_lease_seconds: float = 10.0
    relay_batch: int = 500

    def rules(self) -> RewardRules:
        """The domain's rule object, without the worker's own settings."""
        return RewardRules(**self.model_dump(include=set(RewardRules.model_fields)))
