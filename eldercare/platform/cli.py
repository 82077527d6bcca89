"""``eldercare serve``: the API, the alert engine and the consoles in one process (uvicorn)."""

from __future__ import annotations

import click

from eldercare.cli import get_settings


@click.command()
@click.option("--host", default=None, help="Listen address (default: settings.http_host).")
@click.option("--port", type=int, default=None, help="Listen port (default: settings.http_port).")
@click.option("--no-engine", is_flag=True, help="Serve the API only; run no alert engine work here.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, no_engine: bool) -> None:
    """Run the HTTP API, the alert engine and the web consoles.

    运行 HTTP 接口、告警引擎和网页控制台。
    """
    import uvicorn

    from eldercare.platform.app import create_app

    settings = get_settings(ctx)
    app = create_app(settings, start_engine=not no_engine)
    uvicorn.run(
        app,
        host=host or settings.http_host,
        port=port if port is not None else settings.http_port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )
