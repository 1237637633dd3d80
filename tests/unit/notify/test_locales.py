"""Templates chosen by language and script for any BCP 47 locale: Traditional Chinese for
zh-Hant and Hong Kong, Taiwan and Macao, Simplified for other Chinese, English for English and
for languages without templates; the default locale validated at start-up; every template in
every template locale; the template's locale on each notification."""

# ruff: noqa: RUF001  (full-width punctuation is right in Chinese text)

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from jinja2 import meta
from pydantic import ValidationError

from schemas.lifecycle import (
    ChurnCause,
    CustomerBirthday,
    Stage,
    StageChanged,
    Strategy,
    TenureAnniversary,
    Tier,
)
from schemas.notify import Category
from schemas.referral import LeadType, ReferralChanged
from schemas.rewards import EntryKind, LedgerEntryBooked
from services.notify import domain
from services.notify.config import NotifySettings
from services.notify.domain import (
    TEMPLATE_LOCALES,
    Message,
    NotifyRules,
    Profile,
    choose_template_locale,
    in_holdout,
    on_anniversary,
    on_birthday,
    on_ledger_entry,
    on_referral,
    on_stage_changed,
    render,
    schedule,
)
from services.notify.locales import language_and_script, template_locale
from services.notify.service import Preferences
from services.notify.templates import RETENTION_OFFERS, TEMPLATES
from services.runtime.api import load_api
from services.runtime.settings import RuntimeSettings
from tests.credentials import CHANNEL

RULES = NotifyRules()
T = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai and Hong Kong
# Characters only Simplified Chinese writes so: none may appear in a Traditional text.
SIMPLIFIED_ONLY = set(
    "们户银为欢专积账余务优这个来对经将联减费资紧询还灵获见录乐万与谢荐达开并礼机"
)


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("zh-CN", "zh-CN"),
        ("zh-SG", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-Hans-HK", "zh-CN"),
        ("zh-HK", "zh-Hant"),
        ("zh-TW", "zh-Hant"),
        ("zh-MO", "zh-Hant"),
        ("zh-Hant", "zh-Hant"),
        ("zh-Hant-CN", "zh-Hant"),
        ("zh-Hant-HK", "zh-Hant"),
        ("en", "en"),
        ("en-GB", "en"),
        ("en-Latn-US", "en"),
        ("de-AT", "en"),
        ("cs-CZ", "en"),
        ("sr-Latn-RS", "en"),
        ("fr", "en"),
    ],
)
def test_templates_are_chosen_by_language_and_script(locale: str, expected: str) -> None:
    assert choose_template_locale(locale, RULES) == expected


def test_a_customer_without_a_locale_gets_the_default_setting() -> None:
    assert choose_template_locale(None, RULES) == "zh-CN"
    assert choose_template_locale(None, NotifyRules(default_locale="zh-HK")) == "zh-Hant"
    assert choose_template_locale(None, NotifyRules(default_locale="de-AT")) == "en"


def test_the_region_implies_the_script_only_when_the_tag_names_none() -> None:
    assert language_and_script("zh-TW") == ("zh", "Hant")
    assert language_and_script("zh-Hans-TW") == ("zh", "Hans")
    assert language_and_script("zh-CN") == ("zh", "Hans")
    assert language_and_script("de-AT") == ("de", None)


def test_a_language_is_added_by_adding_its_templates() -> None:
    assert template_locale("de-AT", TEMPLATE_LOCALES | {"de"}) == "de"
    assert template_locale("de-CH", TEMPLATE_LOCALES | {"de"}) == "de"
    assert template_locale("fr-FR", TEMPLATE_LOCALES | {"de"}) == "en"


def test_two_template_locales_of_one_language_and_script_are_refused() -> None:
    with pytest.raises(ValueError, match="same language and script"):
        template_locale("zh-TW", {"zh-Hant", "zh-TW", "en"})


def test_the_default_locale_is_any_bcp47_tag_and_a_bad_one_fails_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAPPORT_NOTIFY_DEFAULT_LOCALE", "zh-hant-hk")
    assert NotifySettings().rules().default_locale == "zh-Hant-HK"
    monkeypatch.setenv("RAPPORT_NOTIFY_DEFAULT_LOCALE", "zh_HK")
    with pytest.raises(ValidationError, match="RAPPORT_NOTIFY_DEFAULT_LOCALE: 'zh_HK' is not"):
        NotifySettings()
    with pytest.raises(ValidationError, match="not a BCP 47 language tag"):
        NotifyRules(default_locale="chinese, traditional")


def test_every_template_is_written_in_every_template_locale() -> None:
    assert {"zh-CN", "zh-Hant", "en"} <= TEMPLATE_LOCALES
    names = {name for name, _ in TEMPLATES}
    assert set(TEMPLATES) == {(name, locale) for name in names for locale in TEMPLATE_LOCALES}
    for cause, offers in RETENTION_OFFERS.items():
        assert set(offers) == TEMPLATE_LOCALES, cause


def test_traditional_texts_are_traditional_and_not_the_simplified_ones() -> None:
    texts = [(k, "".join(v)) for k, v in TEMPLATES.items() if k[1] == "zh-Hant"]
    texts += [(c, o["zh-Hant"]) for c, o in RETENTION_OFFERS.items()]
    for key, text in texts:
        assert not SIMPLIFIED_ONLY & set(text), (key, SIMPLIFIED_ONLY & set(text))
    for name, _ in TEMPLATES:
        assert TEMPLATES[(name, "zh-Hant")] != TEMPLATES[(name, "zh-CN")]


def treated_customer() -> str:
    return next(f"C{n}" for n in range(1000) if not in_holdout(f"C{n}", RULES.holdout_share))


def stage_changed(stage: Stage, cause: ChurnCause | None = None) -> StageChanged:
    customer = treated_customer()
    return StageChanged(
        event_id=f"s-{stage}-{cause}",
        type="stage.changed",
        occurred_at=T,
        customer_id=customer,
        stage=stage,
        tier=Tier.MASS,
        reason="test",
        churn_score=0.7 if cause else 0.1,
        churn_causes=[cause] if cause else [],
        probable_cause=cause,
        strategy=Strategy.for_stage(stage),
        balance_avg_30d="100.00",
    )


def messages_the_rules_send() -> list[Message]:
    """One message of each kind the rules send, with the context they give it."""
    profile = Profile(customer_id=treated_customer())
    stages = [stage_changed(s) for s in (Stage.ACQUISITION, Stage.GROWTH, Stage.MATURITY)]
    stages += [stage_changed(Stage.AT_RISK, cause) for cause in ChurnCause]
    decisions = [on_stage_changed(profile, event, RULES) for event in stages]
    decisions += [
        on_ledger_entry(
            LedgerEntryBooked(
                event_id="l1",
                type="ledger_entry.booked",
                occurred_at=T,
                entry_id="l1",
                customer_id="C1",
                kind=EntryKind.CREDIT,
                points=200,
                rule="loyalty.anniversary",
                reason="x",
                source_event_id="m1",
                booked_at=T,
                points_balance=200,
            )
        ),
        on_referral(
            ReferralChanged(
                event_id="r1",
                type="referral.qualified",
                occurred_at=T,
                referral_id="r1",
                referrer="C1",
                referee="C2",
                via="code",
                lead_type=LeadType.RETAIL,
            )
        ),
        on_anniversary(
            TenureAnniversary(
                event_id="a1",
                type="tenure.anniversary",
                occurred_at=T,
                customer_id="C1",
                years=3,
                relationship_start=T.replace(year=2023),
                stage=Stage.MATURITY,
                tier=Tier.MASS,
            )
        ),
        on_birthday(
            CustomerBirthday(
                event_id="b1",
                type="customer.birthday",
                occurred_at=T,
                customer_id="C1",
                stage=Stage.GROWTH,
                tier=Tier.MASS,
            )
        ),
    ]
    return [m for d in decisions for m in d.messages]


def test_every_template_renders_in_every_locale_with_the_context_the_rules_give_it() -> None:
    sent = messages_the_rules_send()
    assert {m.template for m in sent} == {name for name, _ in TEMPLATES}
    for message in sent:
        for locale in TEMPLATE_LOCALES:
            _, body = TEMPLATES[(message.template, locale)]
            needed = meta.find_undeclared_variables(domain._ENV.parse(body))
            assert needed <= set(message.context), (message.template, locale)
            subject, text = render(message.template, locale, message.context)
            assert subject and text.strip() and "{" not in text, (message.template, locale)


def test_retention_offers_are_in_the_templates_locale() -> None:
    event = stage_changed(Stage.AT_RISK, ChurnCause.SERVICE_DISSATISFACTION)
    (message,) = on_stage_changed(Profile(customer_id=event.customer_id), event, RULES).messages
    offers = RETENTION_OFFERS["service_dissatisfaction"]
    for locale in TEMPLATE_LOCALES:
        assert render(message.template, locale, message.context)[1] == offers[locale]


def test_a_hong_kong_customer_gets_traditional_chinese_with_the_template_locale() -> None:
    event = stage_changed(Stage.AT_RISK, ChurnCause.DISENGAGEMENT)
    profile = Profile(customer_id=event.customer_id, locale="zh-hk")
    (message,) = on_stage_changed(profile, event, RULES).messages
    out = schedule(message, profile, [], RULES, event.event_id)
    assert out.type == "notification.scheduled"
    assert (out.locale, out.template_locale) == ("zh-HK", "zh-Hant")
    assert (out.subject, out.body) == (
        "我們一直在您身邊",
        "好久不見！本週登入手機銀行，即可獲贈 200 積分。",
    )


def test_an_austrian_customer_gets_english_and_keeps_their_own_locale() -> None:
    message = Message("C1", Category.ENGAGEMENT, "recommendation", {}, "stage:growth", T)
    out = schedule(message, Profile(customer_id="C1", locale="de-AT"), [], RULES, "e1")
    assert (out.locale, out.template_locale, out.subject) == ("de-AT", "en", "Picked for you")


def test_a_customer_without_a_locale_is_written_to_in_the_default() -> None:
    message = Message("C1", Category.GREETING, "birthday", {}, "birthday:2026", T)
    out = schedule(message, Profile(customer_id="C1"), [], RULES, "e1")
    assert (out.locale, out.template_locale, out.subject) == ("zh-CN", "zh-CN", "生日快乐")
    taiwan = NotifyRules(default_locale="zh-TW")
    out = schedule(message, Profile(customer_id="C1"), [], taiwan, "e1")
    assert (out.locale, out.template_locale, out.subject) == ("zh-TW", "zh-Hant", "生日快樂")


def test_a_suppressed_notification_names_the_template_locale_chosen() -> None:
    message = Message("C1", Category.GREETING, "birthday", {}, "birthday:2026", T)
    profile = Profile(customer_id="C1", locale="zh-TW", opted_out=["push", "sms"])
    out = schedule(message, profile, [], RULES, "e1")
    assert (out.type, out.reason_code) == ("notification.suppressed", "no_channel")
    assert (out.locale, out.template_locale, out.body) == ("zh-TW", "zh-Hant", None)


def test_preferences_take_any_bcp47_locale_in_its_canonical_case() -> None:
    assert Preferences(locale="zh-hant-hk").locale == "zh-Hant-HK"
    assert Preferences(locale="cs-CZ").locale == "cs-CZ"
    with pytest.raises(ValidationError):
        Preferences(locale="en_GB")


def test_the_preferences_api_answers_422_for_a_malformed_locale(tmp_path: Path) -> None:
    settings = RuntimeSettings(home=tmp_path)
    client = TestClient(load_api("notify", settings), headers=CHANNEL)
    answer = client.put("/customers/C1/preferences", json={"locale": "zh_HK"})
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "locale"] and "BCP 47" in error["msg"]
