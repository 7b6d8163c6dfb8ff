"""Benchmarks of the plant integrations: MQTT throughput and outage drain, PLC decision latency.

Each runs the real pieces on loopback: a mosquitto broker started here (Debian's ``mosquitto``),
the event bus with its SQLite journal, the MQTT sink, a paho subscriber in a process of its own;
the PLC bridge with a pymodbus client in another process polling it as a PLC would.
"""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

Progress = Callable[[str], None]
PREFIX = "bench/station"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listen_port() -> int:
    """A free port below Linux's ephemeral range (32768+) for a server that will be stopped and
    restarted: while it is down, clients retrying to connect to a port inside that range can be
    handed it as their own source port (a TCP self-connection) and keep the restart from binding."""
    import random

    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port between 20000 and 32000")


def mosquitto_path() -> str | None:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return exe if Path(exe).exists() else None


class Broker:
    """mosquitto on a free loopback port, with persistence so a restart keeps queued messages
    (the tests use it too)."""

    def __init__(self, workdir: Path) -> None:
        exe = mosquitto_path()
        if exe is None:
            raise RuntimeError("mosquitto is not installed (./setup.sh --dev installs it)")
        self.exe, self.port, self.dir = exe, listen_port(), workdir
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {workdir}/\nuser {getpass.getuser()}\nmax_queued_messages 0\n"
                             f"log_dest file {workdir}/mosquitto.log\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
        log = self.conf.with_name("mosquitto.log")
        tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
        raise RuntimeError(f"mosquitto did not start: {tail}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # it saves its persistence database
            self.proc.wait(10)
        self.proc = None


def _subscribe(port: int, seen: Any, ready: Any, stop: Any) -> None:
    """Child process: count distinct event seqs on ``PREFIX/#`` (persistent session, QoS 1)
    into the shared ``seen`` array (a consumer is another program, not a thread of the station)."""
    import paho.mqtt.client as mqtt

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic == f"{PREFIX}/status":  # the station's retained online/offline, not an event
            return
        seq = json.loads(msg.payload)["seq"]
        if seq < len(seen):
            seen[seq] = 1

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub", clean_session=False)
    client.reconnect_delay_set(0.1, 0.5)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{PREFIX}/#", qos=1)
    client.on_message = on_message
    client.on_subscribe = lambda c, u, mid, rc, p: ready.set()
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    stop.wait()
    client.loop_stop()
    client.disconnect()


class _Subscriber:
    """The subscriber process and what it has seen so far."""

    def __init__(self, port: int, capacity: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._seen = ctx.Array("b", capacity + 2, lock=False)
        self._stop = ctx.Event()
        ready = ctx.Event()
        self._proc = ctx.Process(target=_subscribe, args=(port, self._seen, ready, self._stop), daemon=True)
        self._proc.start()
        if not ready.wait(30):
            raise RuntimeError("the subscriber process did not subscribe")

    def has(self, seq: int) -> bool:
        return bool(self._seen[seq])

    def count(self, first: int, last: int) -> int:
        return sum(self._seen[first:last + 1])

    def close(self) -> None:
        self._stop.set()
        self._proc.join(10)


@contextmanager
def _station(tmp: Path, broker: Broker) -> Iterator[Any]:
    from edge_inspector.events.bus import EventBus
    from edge_inspector.events.journal import Journal
    from edge_inspector.sinks.mqtt import MqttSink
    from edge_inspector.sinks.mqtt_config import MqttConfig

    journal = Journal(tmp / "journal.sqlite3")
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}", topic_prefix=PREFIX, client_id="bench-station")
    bus = EventBus("tcp://127.0.0.1:*", journal, None, heartbeat_s=60.0, linger_ms=0, sinks=[MqttSink(cfg, journal)])
    try:
        yield bus
    finally:
        bus.close(timeout_s=3.0)
        journal.close()


def _verdict(i: int) -> Any:
    from edge_inspector.values import Verdict

    return Verdict("cam0", "visual", "ok", 0.01, False, time.time(), time.monotonic(), "visual_cnn", "0" * 64,
                   frame=i, extra={"probs": {"ok": 0.99, "scratch": 0.01}, "batch": 8,
                                   "timing_ms": {"queue_wait": 1.0, "preprocess": 2.0, "inference": 10.0}})


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def mqtt_throughput(n_events: int, progress: Progress | None = None) -> dict[str, Any]:
    """Events/s from the producer through the journal to broker-acknowledged (QoS 1) and to a
    subscriber, publishing as fast as the bus takes them."""
    if progress:
        progress("MQTT: events/s through journal, sink and broker")
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        broker = Broker(Path(tmp))
        broker.start()
        sub = _Subscriber(broker.port, n_events + 10)
        try:
            with _station(Path(tmp), broker) as bus:
                bus.publish_verdict(_verdict(-1), "verdict")  # connect and warm up before timing
                if not _wait(lambda: sub.has(1), 20):
                    raise RuntimeError("the MQTT sink never delivered its first event")
                first = bus.journal.last_seq + 1
                t0 = time.monotonic()
                for i in range(n_events):
                    bus.publish_verdict(_verdict(i), "verdict")
                t_journal = time.monotonic() - t0
                last = bus.journal.last_seq
                _wait(lambda: bus.counters()["mqtt"]["cursor"] >= last, 60)
                t_acked = time.monotonic() - t0
                _wait(lambda: sub.count(first, last) >= last - first + 1, 60)
                t_received = time.monotonic() - t0
                received = sub.count(first, last)
        finally:
            sub.close()
            broker.stop()
    return {"events": n_events, "journal_per_s": round(n_events / t_journal, 1),
            "acked_per_s": round(n_events / t_acked, 1), "received_per_s": round(received / t_received, 1),
            "received": received, "qos": 1}


def mqtt_outage(rate_per_s: float, outage_s: float, progress: Progress | None = None) -> dict[str, Any]:
    """Events at ``rate_per_s`` while the broker is stopped for ``outage_s``: lost events and how
    long the backlog takes to drain once it is back."""
    if progress:
        progress(f"MQTT: {outage_s:.0f} s broker outage at {rate_per_s:.0f} events/s")
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="bench-outage-") as tmp:
        broker = Broker(Path(tmp))
        broker.start()
        sub = _Subscriber(broker.port, int(rate_per_s * (outage_s + 120)))
        try:
            with _station(Path(tmp), broker) as bus:

                def produce() -> None:
                    i, period, nxt = 0, 1.0 / rate_per_s, time.monotonic()
                    while not stop.is_set():
                        bus.publish_verdict(_verdict(i), "verdict")
                        i += 1
                        nxt += period
                        time.sleep(max(0.0, nxt - time.monotonic()))

                producer = threading.Thread(target=produce, daemon=True)
                producer.start()
                time.sleep(3.0)
                at_stop = bus.journal.last_seq
                broker.stop()
                t_down = time.monotonic()
                time.sleep(outage_s)
                backlog = bus.counters()["mqtt"]["backlog"]
                broker.start()
                t_up = time.monotonic()
                target = bus.journal.last_seq  # everything journalled while it was away
                drained = _wait(lambda: bus.counters()["mqtt"]["cursor"] >= target, 60)
                t_drained = time.monotonic() - t_up
                _wait(lambda: sub.count(1, target) == target, 60)
                t_received = time.monotonic() - t_up
                stop.set()
                producer.join()
                last = bus.journal.last_seq
                _wait(lambda: sub.count(1, last) == last, 20)
                lost = last - sub.count(1, last)
                missing = [s for s in range(1, last + 1) if not sub.has(s)][:20]
        finally:
            stop.set()
            sub.close()
            broker.stop()
    return {"rate_per_s": rate_per_s, "outage_s": round(t_up - t_down, 1), "backlog_at_return": backlog,
            "events": last, "lost": lost, "lost_seqs": missing, "seq_at_broker_stop": at_stop, "drained": drained, "drain_s": round(t_drained, 2),
            "received_all_s": round(t_received, 2)}


def _plc(port: int, n: int, conn: Any) -> None:
    """Child process: a PLC polling camera 0's block; reports (seq, monotonic time seen) per decision."""
    from pymodbus.client import ModbusTcpClient

    from edge_inspector.sinks import plc_modbus as mb

    client = ModbusTcpClient("127.0.0.1", port=port)
    client.connect()
    conn.send("ready")
    for _ in range(n):
        while True:
            regs = client.read_holding_registers(0, count=mb.ACK + 1).registers
            if regs[mb.STATUS] & mb.BIT_RESULT_VALID:
                break
        seen = time.monotonic()
        seq = (regs[mb.SEQ_HI] << 16) | regs[mb.SEQ_LO]
        conn.send((seq, seen))
        client.write_register(mb.ACK, 1)
        while True:  # acknowledged: the result clears, or the next queued one is presented at once
            regs = client.read_holding_registers(0, count=mb.ACK + 1).registers
            if not regs[mb.STATUS] & mb.BIT_RESULT_VALID or (regs[mb.SEQ_HI] << 16) | regs[mb.SEQ_LO] != seq:
                break
    client.close()


def plc_latency(n_decisions: int, progress: Progress | None = None) -> dict[str, Any]:
    """Publish of a verdict -> a Modbus client (another process, polling as a PLC does) sees
    RESULT_VALID for it; the client then acknowledges, as the handshake asks."""
    import multiprocessing as mp

    from edge_inspector.events.bus import EventBus
    from edge_inspector.events.journal import Journal
    from edge_inspector.sinks.plc import PlcBridge, defect_codes
    from edge_inspector.sinks.plc_config import PlcConfig

    if progress:
        progress("PLC: decision latency to a Modbus client")
    port = _free_port()
    cfg = PlcConfig(modbus_listen=f"127.0.0.1:{port}", opcua_endpoint="", trigger="frame")
    latencies: list[float] = []
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    with tempfile.TemporaryDirectory(prefix="bench-plc-") as tmp:
        journal = Journal(Path(tmp) / "journal.sqlite3")
        bridge = PlcBridge(cfg, ["cam0"], defect_codes(("ok", "scratch")))
        bus = EventBus("tcp://127.0.0.1:*", journal, None, heartbeat_s=60.0, linger_ms=0, sinks=[bridge])
        proc = ctx.Process(target=_plc, args=(port, n_decisions, child), daemon=True)
        proc.start()
        try:
            if not parent.poll(30) or parent.recv() != "ready":
                raise RuntimeError("the Modbus client process did not start")
            bus.publish_status("cam0", "online")
            for i in range(n_decisions):
                time.sleep(0.01)  # the PLC is back to polling an empty result
                t0 = time.monotonic()
                seq = bus.publish_verdict(_verdict(i), "verdict")["seq"]
                if not parent.poll(10):
                    raise RuntimeError("the Modbus client never saw a decision")
                got, seen = parent.recv()
                if got != seq:
                    raise RuntimeError(f"the Modbus client saw seq {got}, expected {seq}")
                latencies.append((seen - t0) * 1000.0)
        finally:
            proc.join(10)
            bus.close(timeout_s=3.0)
            journal.close()
    ordered = sorted(latencies)
    return {"decisions": n_decisions, "p50_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
            "max_ms": round(ordered[-1], 3)}
