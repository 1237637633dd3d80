"""Writes an `Evaluation` down: `report.md` for people, `report.json` for machines, and PNG
charts (stage flow over time, lead-time histogram, referral funnel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI
import matplotlib.pyplot as plt

from services.simulator.evaluate import STAGES, Evaluation
from services.simulator.heldout import HeldOut, RunResult, shown

STAGE_COLOURS = {
    "acquisition": "#9ecae1",
    "growth": "#3182bd",
    "maturity": "#08519c",
    "at_risk": "#fd8d3c",
    "dormant": "#bdbdbd",
    "churned": "#636363",
}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def _num(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:g}{unit}"


def headline(evaluation: Evaluation) -> list[tuple[str, str]]:
    """The figures the demo prints: (label, value)."""
    rows: list[tuple[str, str]] = []
    churn = evaluation.churn
    if churn is None:
        rows.append(("churn detection", "no lifecycle outputs"))
    else:
        rows += [
            (
                "churners detected (recall)",
                f"{churn.detected}/{churn.churners} ({_pct(churn.recall)})",
            ),
            (
                "at-risk flags that were right (precision)",
                f"{churn.right_flags}/{churn.flags} ({_pct(churn.precision)})",
            ),
            ("probable cause right", _pct(churn.cause_accuracy)),
            (
                "lead time, median / 10th percentile",
                f"{_num(churn.lead_time_days_median, ' d')} / "
                f"{_num(churn.lead_time_days_p10, ' d')}",
            ),
            ("false alarms per 1,000 stable customers", _num(churn.false_alarms_per_1000_stable)),
            (
                "customers who keep transacting flagged at risk (share per year)",
                f"{churn.transacting_flagged}/{churn.transacting_customers} "
                f"({_pct(churn.transacting_flagged_share_per_year)} a year)",
            ),
        ]
    feeds = evaluation.feeds
    if feeds is not None:
        rows += [
            (
                "silent customers with postings found inactive",
                f"{feeds.quiet_flagged_inactive}/{feeds.quiet_with_postings} "
                f"({_pct(feeds.quiet_recall)})",
            ),
            (
                "competitor alarms on customers who only paid bills elsewhere",
                str(feeds.competitor_alarms_without_money_moved),
            ),
            (
                "bill movers with payments_moved 14+ days before closing",
                f"{feeds.bill_movers_flagged_14_days_before}/{feeds.bill_movers} "
                f"({_pct(feeds.bill_movers_recall)})",
            ),
        ]
    referral = evaluation.referral
    if referral.running:
        f = referral.figures
        rows += [
            (
                "conversions attributed to the true introducer",
                f"{f['conversions_attributed_to_the_true_introducer']}/{f['true_conversions']}",
            ),
            ("converted counterparties found as leads first", _pct(f.get("lead_recall"))),
            ("attributions with no true referrer", str(f["attributions_without_a_true_referrer"])),
            (
                "planted fraud referees rejected or held",
                ", ".join(
                    f"{k} {v}/{f['fraud_referees'][k]}"
                    for k, v in f["fraud_referees_caught"].items()
                ),
            ),
            (
                "planted fraud referees rejected / held / reversed",
                ", ".join(
                    f"{label} {row['rejected']}/{row['held']}/{row['reversed']} "
                    f"of {row['referees']}"
                    for label, row in f.get("fraud_outcomes", {}).items()
                ),
            ),
            (
                "genuine referrals held or rejected",
                f"{f.get('genuine_referrals_held_or_rejected', 0)}/"
                f"{f.get('genuine_referrals', 0)} "
                f"({_pct(f.get('genuine_referrals_held_or_rejected_share'))})",
            ),
            (
                "leads per 1,000 customers per month",
                _num(f.get("leads_per_1000_customers_per_month")),
            ),
        ]
        if "lead_conversion_all" in f:
            rows.append(
                (
                    "leads converted within 90 days of a weekly list: top 10 % / all (lift)",
                    f"{_pct(f['lead_conversion_top_10_percent'])} / "
                    f"{_pct(f['lead_conversion_all'])} ({_num(f['lead_lift_top_10_percent'])})",
                )
            )
    else:
        rows.append(("referral", "not running yet"))
    rewards = evaluation.rewards
    if rewards.running:
        f = rewards.figures
        rows += [
            (
                "qualified referrals welcomed in the ledger",
                f"{f['welcome_credits (one per qualified referral)']}/{f['qualified_referrals']}",
            ),
            (
                "maturity and anniversary rewards booked",
                f"{f['maturity_rewards']}/{f['customers_that_reached_maturity']}, "
                f"{f['anniversary_rewards']}/{f['tenure_anniversaries']}",
            ),
            ("ledger entries published twice", str(f["entries_published_twice"])),
        ]
    else:
        rows.append(("rewards", "not running yet"))
    notify = evaluation.notify
    if notify.running:
        f = notify.figures
        rows += [
            (
                "notifications scheduled (deferred by quiet hours)",
                f"{f['notifications_scheduled']} ({f['deferred_by_quiet_hours']})",
            ),
            ("RM tasks", str(f["rm_tasks"])),
            ("notify policy violations", str(f["policy_violations"])),
        ]
    else:
        rows.append(("notify", "not running yet"))
    matches = evaluation.dead_letters.matches
    rows.append(
        (
            "dead letters as expected",
            ", ".join(f"{s}: {'yes' if ok else 'NO'}" for s, ok in sorted(matches.items()))
            or "no dead letters read",
        )
    )
    refused = evaluation.dead_letters.outputs_refused
    rows.append(
        (
            "Rapport outputs refused by their consumers",
            "; ".join(f"{k} {v}" for k, v in refused.items()) or "none",
        )
    )
    return rows


def markdown(evaluation: Evaluation, charts: list[str]) -> str:
    e = evaluation
    out = [
        "# Rapport evaluation",
        "",
        f"Simulated population: {e.customers} customers over {e.days} days (seed {e.seed}, "
        f"profile {e.profile}). "
        f"Outputs dated from {e.evaluate_from.date()} on are scored; earlier ones belong to the "
        "initial load. Definitions: docs/simulator.md.",
        "",
        "## Headline",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in headline(e)],
        "",
    ]
    if e.churn is not None:
        c = e.churn
        out += [
            "## Churn detection by cause",
            "",
            "| cause | churners | detected | recall | flagged with this cause | precision "
            "| cause right |",
            "|---|---|---|---|---|---|---|",
            *[
                f"| {cause} | {s.churners} | {s.detected} | {_pct(s.recall)} "
                f"| {s.flagged_with_cause} | {_pct(s.precision)} | {s.cause_right} |"
                for cause, s in c.by_cause.items()
            ],
            "",
            f"Stable customers: {c.stable_customers}; false alarms: {c.false_alarms}.",
            "",
        ]
    if e.feeds is not None:
        out += [
            "## Real feeds: postings, bills, standing orders",
            "",
            "| figure | value |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in e.feeds.model_dump().items()],
            "",
        ]
    if e.stages is not None and e.stages.weeks:
        last = len(e.stages.weeks) - 1
        out += [
            "## Stages at the end of the period",
            "",
            "| stage | customers |",
            "|---|---|",
            *[f"| {stage} | {e.stages.counts[stage][last]} |" for stage in STAGES],
            "",
        ]
    for name, section in (("Referral", e.referral), ("Rewards", e.rewards), ("Notify", e.notify)):
        out += [f"## {name}", ""]
        if not section.running:
            out += [section.note, ""]
            continue
        out += ["| figure | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in section.figures.items()]
        out.append("")
    d = e.dead_letters
    out += [
        "## Dead letters",
        "",
        f"Expected per consuming service: {d.expected}",
        "",
        *[
            f"- {service}: {reasons} ({'as expected' if d.matches[service] else 'DIFFERENT'})"
            for service, reasons in sorted(d.by_service.items())
        ],
        "",
        "## Outputs read",
        "",
        *[f"- {topic}: {n}" for topic, n in e.outputs.items()],
        "",
    ]
    if charts:
        out += ["## Charts", "", *[f"![{c}]({c})" for c in charts], ""]
    return "\n".join(out)


def _save(fig: Any, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _stage_chart(evaluation: Evaluation, path: Path) -> bool:
    stages = evaluation.stages
    if stages is None or not stages.weeks:
        return False
    fig, ax = plt.subplots(figsize=(10, 5))
    x = range(len(stages.weeks))
    ax.stackplot(
        x,
        *[stages.counts[s] for s in STAGES],
        labels=STAGES,
        colors=[STAGE_COLOURS[s] for s in STAGES],
    )
    step = max(len(stages.weeks) // 12, 1)
    ax.set_xticks(list(x)[::step], stages.weeks[::step], rotation=45, ha="right")
    ax.set_ylabel("customers")
    ax.set_title("Customers by lifecycle stage, end of each week")
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path)


def _lead_time_chart(evaluation: Evaluation, path: Path) -> bool:
    churn = evaluation.churn
    if churn is None or not churn.lead_times_days:
        return False
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(churn.lead_times_days, bins=20, color="#fd8d3c")
    ax.set_xlabel("days from the first at-risk flag to closure")
    ax.set_ylabel("churners")
    ax.set_title("Churn warning lead time")
    return _save(fig, path)


def _funnel_chart(evaluation: Evaluation, path: Path) -> bool:
    referral = evaluation.referral
    if not referral.running:
        return False
    by_type = referral.figures.get("events_by_type", {})
    steps = ["lead.detected", "referral.attributed", "referral.qualified"]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(steps, [by_type.get(s, 0) for s in steps], color="#3182bd")
    ax.set_title("Referral funnel")
    return _save(fig, path)


def write(evaluation: Evaluation, directory: Path) -> Path:
    """Writes the report files; returns the Markdown file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    charts = [
        name
        for name, draw in (
            ("stage-flow.png", _stage_chart),
            ("lead-time.png", _lead_time_chart),
            ("referral-funnel.png", _funnel_chart),
        )
        if draw(evaluation, directory / name)
    ]
    (directory / "report.json").write_text(evaluation.model_dump_json(indent=1))
    path = directory / "report.md"
    path.write_text(markdown(evaluation, charts))
    return path


def held_out_markdown(held: HeldOut) -> str:
    """The held-out evaluation for people: every headline figure per run, mean and worst."""
    labels = [r.label for r in held.runs]
    arrows = {"higher": "↑", "lower": "↓", None: ""}
    out = [
        "# Rapport held-out evaluation",
        "",
        f"Rule parameters are chosen on seeds {_seeds(held.tuning_seeds)} only; these figures "
        f"are on seeds {_seeds(held.seeds)} of the profiles {', '.join(held.profiles)}: "
        f"{held.customers:,} customers asked for in each, over {held.days} days, simulated and "
        "replayed in-process through the lifecycle and referral rules, then scored against the "
        "truth. Worst: the lowest value where higher is better (↑), the highest where lower is "
        "better (↓); volumes (no arrow) have none. Definitions: docs/simulator.md.",
        "",
        "| figure | better | " + " | ".join(labels) + " | mean | worst |",
        "|---|---|" + "---|" * len(labels) + "---|---|",
    ]
    for f in held.figures:
        values = " | ".join(shown(v, f.unit) for v in f.values)
        worst = shown(f.worst, f.unit) if f.better else ""
        out.append(
            f"| {f.name} | {arrows[f.better]} | {values} | {shown(f.mean, f.unit)} | {worst} |"
        )
    out += [
        "",
        "## Runs",
        "",
        "| run | customers (with conversions and fraud) | valid events | seconds |",
        "|---|---|---|---|",
        *[f"| {r.label} | {r.customers:,} | {r.events:,} | {r.seconds:.0f} |" for r in held.runs],
        "",
        f"All runs took {held.seconds:.0f} s. Each run's own report: "
        + ", ".join(f"[{r.label}](runs/{_directory(r.label)}/report.md)" for r in held.runs)
        + ".",
        "",
    ]
    return "\n".join(out)


def _seeds(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def _directory(label: str) -> str:
    return label.replace(" ", "-")


def write_held_out(held: HeldOut, results: list[RunResult], directory: Path) -> Path:
    """`report.md` and `report.json` of the held-out evaluation, and each run's own report
    under `runs/`; returns the Markdown file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    for result in results:
        write(result.evaluation, directory / "runs" / _directory(result.label))
    (directory / "report.json").write_text(held.model_dump_json(indent=1))
    path = directory / "report.md"
    path.write_text(held_out_markdown(held))
    return path
