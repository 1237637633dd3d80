"""Referral: transaction-chain leads, referral codes, attribution and fraud guards (issue 5)."""
