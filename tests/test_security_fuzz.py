"""Schemathesis over every operation of the OpenAPI document, on a bounded budget (issue 19): no
5xx, only documented statuses, answers that match their documented schema and refusal of what the
schema forbids, signed in as an admin (who reaches every
route's logic) against a real server. Operations that would end the admin's own session are left
out (covered by test_security_tokens.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from platform_seed import PASSWORD, seed_world
from server_support import serving

from eldercare.config import Settings

schemathesis = pytest.importorskip("schemathesis")  # the dev extra installs it
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, template_db: str, _dropper: Any
) -> Iterator[dict[str, str]]:
    """A seeded database and the app under uvicorn, for the whole module (the budget is per operation)."""
    from fix_db import cloned_database

    from eldercare.platform.app import create_app

    with cloned_database(pg_url, template_db, _dropper.drop) as url:
        with psycopg.connect(url) as conn:
            seed_world(conn)
        s = Settings(database_url=url, environment="test", data_dir=tmp_path_factory.mktemp("fuzz"))  # type: ignore[arg-type]
        with serving(create_app(s, start_engine=False)) as port:
            base = f"http://127.0.0.1:{port}"
            r = httpx.post(f"{base}/api/v1/auth/token", data={"username": "admin", "password": PASSWORD})
            assert r.status_code == 200, r.text
            yield {"base": base, "token": r.json()["access_token"]}


def _refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis's negative-data check, with 413 (a body over the size limit) as a refusal too."""
    if response.status_code == 413:
        return None
    return negative_data_rejection(ctx, response, case)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_no_server_errors_and_documented_answers(live: dict[str, str]) -> None:
    """Each operation gets its own bounded Hypothesis run; every failure is collected, then shown."""
    schema = (
        schemathesis.openapi.from_url(f"{live['base']}/openapi.json")
        .exclude(path="/api/v1/auth/logout")
        .exclude(path="/api/v1/auth/me/password")
        .exclude(path_regex=r"^/api/v1/users/\{user_id\}$", method=["PATCH", "DELETE"])
    )
    headers = {"Authorization": f"Bearer {live['token']}"}
    failures: list[str] = []
    calls: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        # valid requests and requests the schema forbids (wrong types, missing fields), mixed
        cases = st.one_of(operation.as_strategy(), operation.as_strategy(GenerationMode.NEGATIVE))

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            calls.append(case.path)
            case.call_and_validate(
                base_url=live["base"],
                headers=headers,
                checks=[
                    not_a_server_error,
                    response_schema_conformance,
                    status_code_conformance,  # every answer a client can get is in the schema
                    content_type_conformance,
                    _refused,  # what the schema forbids is refused
                ],
            )

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    assert operations > 50 and len(calls) >= 3 * operations  # every operation really was called
    assert not failures, "\n\n".join(failures)
