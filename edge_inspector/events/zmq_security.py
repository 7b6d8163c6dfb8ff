"""ZeroMQ server-side plumbing shared by every socket the daemon binds: binding and CURVE.

Each ZeroMQ sink (the PUB publisher, the catch-up ROUTER, any future socket) binds through
:func:`bind` and is secured by one :class:`ServerSecurity` object built once per daemon, so an
authentication policy (a ZAP authenticator with an allow-list of client keys) is added in one
place and applies to all of them alike (key files: :mod:`edge_inspector.events.curve`).
"""

from __future__ import annotations

import logging

import zmq
import zmq.auth
from zmq.auth.base import Authenticator
from zmq.auth.thread import ThreadAuthenticator

from edge_inspector.errors import UserError
from edge_inspector.events.curve import ALLOW_ANY, allowed_client_keys, load_secret_key

log = logging.getLogger(__name__)

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


class ServerSecurity:
    """How every server socket of one daemon is secured: CURVE with an allow-list, or nothing.

    One instance per daemon, shared by all ZeroMQ sinks; :meth:`apply` is called on each socket
    before it binds.  With a secret key, a ZAP authenticator (pyzmq's ``ThreadAuthenticator``) on
    the daemon's context checks every connecting client's public key against the ``*.key`` files
    of ``allowed_clients`` (or lets any key pair in with ``"*"``): the PUB, the catch-up ROUTER and
    any future socket alike.  :meth:`reload` re-reads the directory (the daemon does on SIGHUP).
    """

    ZAP_DOMAIN = b"edge-inspector"

    def __init__(self, ctx: zmq.Context, secret_key: str | None = None, allowed_clients: str | None = None) -> None:
        self.ctx = ctx
        self._keys = load_secret_key(secret_key, "publisher.curve_secret_key") if secret_key else None
        #: Z85 public key subscribers pass as ``curve_serverkey`` (None without CURVE).
        self.public_key: str | None = self._keys[0].decode("ascii") if self._keys else None
        self.allowed_clients = allowed_clients
        self.auth: ThreadAuthenticator | None = None
        self.allowed: dict[str, bytes] = {}
        if self._keys is None:
            return
        if not allowed_clients:
            raise UserError('publisher.curve_allowed_clients: needed with curve_secret_key: a directory of the '
                            'client NAME.key files allowed to connect, or "*" for any client (no authentication)')
        if allowed_clients != ALLOW_ANY:
            self.allowed = allowed_client_keys(allowed_clients, "publisher.curve_allowed_clients")
        self.auth = ThreadAuthenticator(ctx, log=logging.getLogger("edge_inspector.zap"))
        self.auth.start()
        self._configure()

    def _configure(self) -> None:
        assert self.auth is not None
        if self.allowed_clients == ALLOW_ANY:
            self.auth.configure_curve(domain=self.ZAP_DOMAIN.decode(), location=zmq.auth.CURVE_ALLOW_ANY)
            log.warning("CURVE: any client with a key pair is let in (curve_allowed_clients = \"*\"): "
                        "events are encrypted, clients are not authenticated")
        else:
            # the authenticator's table is replaced in one assignment: requests in flight see the
            # old list or the new one, never a half-loaded one
            self.auth.certs[self.ZAP_DOMAIN.decode()] = {key: True for key in self.allowed.values()}
            self.auth.allow_any = False
            log.info("CURVE: %d client key(s) allowed from %s", len(self.allowed), self.allowed_clients)

    def reload(self) -> None:
        """Re-read the allow-list directory; a broken one keeps the current list (logged)."""
        if self.auth is None or self.allowed_clients in (None, ALLOW_ANY):
            return
        try:
            self.allowed = allowed_client_keys(self.allowed_clients, "publisher.curve_allowed_clients")
        except UserError as err:
            log.error("CURVE allow-list not reloaded, the previous one stays: %s", err)
            return
        self._configure()

    @property
    def alive(self) -> bool:
        """The authenticator thread runs (True without CURVE)."""
        return self.auth is None or (self.auth.thread is not None and self.auth.thread.is_alive())

    def apply(self, sock: zmq.Socket) -> None:
        if self._keys is not None:
            sock.curve_server = True
            sock.curve_publickey, sock.curve_secretkey = self._keys
            sock.zap_domain = self.ZAP_DOMAIN

    def close(self) -> None:
        """Stop the authenticator thread (or, if it died, release its sockets without waiting on it)."""
        auth, self.auth = self.auth, None
        if auth is None:
            return
        if auth.is_alive():
            auth.stop()
            return
        if auth.pipe is not None:  # stop() would send TERMINATE to a peer that is gone, and block
            auth.pipe.close(0)
            auth.pipe = None
        Authenticator.stop(auth)
