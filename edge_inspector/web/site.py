"""The daemon's one HTTP server, assembled: health and metrics, the status page, the JSON behind
it, the live preview, the snapshots, and the token guard in front of them all."""

from __future__ import annotations

from importlib import resources
from typing import Any

from edge_inspector.health import HealthServer
from edge_inspector.http_server import Request, Response

PAGE = "page.html"


def page_route() -> Any:
    """``GET /``: the self-contained status page (no external file, no CDN: works offline)."""
    body = resources.files("edge_inspector.web").joinpath(PAGE).read_bytes()

    def handle(_request: Request) -> Response:
        return Response(200, body, "text/html; charset=utf-8",
                        {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                         "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                                    "style-src 'unsafe-inline'; script-src 'unsafe-inline'"})

    return handle


def start_http(service: Any) -> HealthServer:
    """Build and start the server for ``service`` on ``health.listen``."""
    from edge_inspector.web.status import status_route

    cfg = service.cfg.health
    server = HealthServer(cfg.listen, service.telemetry.registry, service.alive, service.ready, service.threads)
    if cfg.token_file is not None:
        from edge_inspector.web.access import TokenGuard, read_token

        server.server.guard = TokenGuard(read_token(cfg.token_file))
    views = service.views
    preview = views.preview
    server.add_route("/", page_route())
    server.add_route("/api/status", status_route(service, views.recent,
                                                 lambda: list(preview.cameras) if preview is not None else []))
    if views.snapshots is not None:
        from edge_inspector.web.snapshots import snapshot_route

        server.add_prefix_route("/snapshots/", snapshot_route(views.snapshots))
    if preview is not None:
        server.add_prefix_route("/cameras/", preview.route())
    server.start()
    return server
