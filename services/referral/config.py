"""Referral settings: every rule threshold, overridable by RAPPORT_REFERRAL_* variables, and the
names of the service's internal topics (the worker and the review API both need them)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import TopicSpec, dead_letter_topic
from services.referral.domain import DEFAULT_HOME_BANK_CODES, ReferralRules
from services.runtime.settings import BankCodes, RuntimeSettings, home_bank_codes_env

SERVICE = "referral"


class ReferralSettings(BaseSettings, ReferralRules):
    """The rules with their defaults (inherited from `ReferralRules`), plus how the worker runs
    them. `RAPPORT_REFERRAL_LEAD_MIN_TRANSACTIONS=5` overrides one rule."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_REFERRAL_", extra="ignore", frozen=True)

    home_bank_codes: BankCodes = Field(
        DEFAULT_HOME_BANK_CODES, validation_alias=home_bank_codes_env("referral")
    )

    # Links are applied in event-time order once every input partition is this far past them.
    allowed_lateness_hours: int = 24
    # Keys counterparty hashes (HMAC-SHA256); raw counterparty accounts are never stored.
    pseudonym_key: str = "development-only-pseudonym-key"
    # How often the worker writes changed referrals and leads to the read model.
    read_model_interval_seconds: float = 1.0

    def rules(self) -> ReferralRules:
        """The domain's rule object, without the worker's own settings."""
        return ReferralRules(**self.model_dump(include=set(ReferralRules.model_fields)))


def internal_topics(settings: RuntimeSettings) -> tuple[TopicSpec, TopicSpec]:
    """The service's own topics between its keyed steps, named after the app (so two stacks on
    one cluster never share them), with the input's partition count (so the customer-keyed one
    is co-partitioned with the input). The worker creates them at start."""
    app_id = settings.app_id(SERVICE)
    links = TopicSpec(
        name=f"{app_id}-links",
        description="Transfers with external accounts, keyed by the counterparty's keyed hash.",
        key="counterparty hash (UTF-8)",
        payload=None,
        producers=(SERVICE,),
        consumers=(SERVICE,),
    )
    steps = TopicSpec(
        name=f"{app_id}-steps",
        description="Chain matches, candidates, decisions and reviews, keyed by customer.",
        key="customer id (UTF-8)",
        payload=None,
        producers=(SERVICE, f"{SERVICE} API (reviews)"),
        consumers=(SERVICE,),
    )
    return links, steps


def topics_to_create(settings: RuntimeSettings) -> tuple[TopicSpec, ...]:
    """The internal topics and their dead-letter companions (a record of theirs that fails is
    dead-lettered like any other)."""
    links, steps = internal_topics(settings)
    return (links, steps, dead_letter_topic(links), dead_letter_topic(steps))
