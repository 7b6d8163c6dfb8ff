"""ZeroMQ server-side plumbing shared by every socket the daemon binds: binding and CURVE.

Each ZeroMQ sink (the PUB publisher, the catch-up ROUTER, any future socket) binds through
:func:`bind` and is secured by one :class:`ServerSecurity` object built once per daemon, so an
authentication policy (a ZAP authenticator with an allow-list of client keys) is added in one
place and applies to all of them alike.
"""

from __future__ import annotations

from pathlib import Path

import zmq

from edge_inspector.errors import UserError

_ENDPOINT_HINT = "expected tcp://host:port, ipc:///path or inproc://name"


def bind(sock: zmq.Socket, endpoint: str, what: str) -> str:
    """Bind and return the actual endpoint (``tcp://127.0.0.1:*`` picks a free port)."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as err:
        hint = f"; {_ENDPOINT_HINT}" if err.errno in (zmq.EINVAL, zmq.EPROTONOSUPPORT) else ""
        raise UserError(f"{what} endpoint {endpoint!r}: cannot bind ({err.strerror}){hint}") from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def check_endpoint_bindable(endpoint: str) -> str | None:
    """Try binding a PUB socket on ``endpoint``; the error message, or None if it works."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        bind(sock, endpoint, "publisher")
        return None
    except UserError as err:
        return str(err)
    finally:
        sock.close(0)
        ctx.term()


def load_curve_secret(value: str) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a 40-character Z85 secret or a ZeroMQ certificate file."""
    if len(value) == 40 and not Path(value).exists():
        secret = value.encode("ascii")
        try:
            return zmq.curve_public(secret), secret
        except (zmq.ZMQError, ValueError) as err:
            raise UserError(f"curve_server_secret: not a valid Z85 secret key ({err})") from None
    from zmq.auth import load_certificate

    try:
        public, secret = load_certificate(value)
    except (OSError, ValueError) as err:
        raise UserError(f"curve_server_secret: cannot read key file {value} ({err})") from None
    if not secret:
        raise UserError(f"curve_server_secret: key file {value} holds no secret key")
    return public, secret


class ServerSecurity:
    """How every server socket of one daemon is secured (today: CURVE encryption, or none).

    One instance per daemon, shared by all ZeroMQ sinks; :meth:`apply` is called on each socket
    before it binds.  Client authentication (a ZAP handler on ``ctx``) belongs here too, so it
    covers every socket at once.
    """

    def __init__(self, ctx: zmq.Context, curve_server_secret: str | None = None) -> None:
        self.ctx = ctx
        self._keys = load_curve_secret(curve_server_secret) if curve_server_secret else None
        #: Z85 public key subscribers pass as ``curve_serverkey`` (None without CURVE).
        self.public_key: str | None = self._keys[0].decode("ascii") if self._keys else None

    def apply(self, sock: zmq.Socket) -> None:
        if self._keys is not None:
            sock.curve_server = True
            sock.curve_publickey, sock.curve_secretkey = self._keys

    def close(self) -> None:
        """Release what the policy holds (nothing yet; an authenticator thread later)."""
