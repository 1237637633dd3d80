"""Lifecycle settings: every rule threshold, overridable by RAPPORT_LIFECYCLE_* variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.lifecycle.domain import LifecycleRules
from services.lifecycle.domain.rules import DEFAULT_HOME_BANK_CODES
from services.runtime.settings import (
    COMPETITOR_BANK_CODES_ENV,
    BankCodes,
    TableStore,
    home_bank_codes_env,
)


class LifecycleSettings(BaseSettings, LifecycleRules):
    """The rules with their defaults (inherited from `LifecycleRules`), plus how the worker runs
    them. `RAPPORT_LIFECYCLE_INACTIVITY_DAYS=60` overrides one rule; `RAPPORT_LIFECYCLE_WEIGHTS`
    takes a JSON object."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_LIFECYCLE_", extra="ignore", frozen=True)

    home_bank_codes: BankCodes = Field(
        DEFAULT_HOME_BANK_CODES, validation_alias=home_bank_codes_env("lifecycle")
    )
    competitor_bank_codes: BankCodes = Field(
        frozenset(), validation_alias=COMPETITOR_BANK_CODES_ENV
    )

    # Events later than this behind the newest one seen are applied but counted as late; time
    # rules wait this long before firing so that slightly late events still count.
    allowed_lateness_hours: int = 24
    # Keys the pseudonymous payer ids kept in state; raw counterparty accounts are never stored.
    pseudonym_key: str = "development-only-pseudonym-key"
    # How often the worker writes changed customers to the read model the API serves.
    read_model_interval_seconds: float = 1.0
    # The most of the worker's time its read-model writes may take: under a backlog they come
    # less often than the interval (each row then carries more changes), so that replaying or
    # catching up is not spent on rows about to be written again.
    read_model_share: float = 0.2
    # Where the customers' states live in the worker: "memory" (rebuilt from the changelog at
    # every start) or "rocksdb" (on local disk under RAPPORT_STATE_DIR, kept across clean
    # restarts: a tenth of the restart time with 100,000 customers; docs/lifecycle.md).
    store: TableStore = "memory"

    def rules(self) -> LifecycleRules:
        """The domain's rule object, without the worker's own settings."""
        return LifecycleRules(**self.model_dump(include=set(LifecycleRules.model_fields)))
