"""Every sink's thread is supervised: a fault injected into its work is counted and the sink comes back.

Each sink runs against the real thing it talks to (mosquitto for MQTT and Sparkplug B, a
pymodbus client for the PLC bridge, a ZeroMQ subscriber for the publisher).  The fault fires
once inside the sink's own thread; the test asserts the restart is counted under the sink's
name, that the sink works again afterwards, and what it owes its consumer (MQTT: every event,
in order; Sparkplug: a new session with births; PLC: a live heartbeat and fresh decisions).
A sink that declares it cannot restart stops the bus instead, naming itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import zmq

from conftest import fail_once, free_port, wait_until
from edge_inspector.events import EventBus, Journal
from edge_inspector.events.sink import LiveSink, Record
from edge_inspector.supervision import ThreadHealth
from mqtt_broker import Broker, Collector, broker  # noqa: F401  (fixture)
from test_events import visual


def test_publisher_failure_restarts_it_and_subscribers_go_on(tmp_path: Path) -> None:
    health = ThreadHealth()
    bus = EventBus("tcp://127.0.0.1:*", Journal(tmp_path / "j.db"), None, heartbeat_s=0, health=health)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(bus.endpoint)
    try:
        pub = next(s for s in bus.sinks if s.name == "zmq-pub")
        assert wait_until(lambda: bus.publish_verdict(visual()) is not None and sub.poll(50), 10)
        fired = fail_once(pub, "_deliver", RuntimeError("injected fault in the publisher"))
        bus.publish_verdict(visual(frame=1))  # lost with its batch: subscribers fill it from catch-up
        assert wait_until(lambda: bool(fired), 5)
        after = bus.publish_verdict(visual(frame=2))["seq"]
        seen: list[int] = []
        deadline = time.monotonic() + 10
        while after not in seen and time.monotonic() < deadline:
            if sub.poll(100):
                seen.append(json.loads(sub.recv_multipart()[1])["seq"])
                continue
            bus.publish_verdict(visual(frame=3))  # the restart waits out a backoff first
            after = bus.journal.last_seq
        assert after in seen
        assert health.restarts == {"zmq-pub": 1} and health.fatal is None and bus.alive
    finally:
        sub.close(0)
        ctx.term()
        bus.close()
        bus.journal.close()


def test_mqtt_sink_failure_restarts_it_and_loses_nothing(tmp_path: Path, broker: Broker) -> None:
    from edge_inspector.sinks.mqtt import MqttSink
    from edge_inspector.sinks.mqtt_config import MqttConfig

    prefix = "edge-inspector/sup"
    collector = Collector(broker, f"{prefix}/#")
    journal = Journal(tmp_path / "j.db")
    sink = MqttSink(MqttConfig(url=broker.url, topic_prefix=prefix), journal)
    health = ThreadHealth()
    bus = EventBus("tcp://127.0.0.1:*", journal, None, heartbeat_s=0, sinks=[sink], health=health)
    try:
        fired = fail_once(sink, "_send", RuntimeError("injected fault in the MQTT sink"))
        sent = [bus.publish_verdict(visual(frame=i))["seq"] for i in range(20)]
        assert wait_until(lambda: bool(fired), 5)

        def seqs() -> list[int]:
            out: list[int] = []
            for topic, payload, _ in collector.snapshot():
                if not topic.endswith("/status") and json.loads(payload)["seq"] not in out:
                    out.append(json.loads(payload)["seq"])
            return out

        assert wait_until(lambda: seqs() == sent, 15), seqs()  # every event, in order, once each
        assert wait_until(lambda: sink.counters()["cursor"] == sent[-1], 5)  # acknowledged by the broker
        assert health.restarts == {"mqtt": 1} and bus.alive
    finally:
        bus.close()
        journal.close()
        collector.close()


def test_sparkplug_failure_restarts_the_node_with_a_new_session(tmp_path: Path, broker: Broker) -> None:
    from edge_inspector.sinks.mqtt_config import MqttConfig
    from edge_inspector.sinks.sparkplug import SparkplugSink
    from edge_inspector.sinks.sparkplug_payload import decode

    collector = Collector(broker, "spBv1.0/#")
    journal = Journal(tmp_path / "j.db")
    cfg = MqttConfig(url=broker.url, topic_prefix="edge-inspector/sup", sparkplug=True, group="plant", edge_node="n1")
    node = SparkplugSink(cfg, journal, ["cam0"])
    health = ThreadHealth()
    bus = EventBus("tcp://127.0.0.1:*", journal, None, heartbeat_s=0, sinks=[node], health=health)

    def births() -> list[dict[str, Any]]:
        return [decode(p) for t, p, _ in collector.snapshot() if t == "spBv1.0/plant/NBIRTH/n1"]

    try:
        assert wait_until(lambda: len(births()) == 1, 10)
        fired = fail_once(node, "_deliver", RuntimeError("injected fault in the Sparkplug node"))
        bus.publish_verdict(visual("crack", frame=1), "verdict")
        assert wait_until(lambda: bool(fired), 5)
        assert wait_until(lambda: len(births()) == 2, 15)  # reconnected: NBIRTH, DBIRTH with the state
        first, again = births()
        assert again["metrics"]["bdSeq"] == (first["metrics"]["bdSeq"] + 1) % 256
        deaths = [decode(p) for t, p, _ in collector.snapshot() if t == "spBv1.0/plant/NDEATH/n1"]
        assert [d["metrics"]["bdSeq"] for d in deaths] == [first["metrics"]["bdSeq"]]  # the old session ended
        bus.publish_verdict(visual("spot", frame=2), "verdict")
        assert wait_until(lambda: any(t == "spBv1.0/plant/DDATA/n1/cam0" and
                                      decode(p)["metrics"].get("Inspection/Last Label") == "spot"
                                      for t, p, _ in collector.snapshot()), 10)
        assert health.restarts == {"sparkplug": 1} and bus.alive
    finally:
        bus.close()
        journal.close()
        collector.close()


def test_plc_bridge_failure_restarts_its_servers(tmp_path: Path) -> None:
    pytest.importorskip("pymodbus")
    from pymodbus.client import ModbusTcpClient

    from edge_inspector.sinks import plc_modbus as mb
    from edge_inspector.sinks.plc import PlcBridge, defect_codes
    from edge_inspector.sinks.plc_config import PlcConfig

    health = ThreadHealth()
    port = free_port()
    plc = PlcBridge(PlcConfig(modbus_listen=f"127.0.0.1:{port}", opcua_endpoint="", heartbeat_ms=50), ["cam0"],
                    defect_codes(("ok", "scratch")), health)
    bus = EventBus("tcp://127.0.0.1:*", Journal(tmp_path / "j.db"), None, heartbeat_s=0, sinks=[plc])
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=0)

    def registers() -> list[int] | None:
        if not client.connected and not client.connect():
            return None
        rr = client.read_holding_registers(0, count=mb.ACK + 1)
        return None if rr.isError() else list(rr.registers)

    try:
        bus.publish_status("cam0", "online")
        assert wait_until(lambda: (r := registers()) is not None and bool(r[mb.STATUS] & mb.BIT_ONLINE), 10)
        tracker = plc.trackers[0]
        fired = fail_once(tracker, "tick", RuntimeError("injected fault in the PLC bridge"))
        assert wait_until(lambda: bool(fired), 5)
        client.close()  # the failed loop's server is gone; the PLC reconnects like any Modbus master
        beats: list[int] = []
        assert wait_until(lambda: (r := registers()) is not None and (beats.append(r[mb.HEARTBEAT]) or len(set(beats)) > 2), 15)
        assert health.restarts == {"plc": 1} and bus.alive
        regs = registers()
        assert regs is not None and regs[mb.STATUS] & mb.BIT_ONLINE  # the decisions' state outlived the restart
    finally:
        client.close()
        bus.close()
        bus.journal.close()


class _Unrestartable(LiveSink):
    restartable = False

    def _deliver(self, batch: list[Record]) -> None:
        raise RuntimeError("injected fault in a sink that cannot restart")


def test_a_sink_that_cannot_restart_stops_the_bus_naming_itself(tmp_path: Path) -> None:
    health = ThreadHealth()
    sink = _Unrestartable("fragile")
    bus = EventBus("tcp://127.0.0.1:*", Journal(tmp_path / "j.db"), None, heartbeat_s=0, sinks=[sink], health=health)
    try:
        bus.publish_verdict(visual())
        assert wait_until(lambda: not bus.alive, 5)
        assert bus.failed_sinks() == ["fragile: RuntimeError: injected fault in a sink that cannot restart"]
        assert health.failures == {"fragile": 1} and (health.fatal or "").startswith("fragile:")
    finally:
        bus.close()
        bus.journal.close()
