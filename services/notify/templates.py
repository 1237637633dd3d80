"""Customer message texts in zh-CN and en, rendered by a sandboxed Jinja2 environment. Only
masked or aggregated values reach a template: never an account number or a counterparty."""

# ruff: noqa: E501, RUF001  (full-width punctuation is right in Chinese text)

from __future__ import annotations

# (template, locale) -> (subject, body). Only masked or aggregated values reach a template.
TEMPLATES: dict[tuple[str, str], tuple[str, str]] = {
    ("welcome", "en"): (
        "Welcome to the bank",
        "Welcome aboard! Set up your app and enjoy your new-customer offer.",
    ),
    ("welcome", "zh-CN"): ("欢迎加入", "欢迎成为我们的客户！开通手机银行即可享受新客专属礼遇。"),
    ("recommendation", "en"): (
        "Picked for you",
        "Based on how you bank with us, we have a few suggestions for you in the app.",
    ),
    ("recommendation", "zh-CN"): (
        "为您推荐",
        "根据您的使用习惯，我们在手机银行为您准备了专属推荐。",
    ),
    ("exclusive_service", "en"): (
        "Exclusive service",
        "As a valued customer you now have access to exclusive services and offers.",
    ),
    ("exclusive_service", "zh-CN"): ("尊享服务", "感谢您的长期信任，您已可享受专属服务与优惠。"),
    ("retention_offer", "en"): ("We are here for you", "{{ offer_en }}"),
    ("retention_offer", "zh-CN"): ("我们一直在您身边", "{{ offer_zh }}"),
    ("reward_credited", "en"): (
        "Points credited",
        "{{ points }} points were credited to your rewards account. Your balance is in the app.",
    ),
    ("reward_credited", "zh-CN"): (
        "积分到账",
        "{{ points }} 积分已存入您的积分账户，余额请在手机银行查看。",
    ),
    ("referral_qualified", "en"): (
        "Your referral qualified",
        "Someone you referred has joined and qualified. Thank you!",
    ),
    ("referral_qualified", "zh-CN"): ("推荐成功", "您推荐的好友已成功开户并达标，感谢您的推荐！"),
    ("birthday", "en"): ("Happy birthday", "Happy birthday from all of us at the bank!"),
    ("birthday", "zh-CN"): ("生日快乐", "祝您生日快乐，万事如意！"),
    ("anniversary", "en"): (
        "Happy anniversary",
        "Thank you for {{ years }} year{{ 's' if years != 1 else '' }} with us.",
    ),
    ("anniversary", "zh-CN"): ("感谢相伴", "感谢您与我们相伴 {{ years }} 年。"),
}
RETENTION_OFFERS: dict[str, tuple[str, str]] = {
    "service_dissatisfaction": (
        "We are sorry about your recent experience. A service manager will call you, and your fees this month are waived.",
        "对于您近期的不愉快体验我们深表歉意，服务经理将与您联系，并为您减免本月手续费。",
    ),
    "competitor_attraction": (
        "Enjoy a preferential deposit rate for the next 6 months, just for you.",
        "为您专享未来 6 个月的优惠存款利率。",
    ),
    "financial_distress": (
        "Facing a tight month? Ask us about flexible repayment and fee relief.",
        "资金周转紧张？欢迎咨询灵活还款与费用减免方案。",
    ),
    "disengagement": (
        "We miss you! Log in this week for a bonus of 200 reward points.",
        "好久不见！本周登录手机银行即可获得 200 积分奖励。",
    ),
}
