"""``GET /snapshots/<event id>[.overlay|.thumb].jpg|png``: a defect event's pictures."""

from __future__ import annotations

from edge_inspector.http_server import Handler, Request, Response, text
from edge_inspector.snapshots.writer import URL_PREFIX, SnapshotWriter

WAIT_FOR_WRITER_S = 2.0  # an event can arrive before its pictures are on disk: wait that long


def snapshot_route(writer: SnapshotWriter) -> Handler:
    """Serves the store's files by their exact names; any other name is 404 (no path escapes)."""

    def handle(request: Request) -> Response:
        name = request.path[len(URL_PREFIX):]
        path = writer.store.path_of(name)
        if path is None:
            return text("not found\n", 404)
        if not path.is_file():
            writer.wait_written(name[:32], WAIT_FOR_WRITER_S)
        try:
            data = path.read_bytes()
        except OSError:
            return text("not found (never written, or deleted by retention)\n", 404)
        kind = "image/png" if name.endswith(".png") else "image/jpeg"
        return Response(200, data, kind, {"Cache-Control": "private, max-age=86400, immutable"})

    return handle
