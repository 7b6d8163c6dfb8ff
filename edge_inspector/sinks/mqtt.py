"""The MQTT sink: every event on ``<topic_prefix>/<topic with '.' as '/'>``, store-and-forward.

It is a durable sink: what the broker has acknowledged (QoS 1 PUBACK) moves the sink's cursor
in the journal; while the broker is away (or the daemon is restarted meanwhile) events wait in
the journal and go out in ``seq`` order when it returns.  The payload is the event's JSON
exactly as on ZeroMQ.  ``<topic_prefix>/status`` is retained: ``online`` while connected, and
the broker publishes the last will ``offline`` if the daemon vanishes.

One paho-mqtt 2.x client per connection, driven from the sink's own thread (``client.loop``),
so no paho thread and no lock is shared with the rest of the daemon; a broken connection is
thrown away with whatever paho held, and the sink resends from its cursor on a fresh one.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

from edge_inspector.events.durable import Disconnected, DurableSink
from edge_inspector.events.journal import Journal
from edge_inspector.events.sink import Record
from edge_inspector.sinks.mqtt_config import MqttConfig, broker_address, load_password

log = logging.getLogger(__name__)

CONNACK_TIMEOUT_S = 5.0


def new_client(cfg: MqttConfig, client_id: str, will: tuple[str, bytes, int, bool] | None) -> Any:
    """A paho 2.x client for ``cfg`` (credentials, TLS, last will), not yet connected."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                         protocol=mqtt.MQTTv311)
    client.connect_timeout = CONNACK_TIMEOUT_S
    if cfg.username:
        client.username_pw_set(cfg.username, load_password(cfg))
    if broker_address(cfg.url)[0] == "mqtts":
        client.tls_set(
            ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
            certfile=str(cfg.cert_file) if cfg.cert_file else None,
            keyfile=str(cfg.key_file) if cfg.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    if will is not None:
        topic, payload, qos, retain = will
        client.will_set(topic, payload, qos=qos, retain=retain)
    return client


class BrokerConnection:
    """Connect-and-wait-for-CONNACK with one log line per change of state (no log flood while a
    broker is down for hours); shared by the MQTT and Sparkplug B sinks."""

    def __init__(self, cfg: MqttConfig, what: str) -> None:
        self.cfg = cfg
        self.what = what
        self._last_problem: str | None = None
        self.connects = 0

    def open(self, client: Any) -> bool:
        """Connect ``client`` and pump until the broker accepts it; False (logged once) if not."""
        _, host, port = broker_address(self.cfg.url)
        accepted: list[Any] = []
        client.on_connect = lambda c, u, flags, rc, props: accepted.append(rc)
        try:
            client.connect(host, port, keepalive=self.cfg.keepalive_s)
            deadline = time.monotonic() + CONNACK_TIMEOUT_S
            while not accepted and time.monotonic() < deadline:
                if client.loop(0.05) != 0:
                    break
        except (OSError, ssl.SSLError, ValueError) as err:
            return self._problem(f"cannot reach the broker at {self.cfg.url} ({_reason(err)})", client)
        if not accepted:
            return self._problem(f"the broker at {self.cfg.url} did not answer the connection", client)
        if accepted[0].is_failure:
            return self._problem(f"the broker at {self.cfg.url} refused the connection ({accepted[0]})", client)
        self.connects += 1
        log.info("%s: connected to %s as %s", self.what, self.cfg.url, client._client_id.decode())
        self._last_problem = None
        return True

    def _problem(self, text: str, client: Any) -> bool:
        if text != self._last_problem:
            log.warning("%s: %s; retrying, events wait in the journal", self.what, text)
            self._last_problem = text
        try:
            client.disconnect()
        except Exception:  # a half-open paho client: nothing more to release
            pass
        return False


def _reason(err: BaseException) -> str:
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def mqtt_topic(prefix: str, topic: str) -> str:
    """``defect.visual.cam0`` under ``edge-inspector/line1`` -> ``edge-inspector/line1/defect/visual/cam0``."""
    return f"{prefix}/{topic.replace('.', '/')}"


class MqttSink(DurableSink):
    """Events to an MQTT broker at QoS ``cfg.qos`` from the journal cursor ``mqtt``."""

    def __init__(self, cfg: MqttConfig, journal: Journal) -> None:
        super().__init__("mqtt", journal, topics=tuple(cfg.topics), max_inflight=cfg.max_inflight)
        self.cfg = cfg
        self.status_topic = f"{cfg.topic_prefix}/status"
        self._conn = BrokerConnection(cfg, "mqtt")
        self._client: Any = None
        self._mids: dict[int, int] = {}
        self._gone: str | None = None

    def counters(self) -> dict[str, Any]:
        return {**super().counters(), "connects": self._conn.connects}

    def _connect(self) -> bool:
        client = new_client(self.cfg, self.cfg.effective_client_id, (self.status_topic, b"offline", 1, True))
        client.max_inflight_messages_set(self.cfg.max_inflight)
        client.max_queued_messages_set(0)
        if not self._conn.open(client):
            return False
        self._mids.clear()
        self._gone = None
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        self._client = client
        return True

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        seq = self._mids.pop(mid, None)
        if seq is not None:
            self._acked(seq)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._gone = str(rc)

    def _send(self, records: list[Record]) -> None:
        client = self._client
        prefix, qos = self.cfg.topic_prefix, self.cfg.qos
        for rec in records:
            info = client.publish(mqtt_topic(prefix, rec.topic), rec.payload, qos=qos)
            if info.rc != 0:
                raise Disconnected(f"publish failed with code {info.rc}")
            if qos == 0:
                self._acked(rec.seq)  # nothing to wait for: handed to the socket is delivered
            else:
                self._mids[info.mid] = rec.seq

    def _pump(self, timeout_s: float) -> None:
        rc = self._client.loop(timeout_s)
        if rc != 0 or self._gone is not None:
            raise Disconnected(self._gone or f"network loop ended with code {rc}")

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self._stopping and self._gone is None:  # a clean stop says so; a crash leaves the will
                info = client.publish(self.status_topic, b"offline", qos=1, retain=True)
                deadline = time.monotonic() + 1.0
                while not info.is_published() and time.monotonic() < deadline and client.loop(0.05) == 0:
                    pass
            client.disconnect()
            client.loop(0.05)
        except Exception as err:  # the connection is being thrown away anyway
            log.debug("mqtt: disconnect: %s", err)
