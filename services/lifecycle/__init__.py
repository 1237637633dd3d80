"""Lifecycle: stages, value tiers and churn signals per customer (issue 3)."""
