"""A small HTTP/1.1 server for the daemon's own endpoints, bounded in every direction.

``http.server.ThreadingHTTPServer`` keeps one thread per connection for as long as the client
keeps it open: 300 idle connections, 300 threads.  This server runs one asyncio loop in one
thread, so an idle connection costs a socket and nothing else, and bounds everything a client
could make it spend:

- at most ``max_connections`` open connections: a new one replaces the connection that has
  waited longest without sending a request (an idle or hostile client, never a scraper, which
  sends its request at once);
- ``request_timeout_s`` to send the request head (a slow or silent client is dropped), at most
  ``max_head_bytes`` of it, and the same timeout to take the response;
- handlers run on a pool of ``workers`` threads (they read counters, render pages, encode
  images) with at most ``max_pending`` requests waiting for one; beyond that the answer is 503.

Routes map an exact path to a handler ``(Request) -> Response``; :meth:`HttpServer.add_route`
adds more (a status page) without touching the server, and :meth:`HttpServer.add_prefix_route`
serves every path under a prefix (``/snapshots/``) from one handler.  A ``guard`` sees every
request first and may answer it instead (access control).  A response with a ``stream`` (the
live MJPEG preview) is sent chunk by chunk from the event loop, at most ``max_streams`` at a
time, each chunk within the send timeout, so a viewer that stops reading is dropped.  One
request per connection (``Connection: close``), GET and HEAD only: scrapers and browsers need
nothing more here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import AsyncIterator, Callable
from urllib.parse import parse_qs, urlsplit

from edge_inspector.errors import UserError
from edge_inspector.supervision import ThreadHealth, run_supervised

log = logging.getLogger(__name__)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    #: an endless body (``multipart/x-mixed-replace``): chunks sent as the iterator yields them
    stream: Callable[[], AsyncIterator[bytes]] | None = None


Handler = Callable[[Request], Response]
Guard = Callable[[Request], "Response | None"]  # an answer instead of the route's, or None to go on


def text(body: str, status: int = 200) -> Response:
    return Response(status, body.encode("utf-8"))


class HttpServer:
    """Serves ``routes`` on ``host:port`` from one supervised asyncio thread (see module doc)."""

    def __init__(
        self,
        host: str,
        port: int,
        what: str = "http",
        max_connections: int = 256,
        request_timeout_s: float = 5.0,
        max_head_bytes: int = 8192,
        workers: int = 4,
        max_pending: int = 16,
        max_streams: int = 8,
        health: ThreadHealth | None = None,
    ) -> None:
        self.guard: Guard | None = None
        self.max_streams = max_streams
        self.streams = 0  # streaming responses being sent now
        self.routes: dict[str, Handler] = {}
        self.prefix_routes: dict[str, Handler] = {}
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.max_head_bytes = max_head_bytes
        self.max_pending = max_pending
        self.health = health
        self.what = what
        self.open_connections = 0
        self.refused = 0  # connections closed at once because max_connections were open
        self.timeouts = 0  # clients that did not send a request (or take the answer) in time
        self.handler_errors = 0
        try:
            self._sock = socket.create_server((host, port), backlog=128, reuse_port=False)
        except (OSError, OverflowError, ValueError) as exc:
            raise UserError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{what}-worker")
        self._waiting: dict[asyncio.StreamWriter, None] = {}  # connections yet to send a request, oldest first
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self.thread = threading.Thread(target=self._run, name=what, daemon=True)

    def add_route(self, path: str, handler: Handler) -> None:
        """Serve ``handler`` at exactly ``path`` (query strings are parsed into ``Request.query``)."""
        self.routes[path] = handler

    def add_prefix_route(self, prefix: str, handler: Handler) -> None:
        """Serve ``handler`` for every path that starts with ``prefix`` (the longest prefix wins)."""
        self.prefix_routes[prefix] = handler

    def handler_for(self, path: str) -> Handler | None:
        handler = self.routes.get(path)
        if handler is None:
            prefixes = [p for p in self.prefix_routes if path.startswith(p)]
            if prefixes:
                handler = self.prefix_routes[max(prefixes, key=len)]
        return handler

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        self.thread.join(3.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._sock.close()

    def _run(self) -> None:
        run_supervised(self.what, self._serve, restart=True, stop=self._stop, health=self.health)

    def _serve(self) -> None:
        """One run of the event loop; a restart after a failure starts a fresh loop on the same socket."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, sock=self._sock.dup(), limit=self.max_head_bytes)
            )
            if not self._stop.is_set():
                loop.run_forever()
            if not self._stop.is_set():
                raise RuntimeError("the event loop stopped by itself")
        finally:
            if self._server is not None:
                self._server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:  # let each connection run its clean-up (a viewer's stream closes) before the loop goes
                loop.run_until_complete(asyncio.wait(tasks, timeout=2.0))
            loop.close()
            self._loop = None

    # ------------------------------------------------------------------ one connection
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.max_connections:
            # make room by dropping the connection that has waited longest without a request
            # (a real client sends its request at once; only idle or hostile ones are waiting)
            if self._waiting:
                oldest = next(iter(self._waiting))
                del self._waiting[oldest]
                oldest.close()
                self.refused += 1
            else:
                self.refused += 1
                writer.close()
                return
        self.open_connections += 1
        self._waiting[writer] = None
        try:
            await self._exchange(reader, writer)
        except (asyncio.TimeoutError, TimeoutError):
            self.timeouts += 1
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or sent garbage: nothing to answer
        except asyncio.CancelledError:
            # the server is closing (a live.mjpg viewer is cancelled mid-stream): end this connection
            # quietly; re-raised, asyncio's stream callback would log it as an error with a traceback
            pass
        finally:
            self._waiting.pop(writer, None)
            self.open_connections -= 1
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.request_timeout_s)
        except asyncio.LimitOverrunError:
            await self._send(writer, text("request head too large\n", 431), head_only=False)
            return
        self._waiting.pop(writer, None)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._send(writer, text("bad request\n", 400), head_only=False)
            return
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            await self._send(writer, text("method not allowed\n", 405), head_only=False)
            return
        url = urlsplit(target)
        headers = {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if sep:
                headers[key.strip().lower()] = value.strip()
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        request = Request(method, url.path or "/", query, headers)
        response = await self._dispatch(request)
        if response.stream is not None and method == "GET":
            await self._send_stream(writer, response)
        else:
            await self._send(writer, response, head_only=method == "HEAD")

    async def _dispatch(self, request: Request) -> Response:
        if self.guard is not None:
            refused = self.guard(request)
            if refused is not None:
                return refused
        handler = self.handler_for(request.path)
        if handler is None:
            return text("not found\n", 404)
        with self._pending_lock:  # counts jobs until they finish, also those a timeout gave up on
            if self._pending >= self.max_pending:
                return Response(503, b"busy\n", headers={"Retry-After": "1"})
            self._pending += 1
        job = self._pool.submit(handler, request)
        job.add_done_callback(self._job_done)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job), self.request_timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            return text("handler timed out\n", 503)
        except Exception as exc:  # noqa: BLE001 - a broken page must not take the server down
            self.handler_errors += 1
            if self.handler_errors == 1:
                log.exception("%s: handler for %s failed", self.what, request.path)
            else:
                log.error("%s: handler for %s failed: %s", self.what, request.path, exc)
            return text("internal error\n", 500)

    def _job_done(self, _job: object) -> None:
        with self._pending_lock:
            self._pending -= 1

    @staticmethod
    def _head(response: Response, length: int | None) -> bytes:
        reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
        head = [f"HTTP/1.1 {response.status} {reason}", f"Content-Type: {response.content_type}"]
        if length is not None:
            head.append(f"Content-Length: {length}")
        head.append("Connection: close")
        head += [f"{k}: {v}" for k, v in response.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")

    async def _send(self, writer: asyncio.StreamWriter, response: Response, head_only: bool) -> None:
        writer.write(self._head(response, len(response.body)))
        if not head_only:
            writer.write(response.body)
        await asyncio.wait_for(writer.drain(), self.request_timeout_s)

    async def _send_stream(self, writer: asyncio.StreamWriter, response: Response) -> None:
        """Send chunks until the stream ends, the client stops reading, or the server closes."""
        assert response.stream is not None
        if self.streams >= self.max_streams:
            await self._send(writer, Response(503, b"too many viewers\n", headers={"Retry-After": "5"}), False)
            return
        self.streams += 1
        chunks = response.stream()
        try:
            writer.write(self._head(response, None))
            await asyncio.wait_for(writer.drain(), self.request_timeout_s)
            async for chunk in chunks:
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), self.request_timeout_s)
        finally:
            self.streams -= 1
            await chunks.aclose()  # type: ignore[attr-defined]
