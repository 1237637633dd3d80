"""Every flag explained: one sentence an RM can read, in English and Simplified Chinese, from a
signal's evidence (its values against the customer's baseline, the rule and its threshold).
The evidence itself stays on the event for whoever wants the figures."""

# ruff: noqa: RUF001  (full-width punctuation is right in Chinese text)

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.lifecycle import SignalKind

Sentence = dict[str, str]  # locale -> text ("en", "zh-CN")


def _pct(share: Any, space: str = " ") -> str:
    return f"{float(share) * 100:.0f}{space}%"


def _inactivity(e: Mapping[str, Any]) -> Sentence:
    usual = e.get("usual_gap_days")
    gap_en = f"usually every {float(usual):.0f} days; " if usual else ""
    gap_zh = f"平时约每{float(usual):.0f}天一次；" if usual else ""
    threshold = e.get("threshold_days", 45)
    return {
        "en": f"no own transaction for {e.get('days_quiet')} days ({gap_en}rule: {threshold} days)",
        "zh-CN": f"已{e.get('days_quiet')}天无主动交易（{gap_zh}规则：{threshold}天）",
    }


def _drain(e: Mapping[str, Any]) -> Sentence:
    low = e.get("usual_monthly_low")
    if e.get("income") == "lasting_fall":
        return {
            "en": f"balance {e.get('balance')}, under its usual monthly low of {low}, while the "
            "regular income (salary or pension) came short twice running or stopped (rule: "
            "below the usual low once the income has fallen)",
            "zh-CN": f"余额{e.get('balance')}，低于平时月度低点{low}，且固定收入（工资或养老金）"
            "已连续两次减少或停发（规则：收入下降后低于平时低点）",
        }
    return {
        "en": f"balance {e.get('balance')}, down from a 30-day high of "
        f"{e.get('max_balance_30d')} and under half its usual monthly low of {low} "
        "(rule: half of both)",
        "zh-CN": f"余额{e.get('balance')}，低于30天内最高值{e.get('max_balance_30d')}及平时月度"
        f"低点{low}的一半（规则：均低于一半）",
    }


def _salary(e: Mapping[str, Any]) -> Sentence:
    last = str(e.get("last_paid_at", ""))[:10]
    return {
        "en": f"a regular payer (salary or pension) has paid nothing since {last} (rule: 45 days)",
        "zh-CN": f"固定来账（工资或养老金）自{last}起未再入账（规则：45天）",
    }


def _income_fell(e: Mapping[str, Any]) -> Sentence:
    amounts = " and ".join(e.get("last_amounts") or [])
    amounts_zh = "、".join(e.get("last_amounts") or [])
    threshold = e.get("threshold", "0.7")
    return {
        "en": f"the salary came short twice running ({amounts}, usually {e.get('usual_amount')}; "
        f"rule: below {_pct(threshold)} of the usual amount twice)",
        "zh-CN": f"工资连续两次减少（{amounts_zh}，平时{e.get('usual_amount')}；"
        f"规则：连续两次低于平时的{_pct(threshold, '')}）",
    }


def _competitor(e: Mapping[str, Any]) -> Sentence:
    why = ", ".join(e.get("why") or []) or "the customer's own money"
    return {
        "en": f"{e.get('moved_to_other_banks_7d')} moved to other banks within 7 days, "
        f"{_pct(e.get('share', 0))} of the balance (rule: 30 %; {why})",
        "zh-CN": f"7天内{e.get('moved_to_other_banks_7d')}转至他行，占余额"
        f"{_pct(e.get('share', 0), '')}（规则：30%；{why}）",
    }


def _payments(e: Mapping[str, Any]) -> Sentence:
    return {
        "en": f"{e.get('cancelled')} of {e.get('mandates_before')} standing orders and direct "
        f"debits cancelled within {e.get('window_days')} days, {_pct(e.get('share', 0))} "
        "weighted by how established they were (rule: half)",
        "zh-CN": f"{e.get('window_days')}天内取消了{e.get('mandates_before')}项定期转账和代扣中的"
        f"{e.get('cancelled')}项，按存续时间加权占{_pct(e.get('share', 0), '')}（规则：一半）",
    }


def _closure(e: Mapping[str, Any]) -> Sentence:
    return {
        "en": f"a {e.get('category')} product closed and not replaced within 30 days",
        "zh-CN": f"{e.get('category')}产品已关闭，30天内未办理同类产品",
    }


def _complaint(e: Mapping[str, Any]) -> Sentence:
    return {
        "en": f"{e.get('complaints_30d')} complaint(s) within 30 days",
        "zh-CN": f"30天内投诉{e.get('complaints_30d')}次",
    }


_SENTENCES: dict[SignalKind, Callable[[Mapping[str, Any]], Sentence]] = {
    SignalKind.INACTIVITY: _inactivity,
    SignalKind.BALANCE_DRAIN: _drain,
    SignalKind.SALARY_STOPPED: _salary,
    SignalKind.COMPETITOR_TRANSFER: _competitor,
    SignalKind.PAYMENTS_MOVED: _payments,
    SignalKind.PRODUCT_CLOSURE: _closure,
    SignalKind.COMPLAINT: _complaint,
    SignalKind.INCOME_FELL: _income_fell,
}


def explain_signal(kind: SignalKind, evidence: Mapping[str, Any]) -> Sentence:
    """The signal's evidence as a sentence, capitalised and ended."""
    sentence = _SENTENCES[kind](evidence)
    return {
        "en": sentence["en"][:1].upper() + sentence["en"][1:] + ".",
        "zh-CN": sentence["zh-CN"] + "。",
    }


def explain_at_risk(score: float, signals: list[tuple[SignalKind, Mapping[str, Any]]]) -> Sentence:
    """Why a customer is at risk: the churn score and each open signal's sentence."""
    parts = [_SENTENCES[kind](evidence) for kind, evidence in signals]
    return {
        "en": f"At risk (churn score {score:.2f}): " + "; ".join(p["en"] for p in parts) + ".",
        "zh-CN": f"存在流失风险（流失评分{score:.2f}）："
        + "；".join(p["zh-CN"] for p in parts)
        + "。",
    }
