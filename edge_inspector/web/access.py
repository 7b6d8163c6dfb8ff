"""Who may see the station: a bearer token from a file once the HTTP server serves other hosts.

Pictures of parts, live video and the event history are the plant's own; on 127.0.0.1 only
people on the station itself can reach them, but once ``health.listen`` serves the network,
every request but ``/healthz`` (a liveness probe must work without secrets) needs the token:

- scripts and Prometheus send ``Authorization: Bearer <token>`` (Prometheus:
  ``authorization: {credentials_file: …}``);
- a browser opens ``/?token=<token>`` once: the answer sets an HttpOnly, SameSite=Strict cookie
  and redirects to ``/``, so the token leaves the address bar and the history, and the page's
  own requests (the JSON, thumbnails, the live ``<img>``, which cannot send headers) carry it.

Tokens are compared in constant time.  ``check-config`` refuses a network ``listen`` without a
``token_file`` (so does ``run``), and a token file that is missing, unreadable or shorter than
16 characters.
"""

from __future__ import annotations

import hmac
import re
from pathlib import Path

from edge_inspector.errors import UserError
from edge_inspector.http_server import Request, Response

COOKIE = "edge_inspector_token"
OPEN_PATHS = frozenset({"/healthz"})
MIN_TOKEN_CHARS = 16
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")  # hex, base64, URL-safe: fit a header and a cookie


def read_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace removed); a clear error naming the file."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise UserError(f"health.token_file: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"health.token_file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if len(token) < MIN_TOKEN_CHARS or not TOKEN_CHARS.fullmatch(token):
        raise UserError(f"health.token_file: {path} must hold one token of at least {MIN_TOKEN_CHARS} letters, "
                        "digits or -._~+/= (e.g. made by: openssl rand -hex 32)")
    return token


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE:
            return value
    return None


class TokenGuard:
    """The HTTP server's guard: None lets a request through, a Response refuses it."""

    def __init__(self, token: str) -> None:
        self._token = token.encode("utf-8")

    def _valid(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode("utf-8"), self._token)

    def __call__(self, request: Request) -> Response | None:
        if request.path in OPEN_PATHS:
            return None
        auth = request.headers.get("authorization", "")
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer" and self._valid(credentials.strip()):
            return None
        if self._valid(_cookie(request.headers.get("cookie", ""))):
            return None
        if request.path == "/" and "token" in request.query:
            if self._valid(request.query["token"]):  # a browser logs in once; the cookie does the rest
                return Response(303, b"", headers={
                    "Location": "/", "Cache-Control": "no-store",
                    "Set-Cookie": f"{COOKIE}={request.query['token']}; Path=/; HttpOnly; SameSite=Strict"})
            return _refused("wrong token")
        return _refused("this station needs its access token")


def _refused(why: str) -> Response:
    body = (f"401 {why}: send 'Authorization: Bearer <token>', or open /?token=<token> once in a browser "
            "(the token is in the file named by health.token_file)\n")
    return Response(401, body.encode("utf-8"), headers={"WWW-Authenticate": 'Bearer realm="edge-inspector"',
                                                         "Cache-Control": "no-store"})
