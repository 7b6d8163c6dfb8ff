"""A Sparkplug B edge node: each camera and microphone as a device, for Ignition and other SCADA.

Topics ``spBv1.0/<group>/<NBIRTH|NDEATH|DBIRTH|DDATA|NCMD>/<edge_node>[/<source>]``.  On every
connection the node publishes NBIRTH (with ``bdSeq`` and ``Node Control/Rebirth``) and one
DBIRTH per source with its current metrics; every event of a source then publishes a DDATA with
the metrics it changed.  The broker holds the NDEATH (same ``bdSeq``) as the connection's last
will, so a daemon that dies is declared dead; a clean stop publishes it itself.  An NCMD with
``Node Control/Rebirth = true`` (what a host sends when it lost track) makes the node publish its
births again.  ``bdSeq`` increases with every connection and survives restarts (it is kept in
the journal database like a sink cursor); ``seq`` counts 0..255 from each NBIRTH.

Sparkplug reports state, not history: BIRTH/DATA go at QoS 0 as the specification says, and
after an outage the births carry the current values.  The event history itself is the plain
MQTT sink's (store-and-forward); both run side by side on separate connections, because each
needs its own last will.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from edge_inspector.events.journal import Journal
from edge_inspector.events.sink import LiveSink, Record
from edge_inspector.sinks.mqtt import BrokerConnection, new_client
from edge_inspector.sinks.mqtt_config import MqttConfig
from edge_inspector.sinks.sparkplug_payload import (
    BOOLEAN,
    DOUBLE,
    REBIRTH,
    STRING,
    UINT64,
    decode,
    encode,
    now_ms,
)

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
BDSEQ_CURSOR = "sparkplug-bdseq"


@dataclass
class DeviceState:
    """What a source's Sparkplug metrics show."""

    label: str = ""
    score: float = 0.0
    defects: int = 0
    latency_ms: float = 0.0
    online: bool = False

    def metrics(self, ts: int | None = None) -> list[tuple[str, int, Any, int | None]]:
        return [("Inspection/Last Label", STRING, self.label, ts), ("Inspection/Score", DOUBLE, self.score, ts),
                ("Inspection/Defect Count", UINT64, self.defects, ts),
                ("Inspection/Latency ms", DOUBLE, self.latency_ms, ts), ("Online", BOOLEAN, self.online, ts)]


def _apply(state: DeviceState, kind: str, ev: dict[str, Any]) -> list[tuple[str, int, Any, int | None]]:
    """Update ``state`` from one event; the metrics that changed (for a DDATA)."""
    ts = now_ms()
    if kind == "status":
        state.online = ev.get("state") == "online"
        return [("Online", BOOLEAN, state.online, ts)]
    state.label = str(ev.get("label", ""))
    state.score = float(ev.get("score") or 0.0)
    state.latency_ms = float(ev.get("latency_ms") or 0.0)
    changed = [("Inspection/Last Label", STRING, state.label, ts), ("Inspection/Score", DOUBLE, state.score, ts),
               ("Inspection/Latency ms", DOUBLE, state.latency_ms, ts)]
    if kind == "defect" and (ev.get("extra") or {}).get("ongoing") is not True:  # an episode counts once
        state.defects += 1
        changed.append(("Inspection/Defect Count", UINT64, state.defects, ts))
    return changed


class SparkplugSink(LiveSink):
    """The edge node; its thread owns its paho client like the MQTT sink's does."""

    def __init__(self, cfg: MqttConfig, journal: Journal, sources: list[str]) -> None:
        super().__init__("sparkplug", idle_s=0.05)
        self.cfg = cfg
        self.journal = journal
        self.devices = {name: DeviceState() for name in sources}
        base = f"{NAMESPACE}/{cfg.group}"
        self._topics = {k: f"{base}/{k}/{cfg.edge_node}" for k in ("NBIRTH", "NDEATH", "NCMD", "DBIRTH", "DDATA")}
        self._conn = BrokerConnection(cfg, "sparkplug")
        self._client: Any = None
        self._gone = False
        self._rebirth = False
        self.bd_seq = journal.cursor(BDSEQ_CURSOR)
        self._seq = 0
        self.births = 0

    def counters(self) -> dict[str, Any]:
        return {"connected": self._client is not None, "bdSeq": self.bd_seq, "births": self.births,
                "dropped_in_memory": self.dropped_in_memory}

    # -- state from events -----------------------------------------------------------------
    def _deliver(self, batch: list[Record]) -> None:
        for rec in batch:
            kind, _, source = rec.topic.partition(".")
            if kind not in ("defect", "verdict", "status"):
                continue
            source = source.split(".")[-1] if kind == "defect" else source
            new = source not in self.devices
            state = self.devices.setdefault(source, DeviceState())
            changed = _apply(state, kind, json.loads(rec.payload))
            if self._client is None:
                continue
            if new:
                self._publish(f"{self._topics['DBIRTH']}/{source}", state.metrics())
            else:
                self._publish(f"{self._topics['DDATA']}/{source}", changed)
        self._idle()

    def _run(self) -> None:
        if self._client is not None:  # restarted after a failure: end the session, start a new one
            self._finish()  # NDEATH, as a host expects before the next NBIRTH (bdSeq + 1)
        super()._run()

    # -- connection --------------------------------------------------------------------------
    def _idle(self) -> None:
        if self._client is None:
            self._connect()
            return
        if self._rebirth:
            self._rebirth = False
            self._births()
        if self._client.loop(0.0) != 0 or self._gone:
            log.warning("sparkplug: connection lost; reconnecting")
            self._drop()

    def _connect(self) -> None:
        self.bd_seq = 0 if self.bd_seq is None else (self.bd_seq + 1) % 256
        self.journal.set_cursor(BDSEQ_CURSOR, self.bd_seq)  # the next connection uses the next one
        death = encode(0, [("bdSeq", UINT64, self.bd_seq, None)])
        client = new_client(self.cfg, f"{self.cfg.effective_client_id}-spb", (self._topics["NDEATH"], death, 1, False))
        if not self._conn.open(client):
            self._sleep(1.0)
            return
        self._gone = False
        client.on_disconnect = lambda c, u, f, rc, p: setattr(self, "_gone", True)
        client.on_message = self._on_command
        client.subscribe(self._topics["NCMD"], qos=1)
        self._client = client
        self._births()

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            if not self._stopping:
                self._cond.wait(seconds)

    def _births(self) -> None:
        self._seq = -1  # NBIRTH is seq 0
        self._publish(self._topics["NBIRTH"], [("bdSeq", UINT64, self.bd_seq, None), (REBIRTH, BOOLEAN, False, None)])
        for name, state in self.devices.items():
            self._publish(f"{self._topics['DBIRTH']}/{name}", state.metrics())
        self.births += 1

    def _publish(self, topic: str, metrics: list[tuple[str, int, Any, int | None]]) -> None:
        self._seq = (self._seq + 1) % 256
        self._client.publish(topic, encode(self._seq, metrics), qos=0)

    def _on_command(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            metrics = decode(bytes(msg.payload))["metrics"]
        except Exception as err:  # a malformed command must not stop the node
            log.warning("sparkplug: ignoring an NCMD that is not a Sparkplug B payload (%s)", err)
            return
        if metrics.get(REBIRTH) is True:
            log.info("sparkplug: rebirth requested")
            self._rebirth = True

    def _drop(self) -> None:
        client, self._client = self._client, None
        try:
            client.disconnect()
        except Exception:  # already broken
            pass

    def _finish(self) -> None:
        if self._client is None:
            return
        try:  # a clean stop declares the node dead itself, like the will would
            info = self._client.publish(self._topics["NDEATH"], encode(0, [("bdSeq", UINT64, self.bd_seq, None)]), qos=1)
            for _ in range(20):
                if info.is_published() or self._client.loop(0.05) != 0:
                    break
        finally:
            self._drop()
