"""The signing secret (issue 19, item 3) and argon2 on a bounded pool (issue 27, item 5)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from pathlib import Path

import pytest

from eldercare.config import PLACEHOLDER_SECRET, Settings, secret_weakness
from eldercare.platform.errors import ApiError
from eldercare.platform.security import HashPool


def test_secret_strength() -> None:
    assert secret_weakness(secrets.token_urlsafe(32)) is None
    assert secret_weakness(secrets.token_hex(24)) is None
    for weak in ("", PLACEHOLDER_SECRET, "short-but-random-9x", "x" * 64, "abcdefgh" * 8):
        assert secret_weakness(weak), weak


def test_development_warns_loudly_about_a_weak_secret(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from eldercare.platform.app import create_app

    with caplog.at_level(logging.WARNING, logger="eldercare.platform.app"):
        create_app(Settings(environment="development", data_dir=tmp_path), start_engine=False)
    assert any("INSECURE" in r.getMessage() and "anyone can sign" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="eldercare.platform.app"):
        strong = Settings(environment="development", data_dir=tmp_path, secret_key=secrets.token_urlsafe(32))  # type: ignore[arg-type]
        create_app(strong, start_engine=False)
    assert not any("INSECURE" in r.getMessage() for r in caplog.records)


def test_production_refuses_a_weak_secret_in_one_line(tmp_path: Path) -> None:
    from eldercare.config import SettingsError, load_settings

    with pytest.raises(SettingsError) as exc:
        load_settings(environment="production", data_dir=tmp_path, secret_key="")
    assert str(exc.value).startswith("ELDERCARE_SECRET_KEY: ") and "\n" not in str(exc.value)


def test_hash_pool_refuses_beyond_its_queue_with_retry_after() -> None:
    """Two workers and one queued call: the fourth concurrent call is refused at once (429)."""
    pool = HashPool(workers=2, queue=1)
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow() -> str:
        started.release()
        release.wait(10)
        return "done"

    async def storm() -> tuple[list[str], ApiError]:
        tasks = [asyncio.create_task(pool.run(slow)) for _ in range(3)]
        await asyncio.sleep(0)  # let all three enter run()
        for _ in range(2):  # both workers busy: the loop is still free (this coroutine runs)
            await asyncio.to_thread(started.acquire)
        assert pool.in_flight == 3
        with pytest.raises(ApiError) as refused:
            await pool.run(slow)
        release.set()
        return list(await asyncio.gather(*tasks)), refused.value

    done, err = asyncio.run(storm())
    assert done == ["done"] * 3
    assert err.status == 429 and int((err.headers or {})["Retry-After"]) >= 1
    assert pool.in_flight == 0
