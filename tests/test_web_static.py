"""The web consoles' files: served from the package, nothing from a CDN, both catalogs complete."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI

from eldercare import i18n
from eldercare.platform.web import STATIC, catalogue_js, mount

APP_JS = STATIC / "app.js"


def catalogs() -> dict[str, dict[str, str]]:
    """The catalogue the pages get (/web/i18n.js is built from it)."""
    return {loc: dict(i18n.catalogue(loc)) for loc in i18n.LOCALES}


def used_keys() -> set[str]:
    """Literal label keys app.js asks for (i18n: "k", L("k"), t("k"))."""
    js = APP_JS.read_text(encoding="utf-8")
    return set(re.findall(r'(?:i18n: |\bL\(|\bt\(|label: )"([a-z_0-9]+\.[a-z_0-9.]+)"(?!\s*\+)', js))


def test_every_label_the_pages_use_is_in_the_catalogue() -> None:
    cat = catalogs()
    assert len(cat["en"]) > 150
    missing = used_keys() - set(cat["en"])
    assert not missing, f"labels used by app.js but missing from eldercare/i18n/en.json: {sorted(missing)}"


def test_no_label_is_asked_for_by_a_key_the_catalogue_cannot_have() -> None:
    """Keys are dotted (tests/test_i18n.py): t("saved") found none and showed "saved" on every page."""
    code = re.sub(r"/\*.*?\*/", "", APP_JS.read_text(encoding="utf-8"), flags=re.S)
    assert re.findall(r'(?:i18n: |\bL\(|\bt\()"([a-z_0-9]+)"', code) == []


def test_the_pages_get_the_catalogue_as_the_server_has_it() -> None:
    """/web/i18n.js is built from the catalogue files: LOCALES and I18N, nothing edited by hand."""
    js = catalogue_js()
    assert js.count("const I18N = ") == 1
    assert json.loads(re.search(r"const LOCALES = (.*);", js)[1]) == list(i18n.LOCALES)  # type: ignore[index]
    assert json.loads(js[js.index("const I18N = ") + 13 : js.rindex(";")]) == catalogs()
    assert not (STATIC / "i18n.js").exists(), "a second copy of the labels"


def test_chinese_labels_are_chinese_and_english_labels_are_not() -> None:
    cat = catalogs()
    # placeholders ({name}) are filled in with data, not shown as they are
    shown = {k: re.sub(r"\{[a-z_]+\}", "", v) for k, v in cat["zh-CN"].items()}
    sentences = ("error.", "summary.")  # messages that may quote a command or a field to type
    labels = {k: v for k, v in shown.items() if not k.startswith(sentences)}
    latin = {k: v for k, v in labels.items() if re.search(r"[A-Za-z]{2,}", v) and k != "lang.switch"}
    cjk = {k: v for k, v in cat["en"].items() if re.search(r"[\u4e00-\u9fff]", v) and k != "lang.switch"}
    assert latin == {}
    assert cjk == {}
    # the API's messages and alert summaries may quote what to type (field names, 'eldercare simulate
    # run', JSON), but each one is a Chinese sentence
    untranslated = {
        k: v
        for k, v in shown.items()
        if k.startswith(sentences) and re.search(r"[A-Za-z]{2,}", v) and not re.search(r"[\u4e00-\u9fff]", v)
    }
    assert untranslated == {}


def test_enum_values_the_api_returns_all_have_labels() -> None:
    from eldercare.platform.schemas import (
        TIER_TARGET,
        AlertKind,
        CareLevel,
        Outcome,
        SensorKind,
        SimIncidentIn,
    )
    from eldercare.protocol import EVENT_KINDS

    cat = catalogs()["en"]
    wanted = [f"kind.{k}" for k in AlertKind.__args__]
    wanted += [f"outcome.{k}" for k in Outcome.__args__]
    wanted += [f"care.{k}" for k in CareLevel.__args__]
    wanted += [f"sensor.{k}" for k in SensorKind.__args__]
    wanted += [f"sim.{k}" for k in SimIncidentIn.model_fields["kind"].annotation.__args__]  # type: ignore[union-attr]
    wanted += [f"event.{k}" for k in EVENT_KINDS]  # a device's event set aside by the engine (failed work)
    # whom a policy's tier asks (provider:<id> is shown by the provider's name)
    wanted += [f"target.{k}" for k in re.findall(r"[a-z_]+(?=\|)", TIER_TARGET)]
    assert [k for k in wanted if k not in cat] == []


def audited_actions() -> set[str]:
    """Every action the platform writes to the audit log ("update:resident", "read:activity"),
    read from its code: audit_change(conn, user, "<action>"), write(..., action="<action>"), the
    resident access checks ("<action>:<stream>") and the refusals ("refused:<status>")."""
    from eldercare.platform.access import STREAMS
    from eldercare.platform.app import AUDITED_REFUSALS

    found = {f"read:{s}" for s in STREAMS} | {f"refused:{n}" for n in AUDITED_REFUSALS} | {"read:site"}
    for path in STATIC.parents[1].rglob("*.py"):  # eldercare/platform
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            name = getattr(call.func, "attr", getattr(call.func, "id", ""))
            args = [a.value if isinstance(a, ast.Constant) else None for a in call.args]
            words = {k.arg: k.value.value for k in call.keywords if isinstance(k.value, ast.Constant)}
            if name == "audit_change":
                found.add(args[2])
            elif name == "write" and isinstance(words.get("action"), str):
                found.add(words["action"])
            elif name == "_audit_sign_in" and len(args) > 3:
                found.add(args[3])
            elif name == "resident_admin":  # audited as "<what it is for>:profile"
                found.add(f"{args[0]}:profile")
            elif name == "require_resident_access" and "action" in words:
                found.add(f"{words['action']}:{args[3]}")
    return found


def test_every_action_of_the_audit_log_has_words() -> None:
    """The audit log page shows "changed a resident's record", not "update:resident" (app.js
    auditAction(): the code, lower case, other characters as "_", ":" as ".", under audit.)."""
    actions = audited_actions()
    assert len(actions) > 40 and None not in actions
    # codes, not sentences ("view a resident's alert limits:profile" was written once)
    assert sorted(a for a in actions if not re.fullmatch(r"[a-z_0-9-]+(:[a-z_0-9-]+)*", a)) == []
    cat = catalogs()["en"]

    def key(code: str) -> str:
        return "audit." + re.sub(r"[^a-z0-9:]+", "_", code.lower()).replace(":", ".")

    assert sorted(a for a in actions if key(a) not in cat) == []
    # and no label for an action nobody writes
    assert sorted(k for k in cat if k.startswith("audit.") and k not in {key(a) for a in actions}) == []


def test_nothing_is_loaded_from_another_host() -> None:
    for path in (STATIC / "index.html", APP_JS, STATIC / "app.css"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path
        assert "cdn" not in text.lower(), path
    vendored = STATIC / "vendor" / "uplot"
    assert (vendored / "uPlot.iife.min.js").stat().st_size > 10_000
    assert "MIT" in (vendored / "LICENSE").read_text(encoding="utf-8")


@pytest.fixture
def app() -> FastAPI:
    return FastAPI()


def get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path, headers=headers)

    with start_blocking_portal() as portal:
        return portal.call(call)


def test_mount_serves_the_page_and_its_files_and_is_idempotent(app: FastAPI) -> None:
    mount(app)
    routes = len(app.router.routes)
    mount(app)
    assert len(app.router.routes) == routes
    page = get(app, "/web/")
    assert page.status_code == 200
    assert 'src="static/app.js"' in page.text
    for name in ("app.js", "app.css", "vendor/uplot/uPlot.iife.min.js"):
        r = get(app, f"/web/static/{name}")
        assert r.status_code == 200, name
        assert r.content == Path(STATIC / name).read_bytes()
    assert 'src="i18n.js"' in page.text
    labels = get(app, "/web/i18n.js")
    assert labels.status_code == 200 and labels.text == catalogue_js()
    assert labels.headers["content-type"].startswith("text/javascript")
    again = get(app, "/web/i18n.js", {"If-None-Match": labels.headers["etag"]})
    assert again.status_code == 304 and again.content == b""  # revalidated, not sent again
    assert get(app, "/").headers["location"] == "/web/"
    assert get(app, "/web/static/../__init__.py").status_code == 404
