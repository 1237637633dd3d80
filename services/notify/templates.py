"""Customer message texts in zh-CN (Simplified Chinese), zh-Hant (Traditional Chinese, as banks
in Hong Kong and Taiwan write it) and en, rendered by a sandboxed Jinja2 environment. Only
masked or aggregated values reach a template: never an account number or a counterparty.

Each key of `TEMPLATES` is a template locale: `services.notify.locales` picks the one for a
customer's locale by language and script, so adding a language is adding its texts here."""

# ruff: noqa: E501, RUF001  (full-width punctuation is right in Chinese text)

from __future__ import annotations

# (template, template locale) -> (subject, body). Only masked or aggregated values reach a
# template. Every template has a text in every template locale (a test checks it).
TEMPLATES: dict[tuple[str, str], tuple[str, str]] = {
    ("welcome", "en"): (
        "Welcome to the bank",
        "Welcome aboard! Set up your app and enjoy your new-customer offer.",
    ),
    ("welcome", "zh-CN"): ("欢迎加入", "欢迎成为我们的客户！开通手机银行即可享受新客专属礼遇。"),
    ("welcome", "zh-Hant"): (
        "歡迎加入",
        "歡迎成為我們的客戶！啟用手機銀行即可享受新客戶專屬禮遇。",
    ),
    ("recommendation", "en"): (
        "Picked for you",
        "Based on how you bank with us, we have a few suggestions for you in the app.",
    ),
    ("recommendation", "zh-CN"): (
        "为您推荐",
        "根据您的使用习惯，我们在手机银行为您准备了专属推荐。",
    ),
    ("recommendation", "zh-Hant"): (
        "為您推薦",
        "根據您的理財習慣，我們已在手機銀行為您準備專屬推薦。",
    ),
    ("exclusive_service", "en"): (
        "Exclusive service",
        "As a valued customer you now have access to exclusive services and offers.",
    ),
    ("exclusive_service", "zh-CN"): ("尊享服务", "感谢您的长期信任，您已可享受专属服务与优惠。"),
    ("exclusive_service", "zh-Hant"): (
        "尊享服務",
        "感謝您一直以來的支持，您現可享用專屬服務及優惠。",
    ),
    # The offer is the cause's, in the template's locale (`RETENTION_OFFERS`).
    ("retention_offer", "en"): ("We are here for you", "{{ offer }}"),
    ("retention_offer", "zh-CN"): ("我们一直在您身边", "{{ offer }}"),
    ("retention_offer", "zh-Hant"): ("我們一直在您身邊", "{{ offer }}"),
    ("reward_credited", "en"): (
        "Points credited",
        "{{ points }} points were credited to your rewards account. Your balance is in the app.",
    ),
    ("reward_credited", "zh-CN"): (
        "积分到账",
        "{{ points }} 积分已存入您的积分账户，余额请在手机银行查看。",
    ),
    ("reward_credited", "zh-Hant"): (
        "積分已入賬",
        "{{ points }} 積分已存入您的積分賬戶，餘額請於手機銀行查閱。",
    ),
    ("referral_qualified", "en"): (
        "Your referral qualified",
        "Someone you referred has joined and qualified. Thank you!",
    ),
    ("referral_qualified", "zh-CN"): ("推荐成功", "您推荐的好友已成功开户并达标，感谢您的推荐！"),
    ("referral_qualified", "zh-Hant"): (
        "推薦成功",
        "您推薦的朋友已成功開戶並符合資格，感謝您的推薦！",
    ),
    ("birthday", "en"): ("Happy birthday", "Happy birthday from all of us at the bank!"),
    ("birthday", "zh-CN"): ("生日快乐", "祝您生日快乐，万事如意！"),
    ("birthday", "zh-Hant"): ("生日快樂", "祝您生日快樂，萬事如意！"),
    ("anniversary", "en"): (
        "Happy anniversary",
        "Thank you for {{ years }} year{{ 's' if years != 1 else '' }} with us.",
    ),
    ("anniversary", "zh-CN"): ("感谢相伴", "感谢您与我们相伴 {{ years }} 年。"),
    ("anniversary", "zh-Hant"): ("感謝同行", "感謝您與我們同行 {{ years }} 年。"),
}
# Probable cause -> template locale -> the retention offer (`{{ offer }}`).
RETENTION_OFFERS: dict[str, dict[str, str]] = {
    "service_dissatisfaction": {
        "en": "We are sorry about your recent experience. A service manager will call you, and your fees this month are waived.",
        "zh-CN": "对于您近期的不愉快体验我们深表歉意，服务经理将与您联系，并为您减免本月手续费。",
        "zh-Hant": "對於您近期的不愉快經驗，我們深表歉意。客戶服務經理將與您聯絡，並豁免您本月的手續費。",
    },
    "competitor_attraction": {
        "en": "Enjoy a preferential deposit rate for the next 6 months, just for you.",
        "zh-CN": "为您专享未来 6 个月的优惠存款利率。",
        "zh-Hant": "未來 6 個月，您可專享優惠存款利率。",
    },
    "financial_distress": {
        "en": "Facing a tight month? Ask us about flexible repayment and fee relief.",
        "zh-CN": "资金周转紧张？欢迎咨询灵活还款与费用减免方案。",
        "zh-Hant": "資金周轉緊張？歡迎查詢靈活還款及費用減免安排。",
    },
    "disengagement": {
        "en": "We miss you! Log in this week for a bonus of 200 reward points.",
        "zh-CN": "好久不见！本周登录手机银行即可获得 200 积分奖励。",
        "zh-Hant": "好久不見！本週登入手機銀行，即可獲贈 200 積分。",
    },
}
