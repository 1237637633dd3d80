"""Rewards: the exactly-once ledger of referral and loyalty rewards (issue 6)."""
