"""A customer's story on one page: what each service knows of them, as dated lines, newest
first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.workbench.i18n import Formatter


@dataclass(frozen=True)
class Line:
    at: datetime
    kind: str  # stage, signal, ledger, notification, referral, task: the line's style
    what: str
    detail: str


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def explained(item: dict[str, Any], language: str) -> str:
    """The item's explanation in the viewer's language, else in English."""
    sentences = item.get("explanation") or {}
    return str(sentences.get(language) or sentences.get("en") or "")


def _lifecycle_line(fmt: Formatter, entry: dict[str, Any], language: str) -> Line:
    """A stage or tier change, or a churn signal raised, escalated or resolved."""
    at = datetime.fromisoformat(entry["occurred_at"])
    why = explained(entry, language) or entry.get("reason") or ""
    kind = entry["type"]
    if kind == "stage.changed":
        stage = fmt.term("stage", entry["stage"])
        if entry.get("previous_stage") is None:
            return Line(at, "stage", fmt.t("event.stage_first", stage=stage), why)
        previous = fmt.term("stage", entry["previous_stage"])
        return Line(at, "stage", fmt.t("event.stage_changed", previous=previous, stage=stage), why)
    if kind == "tier.changed":
        what = fmt.t(
            "event.tier_changed",
            previous=fmt.term("tier", entry.get("previous_tier")),
            tier=fmt.term("tier", entry["tier"]),
        )
        return Line(at, "stage", what, why)
    action = kind.removeprefix("churn_signal.")
    what = fmt.t(f"event.signal.{action}", cause=fmt.term("cause", entry.get("cause")))
    return Line(at, "signal", what, why)


def _standing(fmt: Formatter, profile: dict[str, Any], language: str) -> list[Line]:
    """The current stage since when, and the open signals, from the customer's lifecycle."""
    lines = []
    if since := _at(profile.get("since")):
        stage = fmt.term("stage", profile.get("stage"))
        strategy = (profile.get("strategy") or {}).get("description", "")
        lines.append(Line(since, "stage", fmt.t("event.stage", stage=stage), strategy))
    for signal in profile.get("open_signals", []):
        lines.append(
            Line(
                datetime.fromisoformat(signal["raised_at"]),
                "signal",
                fmt.t("event.signal", cause=fmt.term("cause", signal["cause"])),
                explained(signal, language),
            )
        )
    return lines


def of(
    fmt: Formatter,
    profile: dict[str, Any] | None,
    history: list[dict[str, Any]],
    ledger: list[dict[str, Any]],
    notifications: list[dict[str, Any]],
    referrals: list[dict[str, Any]],
    leads: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
) -> list[Line]:
    language = "zh-CN" if fmt.locale == "zh-CN" else "en"
    lines = [_lifecycle_line(fmt, entry, language) for entry in history]
    if not history and profile:
        # A lifecycle service without its history yet: where the customer stands now.
        lines += _standing(fmt, profile, language)
    for entry in ledger:
        amount = f"{entry['points']:+d}"
        if entry.get("cash"):
            amount += f" · {fmt.money(entry['cash'], entry.get('currency'))}"
        lines.append(
            Line(
                datetime.fromisoformat(entry["occurred_at"]),
                "ledger",
                fmt.t("event.ledger", rule=entry["rule"]),
                f"{amount} — {entry['reason']}",
            )
        )
    for note in notifications:
        reason = note.get("reason_code") or ""
        lines.append(
            Line(
                datetime.fromisoformat(note["occurred_at"]),
                "notification",
                fmt.t("event.notification", category=note["category"], status=note["status"]),
                " ".join(filter(None, [note.get("channel"), reason])),
            )
        )
    for referral in referrals:
        explanation = explained(referral, language)
        lines.append(
            Line(
                datetime.fromisoformat(referral["updated_at"]),
                "referral",
                fmt.t("event.referral", referee=referral["referee"], status=referral["status"]),
                explanation,
            )
        )
    for lead in leads:
        lines.append(
            Line(
                datetime.fromisoformat(lead["detected_at"]),
                "referral",
                fmt.t("event.lead", kind=fmt.term("lead", lead["lead_type"])),
                fmt.t(
                    "event.lead_detail",
                    counterparty=lead["lead_id"],
                    transactions=fmt.number(lead["transactions"]),
                    customers=fmt.number(lead["customers"]),
                ),
            )
        )
    for task in tasks:
        lines.append(
            Line(
                datetime.fromisoformat(task["occurred_at"]),
                "task",
                fmt.t(
                    "event.task",
                    kind=fmt.term("kind", task["kind"]),
                    status=fmt.term("status", task["status"]),
                ),
                " ".join(
                    filter(
                        None,
                        [
                            fmt.term("outcome", task["outcome"]) if task.get("outcome") else None,
                            task.get("note"),
                        ],
                    )
                ),
            )
        )
    return sorted(lines, key=lambda line: line.at, reverse=True)
