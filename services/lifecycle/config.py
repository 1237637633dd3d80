"""Lifecycle settings: every rule threshold, overridable by RAPPORT_LIFECYCLE_* variables."""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal

from pydantic_settings import BaseSettings, SettingsConfigDict

from services.lifecycle.domain import LifecycleRules


class LifecycleSettings(BaseSettings):
    """Defaults are the product's rules (docs/lifecycle.md)."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_LIFECYCLE_", extra="ignore")

    activation_window_days: int = 90
    activation_transactions: int = 3
    activation_balance: Decimal = Decimal(1000)
    maturity_tenure_days: int = 365
    maturity_products: int = 2
    maturity_avg_balance_90d: Decimal = Decimal(50000)
    maturity_recent_activity_days: int = 30
    dormant_after_days: int = 180
    at_risk_score: float = 0.6
    affluent_from: Decimal = Decimal(50000)
    hnw_from: Decimal = Decimal(1000000)
    tier_hysteresis: Decimal = Decimal("0.10")
    inactivity_days: int = 45
    drain_ratio: Decimal = Decimal("0.5")
    drain_min_reference: Decimal = Decimal(1000)
    salary_missing_days: int = 45
    competitor_window_days: int = 7
    competitor_share: Decimal = Decimal("0.3")
    product_replacement_days: int = 30
    complaint_window_days: int = 30
    complaint_escalate_count: int = 2
    own_bank_code: str = "RAPPORTBANK"
    # Events later than this behind the newest one seen are applied but counted as late; time
    # rules wait this long before firing so that slightly late events still count.
    allowed_lateness_hours: int = 24
    # Keys the pseudonymous payer ids kept in state; raw counterparty accounts are never stored.
    pseudonym_key: str = "development-only-pseudonym-key"

    def rules(self) -> LifecycleRules:
        """The domain's rule object."""
        names = {f.name for f in fields(LifecycleRules)}
        return LifecycleRules(**{k: v for k, v in self.model_dump().items() if k in names})
