"""The workbench's two languages: which one a request gets, the pages' words, and dates and
amounts formatted for the viewer (Babel's CLDR data: the bank's users read 2026年12月7日 and
¥12,345.60, or Dec 7, 2026 and CN¥12,345.60)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal, format_percent

LOCALES = ("zh-CN", "en")


def negotiate(accept_language: str | None, chosen: str | None, default: str) -> str:
    """The locale the viewer chose on the page, else the first of the browser's
    Accept-Language the workbench has (zh, zh-Hans, zh-CN... are zh-CN), else `default`."""
    if chosen in LOCALES:
        return chosen
    ranked: list[tuple[float, str]] = []
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if quality > 0:  # q=0: "not this one"
            ranked.append((quality, tag.strip().lower()))
    for _, tag in sorted(ranked, key=lambda r: -r[0]):
        traditional = tag.startswith("zh-hant") or tag in ("zh-tw", "zh-hk", "zh-mo")
        if tag.startswith("zh") and not traditional:
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return default


def zone(name: str | None, default: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a directory: OSError
        return ZoneInfo(default)


class Formatter:
    """Dates, amounts and words in one viewer's locale and time zone."""

    def __init__(self, locale: str, time_zone: ZoneInfo, currency: str) -> None:
        self.locale = locale
        self.babel = locale.replace("-", "_")
        self.time_zone = time_zone
        self.currency = currency

    def t(self, key: str, **values: object) -> str:
        text = MESSAGES[self.locale].get(key) or MESSAGES["en"].get(key) or key
        return text.format(**values) if values else text

    def when(self, value: datetime | str | None) -> str:
        if value is None or value == "":
            return "—"
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return format_datetime(moment, "medium", tzinfo=self.time_zone, locale=self.babel)

    def money(self, value: Decimal | str | float | None, currency: str | None = None) -> str:
        if value is None:
            return "—"
        return format_currency(Decimal(str(value)), currency or self.currency, locale=self.babel)

    def number(self, value: int | float | Decimal | None) -> str:
        return "—" if value is None else format_decimal(value, locale=self.babel)

    def percent(self, value: float | None) -> str:
        return "—" if value is None else format_percent(value, "#,##0.0%", locale=self.babel)

    def term(self, kind: str, value: str | None) -> str:
        """A domain value (a stage, a tier, a cause, an outcome...) in the viewer's words."""
        if value is None:
            return "—"
        return MESSAGES[self.locale].get(f"{kind}.{value}") or value.replace("_", " ")


MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "app": "Rapport workbench",
        "nav.tasks": "My tasks",
        "nav.team": "Team",
        "nav.ops": "Operations",
        "nav.signout": "Sign out",
        "signin.title": "Sign in",
        "signin.credential": "API key or bearer token",
        "signin.help": "Use the token your bank's sign-in gave you (in development: an API key).",
        "signin.submit": "Sign in",
        "signin.refused": "Sign-in refused: {reason}",
        "signin.link_refused": "This sign-in link is not valid here (expired, or links are off).",
        "signed_in_as": "Signed in as {subject}",
        "language": "Language",
        "tasks.title": "My tasks",
        "tasks.none": "No open tasks. Well done.",
        "tasks.for": "Tasks of {rm}",
        "tasks.no_rm": "Your identity names no RM id, so no task list is yours.",
        "col.priority": "Priority",
        "col.due": "Due",
        "col.customer": "Customer",
        "col.tier": "Tier",
        "col.stage": "Stage",
        "col.cause": "Probable cause",
        "col.kind": "Task",
        "col.action": "Suggested action",
        "col.status": "Status",
        "col.outcome": "Outcome",
        "col.note": "Note",
        "col.when": "When",
        "col.what": "What",
        "col.detail": "Detail",
        "col.amount": "Amount",
        "col.assignee": "Assignee",
        "col.open": "Open",
        "col.queued": "Queued",
        "col.closed": "Closed",
        "col.treated": "Contacted",
        "col.holdout": "Holdout",
        "col.uplift": "Uplift",
        "col.customers": "Customers",
        "col.month": "Month",
        "col.campaign": "Campaign",
        "col.rule": "Rule",
        "col.boost": "Boost",
        "col.from": "From",
        "col.until": "Until",
        "col.who": "Who",
        "ops.campaigns": "Reward campaigns",
        "ops.no_campaigns": "No campaign yet.",
        "ops.active": "active",
        "ops.ended": "ended",
        "ops.manual": "Reward changes made by hand (latest 20)",
        "team.chart_table": "The figures",
        "col.service": "Service",
        "col.up": "Up",
        "col.accepted": "Accepted",
        "col.lag": "Lag",
        "col.dead_lettered": "Dead-lettered",
        "col.reason": "Reason",
        "outcome.record": "Record outcome",
        "outcome.saved": "Outcome recorded: {outcome}.",
        "customer.title": "Customer {customer}",
        "customer.overview": "Overview",
        "customer.timeline": "Timeline",
        "customer.signals": "Open churn signals",
        "customer.rewards": "Rewards",
        "customer.referrals": "Referrals",
        "customer.notifications": "Notifications",
        "customer.balance": "Total balance",
        "customer.avg30": "30-day average balance",
        "customer.tenure": "Tenure (days)",
        "customer.last_activity": "Last own activity",
        "customer.score": "Churn score",
        "customer.strategy": "Service strategy",
        "customer.none": "Nothing yet.",
        "customer.points": "Points",
        "customer.unknown": "No service knows this customer yet.",
        "event.stage": "Stage {stage} since",
        "event.signal": "Churn signal: {cause}",
        "event.stage_changed": "Stage: {previous} → {stage}",
        "event.stage_first": "Stage: {stage} (first)",
        "event.tier_changed": "Tier: {previous} → {tier}",
        "event.signal.raised": "Churn signal raised: {cause}",
        "event.signal.escalated": "Churn signal escalated: {cause}",
        "event.signal.resolved": "Churn signal resolved: {cause}",
        "event.lead": "Referral lead suggested: {kind}",
        "event.lead_detail": "{counterparty}: payments {transactions}, customers tied {customers}",
        "lead.retail": "a person",
        "lead.corporate": "a business",
        "event.ledger": "Ledger: {rule}",
        "event.notification": "Notification {category} ({status})",
        "event.task": "Task: {kind} ({status})",
        "event.referral": "Referral of {referee} ({status})",
        "team.title": "Team",
        "team.tasks": "Tasks per RM",
        "team.outcomes": "Outcomes",
        "team.overdue": "Open tasks past due: {count}",
        "team.uplift": "Retention of contacted customers against the holdout",
        "team.uplift_none": "No intervention has a known outcome yet.",
        "team.stages": "Customers by stage and tier",
        "team.stages_over_time": "Customers by stage at each month's end, per tier",
        "team.stages_over_time_none": "No stage change yet.",
        "team.chart_label": "{tier}: customers by stage, {first} to {last}",
        "ops.title": "Operations",
        "ops.workers": "Workers",
        "ops.dead_letters": "Dead letters by reason",
        "ops.none": "No dead letters.",
        "ops.broker_down": "Kafka did not answer",
        "ops.replay": "Replay",
        "ops.replay_n": "Replay {count} to the source topic",
        "ops.replayed": "{count} dead letters sent back to their source topics.",
        "col.per_second": "Records/s",
        "col.topic": "Topic",
        "col.sample": "Newest (where from, why)",
        "error.title": "Not possible",
        "error.403": "You may not see this: {detail}",
        "error.404": "Not found: {detail}",
        "error.csrf": "The form had expired or did not come from this page. Reload and try again.",
        "error.service": "A service did not answer ({service}): {detail}",
        "stage.acquisition": "acquisition",
        "stage.growth": "growth",
        "stage.maturity": "maturity",
        "stage.at_risk": "at risk",
        "stage.dormant": "dormant",
        "stage.churned": "churned",
        "tier.mass": "mass",
        "tier.affluent": "affluent",
        "tier.hnw": "high net worth",
        "priority.high": "high",
        "priority.normal": "normal",
        "priority.low": "low",
        "outcome.contacted": "contacted",
        "outcome.retained": "retained",
        "outcome.lost": "declined, leaving",
        "outcome.not_reachable": "unreachable",
        "status.open": "open",
        "status.queued": "queued",
        "status.closed": "closed",
        "cause.service_dissatisfaction": "service dissatisfaction",
        "cause.competitor_attraction": "competitor attraction",
        "cause.financial_distress": "financial distress",
        "cause.disengagement": "disengagement",
        "kind.retention_call": "retention call",
        "kind.introduction_request": "ask for an introduction",
        "kind.corporate_lead": "corporate lead",
        "action.service_dissatisfaction": "Call, hear the complaint out, fix it, and follow up within a week",
        "action.competitor_attraction": "Compare their rates and fees with the offer they got; make a retention offer",
        "action.financial_distress": "Offer a repayment plan or a fee waiver; do not sell",
        "action.disengagement": "Review their products with them and give a reason to use the account again",
        "action.introduction_request": "Ask the customer to introduce the counterparty they deal with",
        "action.corporate_lead": "Pass to the corporate banking team: a business the customer deals with",
        "yes": "yes",
        "no": "no",
    },
    "zh-CN": {
        "app": "Rapport 客户经理工作台",
        "nav.tasks": "我的任务",
        "nav.team": "团队",
        "nav.ops": "运维",
        "nav.signout": "退出登录",
        "signin.title": "登录",
        "signin.credential": "API 密钥或访问令牌",
        "signin.help": "请使用银行统一认证签发的令牌（开发环境可用 API 密钥）。",
        "signin.submit": "登录",
        "signin.refused": "登录被拒绝：{reason}",
        "signin.link_refused": "该登录链接无效（已过期或未启用登录链接）。",
        "signed_in_as": "当前用户：{subject}",
        "language": "语言",
        "tasks.title": "我的任务",
        "tasks.none": "暂无待办任务。",
        "tasks.for": "{rm} 的任务",
        "tasks.no_rm": "您的身份未关联客户经理编号，没有属于您的任务列表。",
        "col.priority": "优先级",
        "col.due": "截止时间",
        "col.customer": "客户",
        "col.tier": "客户层级",
        "col.stage": "生命周期阶段",
        "col.cause": "可能原因",
        "col.kind": "任务类型",
        "col.action": "建议行动",
        "col.status": "状态",
        "col.outcome": "跟进结果",
        "col.note": "备注",
        "col.when": "时间",
        "col.what": "事项",
        "col.detail": "详情",
        "col.amount": "金额",
        "col.assignee": "负责人",
        "col.open": "待办",
        "col.queued": "排队中",
        "col.closed": "已完成",
        "col.treated": "已联系",
        "col.holdout": "对照组",
        "col.uplift": "提升",
        "col.customers": "客户数",
        "col.month": "月份",
        "col.campaign": "活动",
        "col.rule": "规则",
        "col.boost": "加成",
        "col.from": "开始",
        "col.until": "结束",
        "col.who": "操作人",
        "ops.campaigns": "奖励活动",
        "ops.no_campaigns": "尚无活动。",
        "ops.active": "进行中",
        "ops.ended": "已结束",
        "ops.manual": "人工调整的奖励记录（最近20条）",
        "team.chart_table": "数据",
        "col.service": "服务",
        "col.up": "运行",
        "col.accepted": "已处理",
        "col.lag": "积压",
        "col.dead_lettered": "死信",
        "col.reason": "原因",
        "outcome.record": "记录跟进结果",
        "outcome.saved": "已记录跟进结果：{outcome}。",
        "customer.title": "客户 {customer}",
        "customer.overview": "概况",
        "customer.timeline": "时间线",
        "customer.signals": "未解除的流失信号",
        "customer.rewards": "奖励",
        "customer.referrals": "推荐",
        "customer.notifications": "通知",
        "customer.balance": "总余额",
        "customer.avg30": "近30天日均余额",
        "customer.tenure": "客户关系天数",
        "customer.last_activity": "最近一次主动交易",
        "customer.score": "流失评分",
        "customer.strategy": "服务策略",
        "customer.none": "暂无。",
        "customer.points": "积分",
        "customer.unknown": "尚无服务识别该客户。",
        "event.stage": "进入{stage}阶段",
        "event.signal": "流失信号：{cause}",
        "event.stage_changed": "阶段：{previous} → {stage}",
        "event.stage_first": "阶段：{stage}（首次）",
        "event.tier_changed": "层级：{previous} → {tier}",
        "event.signal.raised": "流失信号触发：{cause}",
        "event.signal.escalated": "流失信号升级：{cause}",
        "event.signal.resolved": "流失信号解除：{cause}",
        "event.lead": "推荐线索：{kind}",
        "event.lead_detail": "{counterparty}：{transactions}笔往来，关联{customers}位客户",
        "lead.retail": "个人",
        "lead.corporate": "企业",
        "event.ledger": "奖励台账：{rule}",
        "event.notification": "通知 {category}（{status}）",
        "event.task": "任务：{kind}（{status}）",
        "event.referral": "推荐 {referee}（{status}）",
        "team.title": "团队",
        "team.tasks": "各客户经理的任务",
        "team.outcomes": "跟进结果",
        "team.overdue": "逾期未办任务：{count}",
        "team.uplift": "已联系客户与对照组的留存对比",
        "team.uplift_none": "尚无已知结果的干预。",
        "team.stages": "各阶段、各层级客户数",
        "team.stages_over_time": "各层级每月末各阶段客户数",
        "team.stages_over_time_none": "尚无阶段变化。",
        "team.chart_label": "{tier}：各阶段客户数，{first}至{last}",
        "ops.title": "运维",
        "ops.workers": "处理进程",
        "ops.dead_letters": "死信（按原因）",
        "ops.none": "没有死信。",
        "ops.broker_down": "Kafka 未响应",
        "ops.replay": "重放",
        "ops.replay_n": "将 {count} 条重放到源主题",
        "ops.replayed": "已将 {count} 条死信发回源主题。",
        "col.per_second": "每秒记录数",
        "col.topic": "主题",
        "col.sample": "最新一条（来源、原因）",
        "error.title": "无法完成",
        "error.403": "无权查看：{detail}",
        "error.404": "未找到：{detail}",
        "error.csrf": "表单已过期或并非来自本页面，请刷新后重试。",
        "error.service": "服务未响应（{service}）：{detail}",
        "stage.acquisition": "获客期",
        "stage.growth": "成长期",
        "stage.maturity": "成熟期",
        "stage.at_risk": "流失风险期",
        "stage.dormant": "休眠期",
        "stage.churned": "已流失",
        "tier.mass": "大众客户",
        "tier.affluent": "富裕客户",
        "tier.hnw": "高净值客户",
        "priority.high": "高",
        "priority.normal": "中",
        "priority.low": "低",
        "outcome.contacted": "已联系",
        "outcome.retained": "已挽留",
        "outcome.lost": "拒绝，将流失",
        "outcome.not_reachable": "联系不上",
        "status.open": "待办",
        "status.queued": "排队中",
        "status.closed": "已完成",
        "cause.service_dissatisfaction": "服务不满",
        "cause.competitor_attraction": "竞争对手吸引",
        "cause.financial_distress": "财务困难",
        "cause.disengagement": "活跃度下降",
        "kind.retention_call": "挽留回访",
        "kind.introduction_request": "请求转介绍",
        "kind.corporate_lead": "对公线索",
        "action.service_dissatisfaction": "致电了解投诉并解决，一周内回访",
        "action.competitor_attraction": "对比他行报价与本行利率费用，提出挽留方案",
        "action.financial_distress": "提供还款计划或费用减免，不做营销",
        "action.disengagement": "与客户一起检视产品，给出重新使用账户的理由",
        "action.introduction_request": "请客户引荐其交易对手",
        "action.corporate_lead": "转对公团队：客户往来的企业",
        "yes": "是",
        "no": "否",
    },
}
