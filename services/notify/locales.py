"""Which templates serve a customer's locale: chosen by language and script, never by region.

A customer's locale is any BCP 47 tag (`zh-Hant-HK`, `de-AT`, `en-GB`). Templates are kept under
a few template locales (`zh-CN`, `zh-Hant`, `en`). Both are reduced to their language and script:
the script the tag names, or else the one its language writes in that region (`LIKELY_SCRIPTS`,
from CLDR's likely subtags). `zh-HK` is then Chinese in Traditional characters, like the
`zh-Hant` templates; `zh-SG` is Chinese in Simplified ones, like `zh-CN`. A language without
templates gets English. Adding a language is adding its templates: nothing here changes, unless
the language is written in more than one script.
"""

from __future__ import annotations

import functools
from collections.abc import Set

# The script a language is written in when the tag names none: by region, then for any other
# region (None). Only languages written in more than one script need a row.
LIKELY_SCRIPTS: dict[tuple[str, str | None], str] = {
    ("zh", None): "Hans",
    ("zh", "HK"): "Hant",
    ("zh", "MO"): "Hant",
    ("zh", "TW"): "Hant",
}
# For a language the bank has no templates in.
FALLBACK = "en"


def language_and_script(tag: str) -> tuple[str, str | None]:
    """The language of a BCP 47 tag and its script, stated or likely (`zh-TW` -> zh, Hant)."""
    subtags = tag.split("-")
    language = subtags[0].lower()
    script = region = None
    rest = subtags[1:]
    # Extended language subtags (zh-yue-HK) come first: three letters each.
    while rest and len(rest[0]) == 3 and rest[0].isalpha():
        rest = rest[1:]
    if rest and len(rest[0]) == 4 and rest[0].isalpha():
        script, rest = rest[0].title(), rest[1:]
    if rest and _is_region(rest[0]):
        region = rest[0].upper()
    if script is None:
        script = LIKELY_SCRIPTS.get((language, region), LIKELY_SCRIPTS.get((language, None)))
    return language, script


def _is_region(subtag: str) -> bool:
    # Two letters (HK) or three digits (419, Latin America).
    return (len(subtag) == 2 and subtag.isalpha()) or (len(subtag) == 3 and subtag.isdigit())


@functools.cache
def _by_language(available: frozenset[str]) -> dict[tuple[str, str | None], str]:
    index: dict[tuple[str, str | None], str] = {}
    for template_locale in sorted(available):
        key = language_and_script(template_locale)
        if key in index:
            raise ValueError(
                f"template locales {index[key]!r} and {template_locale!r} are the same language "
                "and script: keep one"
            )
        index[key] = template_locale
    return index


def template_locale(tag: str, available: Set[str], fallback: str = FALLBACK) -> str:
    """The template locale, of those `available`, for a customer's BCP 47 locale: the one of
    the same language and script; else the language's one that implies no script (`en` serves
    `en-Latn-GB`); else `fallback`."""
    index = _by_language(frozenset(available))
    language, script = language_and_script(tag)
    if (language, script) in index:
        return index[(language, script)]
    return index.get((language, None), fallback)
