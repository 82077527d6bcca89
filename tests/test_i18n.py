"""The one message catalogue (eldercare/i18n/*.json): complete in every language, the same
placeholders everywhere, every key the code asks for present, and the API's validation errors
worded in the reader's language."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from eldercare import i18n, kinds
from eldercare.models import inactivity_text as text
from eldercare.platform.errors import problem

if TYPE_CHECKING:
    from platform_api_support import Api

pytest_plugins = ["platform_api_support"]

ROOT = Path(__file__).parents[1] / "eldercare"
CJK = re.compile(r"[\u4e00-\u9fff]")


def _placeholders(template: str) -> set[str]:
    return set(i18n.PLACEHOLDER.findall(template))


def test_there_is_one_file_per_language_and_the_default_and_english_are_among_them() -> None:
    assert i18n.LOCALES[0] == i18n.DEFAULT_LOCALE
    assert {"zh-CN", "en"} <= set(i18n.LOCALES)
    assert sorted(p.stem for p in i18n.HERE.glob("*.json")) == sorted(i18n.LOCALES)


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_every_message_exists_in_every_language_with_the_same_placeholders(locale: str) -> None:
    english, other = i18n.catalogue("en"), i18n.catalogue(locale)
    assert sorted(set(english) - set(other)) == [], f"missing in {locale}.json"
    assert sorted(set(other) - set(english)) == [], f"only in {locale}.json"
    differ = {
        k: (english[k], other[k]) for k in english if _placeholders(english[k]) != _placeholders(other[k])
    }
    assert differ == {}
    assert [k for k, v in other.items() if not v.strip()] == []


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_a_catalogue_file_is_flat_sorted_and_says_each_thing_once(locale: str) -> None:
    """A repeated key would silently keep the last value; sorted files merge without conflicts."""
    raw = (i18n.HERE / f"{locale}.json").read_text(encoding="utf-8")
    pairs = json.loads(raw, object_pairs_hook=lambda kv: kv)
    keys = [k for k, _ in pairs]
    assert sorted({k for k in keys if keys.count(k) > 1}) == []
    assert keys == sorted(keys)
    assert all(isinstance(v, str) for _, v in pairs)
    assert all(re.fullmatch(r"[a-z][a-z_0-9]*(\.[a-z_0-9]+)+", k) for k in keys), "keys are dotted lower case"


def _python_sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in ROOT.rglob("*.py") if "migrations" not in p.parts}


def _used_keys(source: str) -> set[str]:
    """Catalogue keys a Python module names literally."""
    used = set()
    # API errors: ApiError(403, "role.denied"), message("conflict.exists", ...) -> error.<key>
    for key in re.findall(r'\b(?:ApiError\(\s*\d+,|message\()\s*"([a-z_.]+)"', source):
        used.add(f"error.{key}")
    # validation errors of our own: PydanticCustomError("unknown_target", ...), _validation(loc, f, "kind")
    for key in re.findall(r'PydanticCustomError\(\s*"([a-z_]+)"', source):
        used.add(f"error.validation.{key}")
    for key in re.findall(r'_validation\([^()]*?"[^"]*",\s*"([a-z_]+)"', source):
        used.add(f"error.validation.{key}")
    # words said inside a message: what was not found (not_found("change", ...)) and what a role may
    # not do (roles(..., action="resolve alerts"), resident_admin("read_limits")) -> word.<value>
    said = re.findall(r'\b(?:not_found|resident_admin)\(\s*"([a-z_ ]+)"', source)
    said += re.findall(r'\broles\([^()]*?action="([a-z_ ]+)"', source)
    used |= {"word." + value.replace(" ", "_") for value in said}
    # every other literal in a namespace of the catalogue (t("email.tier"), _summary("summary.sos"))
    spaces = "summary|title|inact|email|error|word|note"
    used |= set(re.findall(rf'"((?:{spaces})\.[a-z_0-9.]+[a-z_0-9])"', source))
    return used


def test_every_key_the_python_code_names_is_in_the_catalogue() -> None:
    cat = i18n.catalogue("en")
    missing = {}
    for path, source in _python_sources().items():
        for key in _used_keys(source):
            # a stem completed in code: "inact.bathroom" + ".learned" / ".new"
            if key not in cat and not {f"{key}.learned", f"{key}.new"} <= set(cat):
                missing[key] = str(path.relative_to(ROOT))
    assert missing == {}
    assert len(set().union(*(_used_keys(s) for s in _python_sources().values()))) > 50


def test_every_alert_kind_has_a_title_and_every_room_and_sensor_of_the_detector_a_word() -> None:
    cat = i18n.catalogue("en")
    assert [k for k in kinds.ALERT_KINDS if f"title.{k}" not in cat] == []
    for loc in i18n.LOCALES:
        assert text.room("kitchen", loc) != text.room("garage", loc)
        assert "garage" in text.room("garage", loc)  # a room we have no word for, by its own name


def test_texts_are_given_in_every_language_and_fall_back_to_english() -> None:
    fall = i18n.texts("summary.fall", sensor="wearable-1", confidence="93%")
    assert set(fall) == set(i18n.LOCALES)
    assert fall["en"] == "Possible fall detected by wearable-1 (confidence 93%); no answer to the check-in."
    assert fall["zh-CN"] == "wearable-1 检测到疑似跌倒（置信度 93%），询问无应答。"
    assert i18n.t("summary.fall", "fr") == i18n.t("summary.fall", "en")  # a language we do not speak
    assert i18n.t("no.such.key", "zh-CN") == "no.such.key"
    assert i18n.t("summary.sos", "en") == "SOS pressed on {sensor}."  # a missing field stays visible


def test_the_language_of_a_request() -> None:
    assert i18n.negotiate("fr-FR,en;q=0.5") == "en"
    assert i18n.negotiate(None) == i18n.DEFAULT_LOCALE
    assert i18n.negotiate("zh-TW,zh;q=0.9") == "zh-CN"
    assert i18n.negotiate("EN-gb") == "en"
    assert i18n.supported("de") is None
    # weights count, not the order (zh-CN was chosen from "zh-CN;q=0, en", refused by its reader)
    assert i18n.negotiate("zh-CN;q=0.1, en;q=0.9") == "en"
    assert i18n.negotiate("zh-CN;q=0, en") == "en"
    assert i18n.negotiate("en;q=0") == i18n.DEFAULT_LOCALE
    assert i18n.negotiate("en;q=abc, zh;q=0.5") == "zh-CN"
    assert i18n.negotiate("en;q=0.5, zh-CN;q=0.5") == "en"


def test_a_request_before_sign_in_is_answered_in_the_language_it_weights_most(api: Api) -> None:
    r = api.client.get("/api/v1/auth/me", headers={"Accept-Language": "zh-CN;q=0.2, en;q=0.8"})
    assert (r.status_code, r.json()["detail"]) == (
        401,
        "Sign in first: send 'Authorization: Bearer <access token>'.",
    )


def test_inactivity_explanations_are_complete_in_every_language() -> None:
    for loc in i18n.LOCALES:
        why = text.inactivity("kitchen", 7300, 3600, 14, learned=True)[loc]
        assert "{" not in why
    assert text.inactivity("kitchen", 7300, 3600, 14, learned=True) == {
        "en": "no movement for 2 h 2 min in the kitchen; usually under 1 h at this hour",
        "zh-CN": "在厨房已2小时2分钟没有活动；这个时段通常不超过1小时",
    }


def test_a_validation_type_we_have_no_words_for_is_never_half_english() -> None:
    odd = problem("x", "some_new_pydantic_type", "zh-CN", {}, "Value error, odd")
    assert odd == {"field": "x", "message": "此处的值无效", "type": "some_new_pydantic_type"}
    assert (
        problem("x", "some_new_pydantic_type", "en", {}, "Value error, odd")["message"] == "Value error, odd"
    )
    long = problem("name", "string_too_long", "zh-CN", {"max_length": 200})
    assert long["message"] == "最多 200 个字符"


def test_a_pattern_is_said_in_words_never_shown() -> None:
    """A reader cannot use "(pattern ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$)": every pattern of the
    API's schemas has words of its own, and one without them gets a general message."""
    from pydantic import BaseModel

    from eldercare.platform import schemas
    from eldercare.platform.errors import PATTERN_WORDS

    models = [m for m in vars(schemas).values() if isinstance(m, type) and issubclass(m, BaseModel)]
    fields = [f for m in models for f in m.model_fields.values()]
    patterns = {c.pattern for f in fields for c in f.metadata if getattr(c, "pattern", None)}
    assert len(patterns) >= 3 and patterns <= set(PATTERN_WORDS)
    for pattern in [*patterns, "^[a-z]+$"]:
        for loc in i18n.LOCALES:
            said = problem("id", "string_pattern_mismatch", loc, {"pattern": pattern})["message"]
            assert pattern not in said and not re.search(r"[\^$\\\[\]{}]", said), (loc, said)
    ident = PATTERN_WORDS[schemas.SiteIn.model_fields["id"].metadata[0].pattern]
    assert "64" in i18n.t(ident, "zh-CN") and "letters, digits" in i18n.t(ident, "en")


def test_users_may_choose_exactly_the_languages_of_the_catalogue(db_conn: psycopg.Connection) -> None:
    """The users.locale CHECK: a new language file also needs a migration widening it."""
    (check,) = db_conn.execute(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
        " WHERE t.relname = 'users' AND c.contype = 'c' AND pg_get_constraintdef(c.oid) LIKE '%locale%'"
    ).fetchone()
    assert set(re.findall(r"'([A-Za-z-]+)'::text", check)) == set(i18n.LOCALES)


def _bad_policy(api: Api) -> dict[str, Any]:
    tiers = [{"tier": 1, "name": "x" * 300, "targets": ["mayor"], "ack_timeout_s": 0}]
    r = api.post("admin", "/api/v1/policies", json={"name": "bad", "tiers": tiers})
    assert r.status_code == 422
    return r.json()  # type: ignore[no-any-return]


def test_validation_errors_are_in_the_readers_language(api: Api) -> None:
    """The zh page once showed "请求无效：…Value error, unknown target…"."""
    assert api.put("admin", "/api/v1/auth/me/locale", json={"locale": "zh-CN"}).status_code == 200
    zh = _bad_policy(api)
    assert "Value error" not in zh["detail"] and "should" not in zh["detail"]
    assert zh["detail"].startswith("请求无效：")
    assert "未知的通知对象 'mayor'" in zh["detail"]
    by_type = {e["type"]: e for e in zh["errors"]}  # machine-readable fields stay as they were
    assert by_type["unknown_target"]["field"] == "tiers.0.targets"
    assert by_type["string_too_long"]["message"] == "最多 200 个字符"
    assert by_type["greater_than"]["field"] == "tiers.0.ack_timeout_s"
    assert all(CJK.search(e["message"]) for e in zh["errors"])
    r = api.post("admin", "/api/v1/sites", json={"id": "s-1", "kind": "castle", "name": "S"})
    assert "kind: 必须是以下之一：'home', 'station', 'institution'" in r.json()["detail"]

    assert api.put("admin", "/api/v1/auth/me/locale", json={"locale": "en"}).status_code == 200
    en = _bad_policy(api)
    assert en["detail"].startswith("Invalid request: ")
    assert "unknown target 'mayor'" in en["detail"] and not CJK.search(en["detail"])
    assert {e["type"] for e in en["errors"]} == set(by_type)
    r = api.put("admin", "/api/v1/auth/me/locale", json={"locale": "fr"})
    assert r.status_code == 422 and r.json()["errors"][0]["type"] == "literal_error"


def test_the_engine_writes_its_trail_notes_as_catalogue_messages() -> None:
    """Stored as a key and fields, so the alert page shows a note in the reader's language."""
    from eldercare.platform.engine import rules

    event = {"site": "h", "gateway": "g", "sensor": "w-1", "kind": "fall_cancelled", "t": 1}
    (note,) = rules.decide_event(event, "r-1")
    assert isinstance(note, rules.Note)
    assert note.text == "the resident answered the check-in on w-1: fall cancelled"
    assert CJK.search(i18n.t(note.message, "zh-CN", **note.fields)) and "w-1" in note.text


def test_a_third_language_is_one_more_file(tmp_path: Path) -> None:
    """The catalogue finds its languages by their files: a copy of the package with a fr.json
    speaks French everywhere it is asked, with nothing else edited."""
    import importlib.util
    import shutil

    copy = tmp_path / "catalogue"
    shutil.copytree(i18n.HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    french = dict(i18n.catalogue("en")) | {"title.fall": "Chute possible", "summary.sos": "SOS sur {sensor}."}
    (copy / "fr.json").write_text(json.dumps(french, ensure_ascii=False), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("catalogue_copy", copy / "__init__.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.LOCALES == ("zh-CN", "en", "fr")
    assert mod.negotiate("fr-CA,en;q=0.5") == "fr"
    assert mod.texts("summary.sos", sensor="b-1")["fr"] == "SOS sur b-1."
    assert mod.t("title.fall", "fr") == "Chute possible"


def test_what_a_refusal_names_is_said_in_the_readers_language(api: Api, db_url: str) -> None:
    """A zh-CN reader was told "您的角色（家属）无权resolve alerts。" and "找不到change '999'"."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        (alert_id,) = conn.execute(
            "INSERT INTO alerts (kind, severity, resident_id, dedup_key, title, detected_at)"
            " VALUES ('sos', 'critical', 'res-1', 'res-1:sos', 'SOS', now()) RETURNING id"
        ).fetchone()  # type: ignore[misc]
    r = api.post("family1", f"/api/v1/alerts/{alert_id}/resolve", json={"outcome": "false_alarm"})
    assert (r.status_code, r.json()["detail"]) == (403, "您的角色（家属）无权解决告警。")
    r = api.post("worker1", "/api/v1/residents/res-1/inactivity-limits/changes/999/undo")
    assert (r.status_code, r.json()["detail"]) == (404, "找不到阈值变更 '999'（或不在您的可见范围内）。")
