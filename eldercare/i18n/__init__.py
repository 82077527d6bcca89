"""The one message catalogue of eldercare: every text a person reads, in every language we speak.

One JSON file per language next to this module (``en.json``, ``zh-CN.json``), each a flat map
from a message key to a template with named ``{placeholders}``. The API's errors, the alert
titles and summaries the engine writes, the detectors' explanations, the e-mails and every label
of the web consoles (served to the browser as ``/web/i18n.js``) come from these files, so adding
a language is adding one file (see docs/development.md, "Adding a language").

A key missing in one language falls back to English, so a message is never lost, only
untranslated; ``tests/test_i18n.py`` keeps the files complete and their placeholders equal.
This module imports nothing else of eldercare: models, platform and simulators may all use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DEFAULT_LOCALE = "zh-CN"  # the care workers read Chinese first
FALLBACK = "en"  # the language every key must exist in
PLACEHOLDER = re.compile(r"\{([a-z_][a-z_0-9]*)\}")


def _discover() -> tuple[str, ...]:
    """Every catalogue file's language, the default first."""
    found = sorted(p.stem for p in HERE.glob("*.json"))
    return tuple(sorted(found, key=lambda loc: (loc != DEFAULT_LOCALE, loc)))


LOCALES: tuple[str, ...] = _discover()


@cache
def catalogue(locale: str) -> Mapping[str, str]:
    """The messages of one language (read once); unknown languages have none."""
    if locale not in LOCALES:
        return {}
    data = json.loads((HERE / f"{locale}.json").read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}


def supported(locale: str) -> str | None:
    """The catalogue language a tag names (``zh``, ``zh-cn``, ``en-GB`` ...), or None."""
    tag = locale.strip().lower()
    for loc in LOCALES:
        if tag == loc.lower():
            return loc
    primary = tag.split("-")[0]
    return next((loc for loc in LOCALES if loc.lower().split("-")[0] == primary), None)


def negotiate(accept_language: str | None) -> str:
    """The language of an ``Accept-Language`` header: the supported one of the highest weight
    (``q``; the first listed among equals), never one weighted ``q=0`` (not acceptable)."""
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, *params = part.split(";")
        q = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0  # a weight we cannot read: as if not acceptable
        loc = supported(tag)
        if loc and 0 < q <= 1:
            ranked.append((-q, i, loc))
    return min(ranked)[2] if ranked else DEFAULT_LOCALE


def has(key: str) -> bool:
    return key in catalogue(FALLBACK)


def t(key: str, locale: str = DEFAULT_LOCALE, /, **fields: Any) -> str:
    """The message ``key`` in ``locale`` with its placeholders filled in.

    A missing field leaves its placeholder as written rather than losing the message."""
    template = catalogue(locale).get(key) or catalogue(FALLBACK).get(key) or key
    return PLACEHOLDER.sub(lambda m: str(fields[m[1]]) if m[1] in fields else m[0], template)


def word(value: str, locale: str) -> str:
    """A value shown inside a message (a resource kind, a role, an action): ``word.<value>`` if
    the catalogue has it, else the value as it is (ids and names are not translated)."""
    key = "word." + value.replace(" ", "_")
    return t(key, locale) if has(key) else value


def texts(key: str, /, **fields: Any) -> dict[str, str]:
    """The message in every language, for texts stored or sent before anyone reads them
    (alert summaries, e-mails): ``{"en": ..., "zh-CN": ..., ...}``."""
    return {loc: t(key, loc, **fields) for loc in LOCALES}


def localized(render: Callable[[str], str]) -> dict[str, str]:
    """``render(locale)`` for every language: for texts built of several messages."""
    return {loc: render(loc) for loc in LOCALES}
