"""The web consoles' files: served from the package, nothing from a CDN, both catalogs complete."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI

from eldercare.platform.web import STATIC, mount

CATALOG = STATIC / "i18n.js"
APP_JS = STATIC / "app.js"


def catalogs() -> dict[str, dict[str, str]]:
    """The two catalogs of i18n.js, read as text (keys and values are plain JS string literals)."""
    text = CATALOG.read_text(encoding="utf-8")
    en_at, zh_at = text.index("\n  en: {"), text.index('\n  "zh-CN": {')
    pair = re.compile(r'"([a-z_0-9]+\.[a-z_0-9.]+)":\s*"((?:[^"\\]|\\.)*)"')
    return {
        "en": dict(pair.findall(text[en_at:zh_at])),
        "zh-CN": dict(pair.findall(text[zh_at:])),
    }


def used_keys() -> set[str]:
    """Literal label keys app.js asks for (i18n: "k", L("k"), t("k"))."""
    js = APP_JS.read_text(encoding="utf-8")
    return set(re.findall(r'(?:i18n: |\bL\(|\bt\(|label: )"([a-z_0-9]+\.[a-z_0-9.]+)"(?!\s*\+)', js))


def test_both_catalogs_hold_the_same_keys_and_every_key_the_pages_use() -> None:
    cat = catalogs()
    assert len(cat["en"]) > 150
    assert set(cat["en"]) == set(cat["zh-CN"])
    missing = used_keys() - set(cat["en"])
    assert not missing, f"labels used by app.js but missing from i18n.js: {sorted(missing)}"


def test_no_label_is_defined_twice() -> None:
    """A repeated key silently keeps the last value: the catalog must say each thing once."""
    text = CATALOG.read_text(encoding="utf-8")
    en_at, zh_at = text.index("\n  en: {"), text.index('\n  "zh-CN": {')
    for part in (text[en_at:zh_at], text[zh_at:]):
        keys = re.findall(r'"([a-z_0-9]+\.[a-z_0-9.]+)":', part)
        assert sorted({k for k in keys if keys.count(k) > 1}) == []


def test_chinese_labels_are_chinese_and_english_labels_are_not() -> None:
    cat = catalogs()
    # placeholders ({name}) are filled in with data, not shown as they are
    shown = {k: re.sub(r"\{[a-z_]+\}", "", v) for k, v in cat["zh-CN"].items()}
    latin = {k: v for k, v in shown.items() if re.search(r"[A-Za-z]{2,}", v) and k != "lang.switch"}
    cjk = {k: v for k, v in cat["en"].items() if re.search(r"[\u4e00-\u9fff]", v) and k != "lang.switch"}
    assert latin == {}
    assert cjk == {}


def test_enum_values_the_api_returns_all_have_labels() -> None:
    from eldercare.platform.schemas import AlertKind, CareLevel, Outcome, SensorKind, SimIncidentIn

    cat = catalogs()["en"]
    wanted = [f"kind.{k}" for k in AlertKind.__args__]
    wanted += [f"outcome.{k}" for k in Outcome.__args__]
    wanted += [f"care.{k}" for k in CareLevel.__args__]
    wanted += [f"sensor.{k}" for k in SensorKind.__args__]
    wanted += [f"sim.{k}" for k in SimIncidentIn.model_fields["kind"].annotation.__args__]  # type: ignore[union-attr]
    assert [k for k in wanted if k not in cat] == []


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


def get(app: FastAPI, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path)

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
    for name in ("app.js", "i18n.js", "app.css", "vendor/uplot/uPlot.iife.min.js"):
        r = get(app, f"/web/static/{name}")
        assert r.status_code == 200, name
        assert r.content == Path(STATIC / name).read_bytes()
    assert get(app, "/").headers["location"] == "/web/"
    assert get(app, "/web/static/../__init__.py").status_code == 404
