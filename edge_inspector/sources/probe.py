"""Ask a network camera whether its stream is there, and say precisely why not.

OpenCV's ``VideoCapture`` only answers "could not open".  ``check-config`` wants the reason a
person can act on: the host refuses connections, nothing answers within the timeout, the path
does not exist (404), the credentials are wrong (401).  So this module speaks just enough of
the protocols itself: an RTSP ``DESCRIBE`` (with Basic or Digest authentication, over TLS for
``rtsps``) and an HTTP ``GET`` of the stream's headers.  Credentials never appear in a message.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

DEFAULT_TIMEOUT_S = 3.0
_AUTH_PARAM_RE = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


class _ProtocolError(Exception):
    """The peer answered, but not as an RTSP server does."""


def _where(parts: urlsplit) -> str:  # type: ignore[valid-type]
    return f"{parts.hostname}:{parts.port or ('322' if parts.scheme == 'rtsps' else '554')}"


def _plain_url(parts) -> str:  # type: ignore[no-untyped-def]
    """The URL without user and password (what goes on the request line and in messages)."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def _connect_error(exc: OSError, where: str, timeout_s: float) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host of {where}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer from {where} within {timeout_s:g} s (wrong address, or a firewall)"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where} (nothing listens on that port)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed ({exc.reason or exc})"
    return f"cannot connect to {where} ({exc.strerror or exc})"


def _digest(user: str, password: str, method: str, uri: str, challenge: str) -> str:
    """RFC 2617 Digest ``Authorization`` header value (MD5, with or without qop=auth)."""
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _AUTH_PARAM_RE.finditer(challenge)}
    realm, nonce = params.get("realm", ""), params.get("nonce", "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - the protocol's hash

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"{method}:{uri}")
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in [q.strip() for q in params.get("qop", "").split(",")]:
        cnonce, nc = os.urandom(8).hex(), "00000001"
        fields += [f'response="{md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")}"', "qop=auth",
                   f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        fields.append(f'response="{md5(f"{ha1}:{nonce}:{ha2}")}"')
    if params.get("opaque"):
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)


def _rtsp_exchange(sock: socket.socket, request: bytes) -> tuple[int, str, dict[str, str], bytes]:
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise _ProtocolError("closed the connection without an answer")
        data += chunk
        if len(data) > 65536:
            raise _ProtocolError("sent an answer too long to be RTSP")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("RTSP/") or not status[1].isdigit():
        raise _ProtocolError(f"does not answer as an RTSP server ({lines[0][:60]!r})")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers.setdefault(key.strip().lower(), value.strip())
    length = int(headers.get("content-length", "0") or 0)
    while len(body) < min(length, 65536):
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return int(status[1]), status[2] if len(status) > 2 else "", headers, body


def probe_rtsp(uri: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """None if ``DESCRIBE`` answers with a video stream, else why not (one line, no secrets)."""
    parts = urlsplit(uri)
    where = _where(parts)
    url = _plain_url(parts)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    try:
        raw = socket.create_connection((parts.hostname, parts.port or (322 if parts.scheme == "rtsps" else 554)),
                                       timeout=timeout_s)
    except OSError as exc:
        return _connect_error(exc, where, timeout_s)
    try:
        raw.settimeout(timeout_s)
        sock = ssl.create_default_context().wrap_socket(raw, server_hostname=parts.hostname) \
            if parts.scheme == "rtsps" else raw
        cseq, auth = 1, ""
        while True:
            request = (f"DESCRIBE {url} RTSP/1.0\r\nCSeq: {cseq}\r\nAccept: application/sdp\r\n"
                       f"User-Agent: edge-inspector check-config\r\n{auth}\r\n").encode("utf-8")
            code, reason, headers, body = _rtsp_exchange(sock, request)
            if code != 401 or auth or not user:
                break
            challenge = headers.get("www-authenticate", "")
            if challenge.lower().startswith("digest"):
                auth = f"Authorization: {_digest(user, password, 'DESCRIBE', url, challenge)}\r\n"
            else:
                import base64

                token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
                auth = f"Authorization: Basic {token}\r\n"
            cseq += 1
    except _ProtocolError as exc:
        return f"{where} {exc}"
    except OSError as exc:
        return _connect_error(exc, where, timeout_s)
    finally:
        raw.close()
    return _rtsp_verdict(code, reason, body, parts.path or "/", bool(user), where)


def _rtsp_verdict(code: int, reason: str, body: bytes, path: str, had_user: bool, where: str) -> str | None:
    if code == 200:
        if b"m=video" not in body:
            return f"the stream at {path} on {where} has no video track"
        return None
    if code == 401:
        return (f"authentication failed at {where} (401): wrong user or password" if had_user
                else f"{where} wants a user and password (401): put them in the URI, rtsp://user:password@host/path")
    if code == 403:
        return f"access to {path} on {where} is forbidden (403) for this user"
    if code == 404:
        return f"no stream at {path} on {where} (404 Not Found): check the path in the camera's manual"
    return f"{where} answered {code} {reason}".rstrip()


def probe_http(uri: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """None if the HTTP stream answers 200, else why not (one line, no secrets)."""
    parts = urlsplit(uri)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    url = _plain_url(parts)
    handlers: list[urllib.request.BaseHandler] = []
    if parts.username:
        passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        passwords.add_password(None, url, unquote(parts.username), unquote(parts.password or ""))
        handlers += [urllib.request.HTTPBasicAuthHandler(passwords), urllib.request.HTTPDigestAuthHandler(passwords)]
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "edge-inspector check-config"}),
                         timeout=timeout_s):
            return None
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return (f"authentication failed at {where} (401): wrong user or password" if parts.username
                    else f"{where} wants a user and password (401): put them in the URI")
        if exc.code == 404:
            return f"no stream at {parts.path or '/'} on {where} (404 Not Found)"
        return f"{where} answered {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, OSError):
            return _connect_error(reason, where, timeout_s)
        return f"cannot reach {where} ({reason})"
    except OSError as exc:
        return _connect_error(exc, where, timeout_s)


def probe_stream(uri: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """Probe an rtsp(s) or http(s) camera URI; None when it answers as a stream should."""
    scheme = urlsplit(uri).scheme
    if scheme in ("rtsp", "rtsps"):
        return probe_rtsp(uri, timeout_s)
    if scheme in ("http", "https"):
        return probe_http(uri, timeout_s)
    raise ValueError(f"not a network stream URI: {scheme}")
