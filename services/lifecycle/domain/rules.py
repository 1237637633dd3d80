"""Every threshold of the lifecycle rules, with the product's defaults (docs/lifecycle.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import cached_property

from pydantic import BaseModel, ConfigDict, field_validator

from schemas.account_events import Counterparty, InstitutionCodes
from schemas.lifecycle import ChurnCause, SignalKind

DEFAULT_TIME_ZONE = "Asia/Shanghai"
# The bank's own institution code when the settings name none (the simulator's bank).
DEFAULT_HOME_BANK_CODES = frozenset({"RAPPORTBANK"})

CAUSE = {
    SignalKind.INACTIVITY: ChurnCause.DISENGAGEMENT,
    SignalKind.SALARY_STOPPED: ChurnCause.COMPETITOR_ATTRACTION,
    SignalKind.COMPETITOR_TRANSFER: ChurnCause.COMPETITOR_ATTRACTION,
    SignalKind.PAYMENTS_MOVED: ChurnCause.COMPETITOR_ATTRACTION,
    SignalKind.PRODUCT_CLOSURE: ChurnCause.DISENGAGEMENT,
    SignalKind.COMPLAINT: ChurnCause.SERVICE_DISSATISFACTION,
    SignalKind.INCOME_FELL: ChurnCause.FINANCIAL_DISTRESS,
}


_DEFAULT_WEIGHTS = {
    SignalKind.INACTIVITY: 0.6,
    SignalKind.BALANCE_DRAIN: 0.6,
    SignalKind.SALARY_STOPPED: 0.6,
    SignalKind.COMPETITOR_TRANSFER: 0.7,
    SignalKind.PAYMENTS_MOVED: 0.7,
    SignalKind.PRODUCT_CLOSURE: 0.3,
    SignalKind.COMPLAINT: 0.4,
    SignalKind.INCOME_FELL: 0.6,
}


@dataclass(frozen=True)
class RuleSpans:
    """The rules' periods as timedeltas, made once: the deadlines are checked at every event."""

    activation_window: timedelta
    competitor_quiet: timedelta
    competitor_window: timedelta
    complaint_window: timedelta
    dormant_after: timedelta
    inactivity: timedelta
    mandate_established: timedelta
    mandate_replacement: timedelta
    maturity_recent_activity: timedelta
    maturity_tenure: timedelta
    payments_moved_quiet: timedelta
    payments_moved_window: timedelta
    product_replacement: timedelta
    salary_missing: timedelta


class LifecycleRules(BaseModel):
    """Every threshold of the lifecycle rules, with the product's defaults (docs/lifecycle.md).
    The service's settings extend this model, so each default is written here once."""

    model_config = ConfigDict(frozen=True)

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
    # Disengagement needs engagement first: own transactions before the silence.
    inactivity_min_transactions: int = 6
    # A silence counts against the customer's own rhythm: this many usual gaps, when that is
    # longer than `inactivity_days`.
    inactivity_gap_multiple: float = 3.0
    drain_ratio: Decimal = Decimal("0.5")
    drain_escalate_ratio: Decimal = Decimal("0.2")
    drain_recovered_ratio: Decimal = Decimal("0.8")
    drain_min_reference: Decimal = Decimal(1000)
    # Below this share of the customer's usual monthly low: every salaried household runs its
    # balance down each month, and that is not a drain.
    drain_usual_low_ratio: Decimal = Decimal("0.5")
    # A single payment to someone else of at least this share of the balance (a car, a deposit
    # on a flat) is a life event: the balance it took does not count as drained.
    drain_one_off_share: Decimal = Decimal("0.3")
    salary_missing_days: int = 45
    # A household whose regular income (a salary, a pension) still comes in full is spending
    # (school fees, the festival, a holiday), not in hardship: a drain blamed on financial
    # distress needs that income to have fallen below this share of its usual amount, or
    # stopped.
    drain_income_kept_ratio: Decimal = Decimal("0.8")
    # A payer is regular (a salary, a pension) once it paid in this many of the last months.
    salary_months: int = 3
    # A steady salary paid below this share of its usual amount twice running, a pay period
    # apart: hours or pay cut (`income_fell`). Once is a month of sick leave or a short month.
    income_fell_ratio: Decimal = Decimal("0.7")
    competitor_window_days: int = 7
    competitor_share: Decimal = Decimal("0.3")
    competitor_quiet_days: int = 30
    payments_moved_window_days: int = 30
    payments_moved_share: Decimal = Decimal("0.5")
    payments_moved_min_cancelled: int = 2
    payments_moved_quiet_days: int = 60
    mandate_established_days: int = 180
    mandate_replacement_days: int = 30
    product_replacement_days: int = 30
    complaint_window_days: int = 30
    complaint_escalate_count: int = 2
    # The bank's own institution codes (several after a merger): transfers to them stay in the
    # bank. Institutions that count as competitors: money moved there is a competitor's pull
    # whatever the payment says it is for (bills excepted).
    home_bank_codes: InstitutionCodes = DEFAULT_HOME_BANK_CODES
    competitor_bank_codes: InstitutionCodes = frozenset()
    weights: dict[SignalKind, float] = _DEFAULT_WEIGHTS
    escalated_weight: float = 0.8

    @field_validator("weights")
    @classmethod
    def _complete_weights(cls, weights: dict[SignalKind, float]) -> dict[SignalKind, float]:
        # Overriding one weight keeps the defaults of the others.
        merged = {**_DEFAULT_WEIGHTS, **weights}
        if not all(0.0 <= w < 1.0 for w in merged.values()):
            raise ValueError("signal weights must be at least 0 and below 1")
        return merged

    def at_home(self, counterparty: Counterparty) -> bool:
        """Whether the counterparty's account is with this bank."""
        return counterparty.institution in self.home_bank_codes

    @cached_property
    def spans(self) -> RuleSpans:
        return RuleSpans(
            activation_window=timedelta(days=self.activation_window_days),
            competitor_quiet=timedelta(days=self.competitor_quiet_days),
            competitor_window=timedelta(days=self.competitor_window_days),
            complaint_window=timedelta(days=self.complaint_window_days),
            dormant_after=timedelta(days=self.dormant_after_days),
            inactivity=timedelta(days=self.inactivity_days),
            mandate_established=timedelta(days=self.mandate_established_days),
            mandate_replacement=timedelta(days=self.mandate_replacement_days),
            maturity_recent_activity=timedelta(days=self.maturity_recent_activity_days),
            maturity_tenure=timedelta(days=self.maturity_tenure_days),
            payments_moved_quiet=timedelta(days=self.payments_moved_quiet_days),
            payments_moved_window=timedelta(days=self.payments_moved_window_days),
            product_replacement=timedelta(days=self.product_replacement_days),
            salary_missing=timedelta(days=self.salary_missing_days),
        )
