"""The MQTT sink against a real mosquitto: topics, payloads, retained status, store-and-forward."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
import time
from pathlib import Path

import pytest

from edge_inspector.events import EventBus, Journal
from edge_inspector.sinks.mqtt import MqttSink
from edge_inspector.sinks.mqtt_config import MqttConfig
from conftest import wait_until
from mqtt_broker import Broker, Collector, broker  # noqa: F401  (fixture)
from test_events import visual

PREFIX = "edge-inspector/test"


def _bus(tmp_path: Path, url: str, **kw) -> EventBus:
    journal = Journal(tmp_path / "journal.db")
    cfg = MqttConfig(url=url, topic_prefix=PREFIX, **kw)
    return EventBus("tcp://127.0.0.1:*", journal, None, heartbeat_s=0, sinks=[MqttSink(cfg, journal)])


def _first_seen(messages: list[tuple[str, bytes, bool]]) -> list[int]:
    """Event seqs in arrival order, each once (at-least-once delivery may repeat some)."""
    seen: set[int] = set()
    out = []
    for topic, payload, _ in messages:
        if topic.endswith("/status"):
            continue
        seq = json.loads(payload)["seq"]
        if seq not in seen:
            seen.add(seq)
            out.append(seq)
    return out


def test_events_topics_payloads_and_retained_status(tmp_path: Path, broker: Broker) -> None:
    sub = Collector(broker, f"{PREFIX}/#")
    bus = _bus(tmp_path, broker.url)
    try:
        sent = [bus.publish_verdict(visual(frame=1)), bus.publish_status("cam0", "offline", "unplugged"),
                bus.publish_verdict(visual("ok", frame=2, defect=False), "verdict")]
        assert sub.wait_for(lambda m: len(_first_seen(m)) == 3, 10)
        payloads = {json.loads(p)["seq"]: (t, p) for t, p, _ in sub.snapshot() if not t.endswith("/status")}
        assert [payloads[e["seq"]][0] for e in sent] == [f"{PREFIX}/defect/visual/cam0", f"{PREFIX}/status/cam0",
                                                        f"{PREFIX}/verdict/cam0"]
        for ev in sent:  # byte for byte what the journal (and ZeroMQ) carry
            assert payloads[ev["seq"]][1] == bus.journal.payload_of(ev["seq"])
        # the cursor moves on the broker's acknowledgement, which may come after a subscriber has the message
        assert wait_until(lambda: bus.counters()["mqtt"]["cursor"] == sent[-1]["seq"], 10), bus.counters()["mqtt"]
    finally:
        bus.close()
        bus.journal.close()
    late = Collector(broker, f"{PREFIX}/status", client_id="late")  # retained: a late joiner learns it
    try:
        assert late.wait_for(lambda m: (f"{PREFIX}/status", b"offline", True) in m, 5)
    finally:
        late.close()
        sub.close()


@pytest.mark.slow
def test_broker_outage_loses_nothing_and_keeps_order(tmp_path: Path, broker: Broker) -> None:
    """Broker stopped for 10 s mid-stream at ~50 events/s: every event arrives, in seq order."""
    sub = Collector(broker, f"{PREFIX}/#")
    bus = _bus(tmp_path, broker.url)
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            bus.publish_verdict(visual(frame=i))
            i += 1
            time.sleep(0.02)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert sub.wait_for(lambda m: len(_first_seen(m)) >= 50, 10)
        broker.stop()
        t0 = time.monotonic()
        time.sleep(10)
        assert bus.counters()["mqtt"]["connected"] is False
        assert bus.counters()["mqtt"]["backlog"] >= 300  # inspection went on, into the journal
        broker.start()
        time.sleep(1)
        stop.set()
        producer.join()
        last = bus.journal.last_seq
        assert sub.wait_for(lambda m: len(_first_seen(m)) >= last, 20), f"after {time.monotonic() - t0:.1f} s"
    finally:
        stop.set()
        producer.join()
        bus.close()
        bus.journal.close()
        sub.close()
    assert _first_seen(sub.snapshot()) == list(range(1, last + 1))


def _journal_seqs(path: Path) -> int:
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])
    finally:
        con.close()


def _wait_journal(path: Path, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (n := _journal_seqs(path)) >= at_least:
            return n
        time.sleep(0.1)
    raise AssertionError(f"journal {path} never reached seq {at_least}")


@pytest.mark.slow
def test_daemon_events_on_mqtt_as_on_zeromq_and_backlog_after_sigkill(
        tmp_path: Path, surfaces, broker: Broker) -> None:
    from conftest import DaemonConfig, Subscriber, journal_events, start_daemon
    from test_daemon import make_clip, wait_exit

    video = make_clip(tmp_path, surfaces)
    mqtt = {"url": broker.url, "topic_prefix": PREFIX}
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "belt", "uri": f"file://{video}"}], extra={"mqtt": mqtt})
    sub, mq = Subscriber(cfg.endpoint), Collector(broker, f"{PREFIX}/#")
    try:
        time.sleep(0.3)
        code, err = wait_exit(start_daemon(cfg.path), 60)
        assert code == 0, err[-3000:]
        journalled = journal_events(cfg.journal)
        assert mq.wait_for(lambda m: len(_first_seen(m)) >= len(journalled), 10)
        zmq_defects = sub.topics("defect.")
    finally:
        sub.close()
    on_mqtt = {json.loads(p)["seq"]: (t, json.loads(p)) for t, p, _ in mq.snapshot() if not t.endswith("/status")}
    assert len(zmq_defects) >= 5
    for ev in zmq_defects:  # every defect event: the same topic and the same fields on both
        assert on_mqtt[ev["seq"]] == (f"{PREFIX}/defect/visual/belt", ev)
    assert [e["seq"] for t, e in journalled if t.startswith("defect.")] == [
        s for s, (t, _) in sorted(on_mqtt.items()) if "/defect/" in t]
    delivered = len(journalled)

    # broker down; a daemon killed mid-stream and restarted: the backlog arrives when it returns
    broker.stop()
    looping = DaemonConfig(tmp_path, cameras=[{"name": "belt", "uri": f"file://{video}", "loop": True}],
                           publisher={"journal": str(cfg.journal), "publish_verdicts": True}, extra={"mqtt": mqtt})
    first = start_daemon(looping.path)
    try:
        _wait_journal(cfg.journal, delivered + 40, 30)
        first.kill()
        first.wait(10)
        second = start_daemon(looping.path)
        try:
            before = _wait_journal(cfg.journal, _journal_seqs(cfg.journal) + 20, 30)
            metrics = urllib.request.urlopen(f"http://{looping.health}/metrics", timeout=5).read().decode()
            assert 'edge_inspector_sink_connected{sink="mqtt"} 0' in metrics
            backlog = re.search(r'edge_inspector_sink_backlog\{sink="mqtt"\} ([0-9.e+]+)', metrics)
            assert backlog and float(backlog.group(1)) >= 40, metrics[-2000:]
            broker.start()
            assert mq.wait_for(lambda m: len(_first_seen(m)) >= before, 20)
        finally:
            second.terminate()
            wait_exit(second, 20)
    finally:
        if first.poll() is None:
            first.kill()
        mq.close()
    seqs = _first_seen(mq.snapshot())
    assert seqs[:before] == list(range(1, before + 1))


@pytest.mark.parametrize(
    ("mqtt", "expected"),
    [
        ({"url": "mqtt://127.0.0.1:1"}, None),  # nobody listens there: not an error, it connects later
        ({"url": "tcp://broker:1883"}, "mqtt.url: 'tcp://broker:1883': expected mqtt://host:1883"),
        ({"url": "mqtt://broker:99999"}, "mqtt.url: 'mqtt://broker:99999': the port must be"),
        ({"url": "mqtt://user:secret@broker"}, "mqtt.url: put no user name or password in the URL"),
        ({"url": "mqtts://broker", "ca_file": "/nonexistent/ca.pem"}, "mqtt.ca_file: file not found: /nonexistent/ca.pem"),
        ({"url": "mqtt://broker", "username": "u", "password_env": "EI_TEST_UNSET"},
         "mqtt.password_env: the environment variable EI_TEST_UNSET is not set"),
        ({"url": "mqtt://broker", "topic_prefix": "plant/#"}, "mqtt.topic_prefix: 'plant/#' is not a topic prefix"),
        ({"url": "mqtt://broker", "qos": 3}, "mqtt.qos:"),
    ],
)
def test_check_config_mqtt(tmp_path: Path, capsys: pytest.CaptureFixture[str], mqtt: dict, expected: str | None) -> None:
    from test_config import base_tables, expect_problem

    expect_problem(tmp_path, capsys, {**base_tables(tmp_path), "mqtt": mqtt}, expected)


def test_password_is_used_and_never_logged(tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    """A broker that requires a login: the password from a file works, a wrong one is refused
    with a log line that names the problem but not the password."""
    import logging
    import subprocess

    broker.stop()
    pw_db = broker.dir / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw_db), "station1", "s3cret-pw"], check=True)
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", f"allow_anonymous false\npassword_file {pw_db}"))
    broker.start()
    good, bad = tmp_path / "good.pass", tmp_path / "bad.pass"
    good.write_text("s3cret-pw\n")
    bad.write_text("wrong-pw-9\n")
    caplog.set_level(logging.INFO)
    for name, pw_file in (("ok", good), ("refused", bad)):
        journal = Journal(tmp_path / f"{name}.db")
        cfg = MqttConfig(url=broker.url, topic_prefix=PREFIX, username="station1", password_file=pw_file,
                         client_id=f"station-{name}")
        bus = EventBus("tcp://127.0.0.1:*", journal, None, heartbeat_s=0, sinks=[MqttSink(cfg, journal)])
        try:
            bus.publish_verdict(visual())
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not (bus.counters()["mqtt"]["cursor"] >= 1 or any(
                    "refused the connection" in r.getMessage() for r in caplog.records)):
                time.sleep(0.05)
            assert (bus.counters()["mqtt"]["cursor"] == 1) == (name == "ok")
        finally:
            bus.close()
            journal.close()
    assert any("refused the connection" in r.getMessage() for r in caplog.records)
    assert not any("s3cret" in r.getMessage() or "wrong-pw" in r.getMessage() for r in caplog.records)


def test_replay_sends_to_the_broker_only_when_asked(tmp_path: Path) -> None:
    from edge_inspector.replay import ReplayInput, build_config

    from conftest import render_toml

    config = tmp_path / "line.toml"
    config.write_text(render_toml({"mqtt": {"url": "mqtt://plant-broker:1883"}},
                                  {"camera": [{"name": "cam0", "uri": "synthetic://surface"}]}))
    inputs = [ReplayInput("camera", "cam0", tmp_path / "cam0.mkv")]
    assert build_config(inputs, config, False, tmp_path).mqtt is None
    asked = build_config(inputs, config, False, tmp_path, plant=("mqtt",))
    assert asked.mqtt is not None and asked.mqtt.url == "mqtt://plant-broker:1883"


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, made with cryptography (comes with asyncua)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    files = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    files[0].write_bytes(cert("test plant CA", ca_key, "test plant CA", ca_key, True).public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(cert("127.0.0.1", server_key, "test plant CA", ca_key, False).public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return files


@pytest.mark.slow
def test_mqtts_delivers_and_a_killed_station_leaves_its_last_will(tmp_path: Path, broker: Broker) -> None:
    """Over TLS (the broker's certificate checked against the configured CA); a station killed
    with SIGKILL is declared offline by the broker's retained last will."""
    import signal
    import subprocess
    import sys

    from conftest import ROOT, free_port

    pytest.importorskip("cryptography")
    ca, cert, key = _tls_files(tmp_path)
    tls_port = free_port()
    broker.stop()
    broker.conf.write_text(broker.conf.read_text() + f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\n"
                           f"keyfile {key}\n")
    broker.start()
    sub = Collector(broker, f"{PREFIX}/#")
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from edge_inspector.events import EventBus, Journal\n"
        "from edge_inspector.values import Verdict\n"
        "from edge_inspector.sinks.mqtt import MqttSink\n"
        "from edge_inspector.sinks.mqtt_config import MqttConfig\n"
        f"cfg = MqttConfig(url='mqtts://127.0.0.1:{tls_port}', ca_file={str(ca)!r}, topic_prefix={PREFIX!r})\n"
        f"j = Journal({str(tmp_path / 'j.db')!r})\n"
        "bus = EventBus('tcp://127.0.0.1:*', j, None, heartbeat_s=0, sinks=[MqttSink(cfg, j)])\n"
        "bus.publish_verdict(Verdict('cam0', 'visual', 'scratch', 0.9, True, time.time(), time.monotonic(), 'm', 'ab', frame=1))\n"
        "print('published', flush=True)\n"
        "time.sleep(60)\n"
    )
    station = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert station.stdout is not None and station.stdout.readline().strip() == "published"
        assert sub.wait_for(lambda m: any(t == f"{PREFIX}/defect/visual/cam0" for t, _, _ in m), 10)
        assert (f"{PREFIX}/status", b"online", False) in sub.snapshot()
        station.send_signal(signal.SIGKILL)
        station.wait(5)
        assert sub.wait_for(lambda m: any(t == f"{PREFIX}/status" and p == b"offline" for t, p, _ in m), 10)
    finally:
        if station.poll() is None:
            station.kill()
        sub.close()
