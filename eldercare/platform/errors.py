"""The platform's exceptions: each becomes a 4xx answer whose message says what to fix, in the
caller's language (texts from the message catalogue, :mod:`eldercare.i18n`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eldercare import i18n

# Fields of an error message that name a kind of thing, a role or an action: shown as words of
# the reader's language (``word.<value>`` in the catalogue), where ids and names are not.
WORD_FIELDS = frozenset({"kind", "stream", "action", "role"})


# A field's pattern in words: a reader cannot use a regular expression. Pattern -> the catalogue key
# of what it asks for; the schemas name theirs with worded() (tests/test_i18n.py checks every one).
PATTERN_WORDS: dict[str, str] = {}


def worded(pattern: str, key: str) -> str:
    """``pattern``, for a schema's ``Field``; a value that does not match it is answered with
    the message ``key`` (``error.validation.pattern.<what>``), never with the pattern itself."""
    PATTERN_WORDS[pattern] = key
    return pattern


class PlatformError(Exception):
    """Base of the platform's errors."""


class ApiError(PlatformError):
    """A request the API refuses: HTTP status, a message key (``error.<key>`` in the catalogue,
    kept as it is in the audit log) and the fields its message is filled with.

    A 422 is answered in the validation shape (:func:`validation_body`) naming one field: ``at``,
    else the message's own ``field``, else ``body``."""

    def __init__(
        self,
        status: int,
        key: str,
        *,
        headers: dict[str, str] | None = None,
        at: str | None = None,
        **fields: Any,
    ):
        super().__init__(key)
        self.status = status
        self.key = key
        self.fields = fields
        self.headers = headers
        self.at = at

    def message(self, locale: str) -> str:
        return message(self.key, locale, **self.fields)

    def body(self, locale: str) -> dict[str, Any]:
        """The JSON answer: ``{"detail"}``, and for a 422 the fields one by one (``errors``) too."""
        text = self.message(locale)
        if self.status != 422:
            return {"detail": text}
        field = self.at or str(self.fields.get("field") or "body")
        return validation_body([refusal(field, self.key, text)], locale)


def refusal(field: str, key: str, text: str) -> dict[str, str]:
    """A 422 the code raised (not pydantic), as one problem of :func:`validation_body`: the type
    is the key's last words (``invalid.since_until`` -> ``since_until``, ``webhook.internal`` ->
    ``webhook_internal``), the message the text less a leading ``<field>:`` (``detail`` names it)."""
    kind = key.removeprefix("invalid.").replace(".", "_")
    for colon in (": ", "："):
        text = text.removeprefix(f"{field}{colon}")
    return {"field": field, "message": text, "type": kind}


def message(key: str, locale: str, **fields: Any) -> str:
    """The API message ``error.<key>`` in ``locale``, kinds, roles and actions translated."""
    shown = {k: i18n.word(str(v), locale) if k in WORD_FIELDS else v for k, v in fields.items()}
    return i18n.t(f"error.{key}", locale, **shown)


def problem(
    field: str, kind: str, locale: str, ctx: Mapping[str, Any] | None = None, english: str = ""
) -> dict[str, str]:
    """One invalid field of a request: ``{"field", "message", "type"}``.

    ``kind`` is pydantic's error type (``missing``, ``string_too_long``, ...) or one of our own
    (``unknown_target``); the message is ``error.validation.<kind>`` filled with the error's
    context. A type the catalogue does not word yet keeps pydantic's English text in English and
    a general "not valid" in the other languages, never half of each."""
    key = f"error.validation.{kind}"
    if kind == "string_pattern_mismatch":
        key = PATTERN_WORDS.get(str((ctx or {}).get("pattern")), key)
    if i18n.has(key):
        text = i18n.t(key, locale, **{k: _shown(k, v) for k, v in (ctx or {}).items()})
    elif locale == i18n.FALLBACK and english:
        text = english
    else:
        text = i18n.t("error.validation.invalid", locale)
    return {"field": field, "message": text, "type": kind}


def validation_body(problems: Iterable[dict[str, str]], locale: str) -> dict[str, Any]:
    """The 422 answer: a sentence to show (``detail``) and the fields one by one (``errors``),
    each problem once (a path parameter read by a dependency and by its route is checked twice)."""
    errors = list({tuple(sorted(e.items())): e for e in problems}.values())
    text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return {"detail": message("validation", locale, errors=text), "errors": errors}


def _shown(name: str, value: Any) -> str:
    """A context value of a pydantic error as a reader sees it: a literal's options are listed
    ``'a', 'b', 'c'`` (pydantic writes them ``'a', 'b' or 'c'``, in English)."""
    if name == "expected" and isinstance(value, str):
        return value.replace("' or '", "', '")
    return str(value)


def not_found(kind: str, ident: object) -> ApiError:
    """Missing or outside the caller's scope: the same answer, so existence does not leak."""
    return ApiError(404, "scope.not_found", kind=kind, id=str(ident))


def role_denied(role: str, action: str) -> ApiError:
    return ApiError(403, "role.denied", role=role, action=action)


class ConfigPublishError(PlatformError):
    """The gateway config could not be published to the broker (logged; the database copy stands)."""
