"""``[mqtt]``: where events go on an MQTT broker, and how to log in.  No paho import here.

The broker may be absent when the daemon starts (the MQTT sink keeps the events in the journal
and delivers them when it connects), so nothing here reaches for the network; what can be
decided from the config alone (URL, topic prefix, files and variables holding secrets) is.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge_inspector.errors import UserError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_TOPIC_LEVEL = re.compile(r"^[^#+$/][^#+]*$")


def station_name() -> str:
    """The host name as a topic level (no dots or spaces): the default station identity."""
    return re.sub(r"[^A-Za-z0-9_\-]", "-", socket.gethostname().split(".")[0]) or "station"


class MqttConfig(BaseModel):
    """An MQTT broker to forward events to, optionally also as a Sparkplug B edge node."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    url: str  # mqtt://host:1883 or mqtts://host:8883
    topic_prefix: str = Field(default_factory=lambda: f"edge-inspector/{station_name()}")
    qos: int = Field(1, ge=0, le=2)
    client_id: str | None = None  # default: the topic prefix with '/' as '-'
    username: str | None = None
    password_file: Path | None = None  # first line is the password
    password_env: str | None = None  # or: the name of an environment variable holding it
    ca_file: Path | None = None  # mqtts: CA bundle (default: the system's)
    cert_file: Path | None = None  # mqtts: client certificate and key, for brokers that ask
    key_file: Path | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    topics: list[str] = Field(default_factory=lambda: ["defect.", "verdict.", "status.", "heartbeat"])
    max_inflight: int = Field(1000, ge=1, le=65000)  # QoS 1/2 messages awaiting the broker's ack
    sparkplug: bool = False
    group: str = "edge-inspector"  # Sparkplug group id
    edge_node: str = Field(default_factory=station_name)  # Sparkplug edge node id

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        broker_address(url)
        return url

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        if not prefix or prefix.startswith("/") or prefix.endswith("/") or not _TOPIC_LEVEL.match(prefix):
            raise ValueError(f"{prefix!r} is not a topic prefix: levels separated by '/', no leading or "
                             "trailing '/', no '+', '#' or leading '$' (e.g. \"edge-inspector/line1\")")
        return prefix

    @field_validator("group", "edge_node")
    @classmethod
    def _sparkplug_id(cls, value: str) -> str:
        if not value or any(c in value for c in "/+#"):
            raise ValueError(f"{value!r}: a Sparkplug id must be non-empty without '/', '+' or '#'")
        return value

    @property
    def effective_client_id(self) -> str:
        return self.client_id or self.topic_prefix.replace("/", "-")


def broker_address(url: str) -> tuple[str, str, int]:
    """``mqtt[s]://host[:port]`` -> (scheme, host, port); ValueError naming what is wrong."""
    parsed = urlparse(url)
    if parsed.scheme not in DEFAULT_PORTS:
        raise ValueError(f"{url!r}: expected mqtt://host:1883 or mqtts://host:8883")
    if parsed.username is not None or parsed.password is not None:
        raise ValueError("put no user name or password in the URL: use username and password_file "
                         "(or password_env)")
    if not parsed.hostname:
        raise ValueError(f"{url!r}: no host (expected mqtt://host:1883)")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise ValueError(f"{url!r}: expected only scheme, host and port (mqtt://host:1883)")
    try:
        port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535") from None
    if not 0 < port < 65536:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535")
    return parsed.scheme, parsed.hostname, port


def load_password(cfg: MqttConfig) -> str | None:
    """The broker password from ``password_file`` or ``password_env`` (never logged)."""
    if cfg.password_file is not None:
        try:
            lines = cfg.password_file.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise UserError(f"mqtt.password_file: cannot read {cfg.password_file} ({err.strerror})") from None
        return lines[0] if lines else ""
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise UserError(f"mqtt.password_env: the environment variable {cfg.password_env} is not set")
        return value
    return None


def check_mqtt(cfg: MqttConfig) -> list[str]:
    """Problems ``check-config`` reports (files and variables; the broker may be down now)."""
    problems = []
    if cfg.password_file is not None and cfg.password_env:
        problems.append("mqtt.password_file: give password_file or password_env, not both")
    if (cfg.password_file is not None or cfg.password_env) and not cfg.username:
        problems.append("mqtt.username: a password is configured but no username")
    try:
        load_password(cfg)
    except UserError as err:
        problems.append(str(err))
    scheme = urlparse(cfg.url).scheme
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg, key)
        if path is None:
            continue
        if scheme != "mqtts":
            problems.append(f"mqtt.{key}: TLS files need an mqtts:// url")
        elif not path.is_file():
            problems.append(f"mqtt.{key}: file not found: {path}")
    if (cfg.cert_file is None) != (cfg.key_file is None):
        problems.append("mqtt.cert_file: a client certificate needs both cert_file and key_file")
    if cfg.sparkplug:
        try:
            import google.protobuf  # noqa: F401
        except ImportError:
            problems.append("mqtt.sparkplug: needs the protobuf package (pip install 'edge-inspector[mqtt]')")
    try:
        import paho.mqtt  # noqa: F401
    except ImportError:
        problems.append("mqtt: needs the paho-mqtt package (pip install 'edge-inspector[mqtt]')")
    return problems
