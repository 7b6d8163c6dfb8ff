"""Where a subscriber finds its daemon: endpoints and CURVE public key from the daemon's own config.

On the station itself ``tail --config /etc/edge-inspector/config.toml`` should just work, even
when the daemon binds ``tcp://0.0.0.0:6000``, uses another catch-up port or CURVE: the same file
says all of it.  A bind address is not a connect address, so "every interface" becomes the
loopback address; the public key is derived from the daemon's secret key (which is why this needs
read access to that key file: on the station, as its user or root).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import zmq

from edge_inspector.errors import UserError

_ANY_HOST = re.compile(r"^tcp://(\*|0\.0\.0\.0|\[::\]|::)(?=:\d+$)")


class DaemonEndpoints(NamedTuple):
    endpoint: str
    catchup: str | None  # None: the daemon serves no catch-up
    server_public_key: str | None  # Z85; None without CURVE


def connect_address(bind_address: str) -> str:
    """``tcp://0.0.0.0:5556`` / ``tcp://*:5556`` -> ``tcp://127.0.0.1:5556``; others unchanged."""
    return _ANY_HOST.sub("tcp://127.0.0.1", bind_address)


def daemon_endpoints(config: Path) -> DaemonEndpoints:
    """What a subscriber on the station needs to reach the daemon that runs ``config``."""
    from edge_inspector.config import load_config
    from edge_inspector.events.curve import load_public_key, load_secret_key

    pub = load_config(config).publisher
    key = None
    if pub.curve_secret_key:
        value = pub.curve_secret_key
        if len(value) == 40 and not Path(value).exists():  # a Z85 secret written into the config
            try:
                key = zmq.curve_public(value.encode("ascii")).decode("ascii")
            except (ValueError, zmq.ZMQError):
                raise UserError(f"{config}: publisher.curve_secret_key is not a Z85 secret key") from None
        else:
            try:
                key = load_secret_key(value, "publisher.curve_secret_key")[0].decode("ascii")
            except UserError:  # not readable as a secret by this user: its public half is enough
                key = load_public_key(value, "publisher.curve_secret_key").decode("ascii")
    catchup = connect_address(pub.catchup_endpoint) if pub.catchup_endpoint else None
    return DaemonEndpoints(connect_address(pub.endpoint), catchup, key)
