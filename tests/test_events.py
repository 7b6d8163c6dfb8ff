"""Event layer against real ZeroMQ on loopback (random ports) and real SQLite in tmp_path."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import zmq

from edge_inspector.errors import UserError
from edge_inspector.events import EventBus, Journal, check_endpoint_bindable
from edge_inspector.events.schema import SCHEMA, decode, event_from_verdict, iso_utc, topic_for
from edge_inspector.commands.tail import fetch_since, run_tail
from edge_inspector.values import Verdict

ANY = "tcp://127.0.0.1:*"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def visual(label: str = "scratch", frame: int = 7, defect: bool = True) -> Verdict:
    return Verdict("cam0", "visual", label, 0.91, defect, time.time(), time.monotonic(),
                   "surface-cnn", "0123456789abcdef0123", frame=frame, bbox=[10, 20, 30, 40])


def acoustic() -> Verdict:
    return Verdict("mic0", "acoustic", "knock", 0.8, True, time.time(), time.monotonic(),
                   "machine-gru", "fedcba9876543210", offset_s=12.5, duration_s=0.75)


@pytest.fixture()
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def make_bus(tmp_path: Path, **kw) -> EventBus:
    kw.setdefault("heartbeat_s", 0)
    return EventBus(ANY, Journal(tmp_path / "journal.db"), ANY, **kw)


def subscribe(ctx: zmq.Context, bus: EventBus, topic: bytes = b"") -> zmq.Socket:
    """Connect a SUB and wait until it really receives (publishing status probes until then)."""
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect(bus.endpoint)
    sub.subscribe(topic)
    sub.subscribe(b"status.probe")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        bus.publish_status("probe", "online")
        if sub.poll(50):
            while sub.poll(100):
                sub.recv_multipart()
            sub.unsubscribe(b"status.probe")
            time.sleep(0.05)
            return sub
    raise AssertionError("subscriber never connected")


def recv(sub: zmq.Socket, timeout_ms: int = 2000) -> tuple[str, dict]:
    assert sub.poll(timeout_ms), "no event received"
    topic, payload = sub.recv_multipart()
    return topic.decode(), decode(payload)


# ---------------------------------------------------------------- schema
def test_schema_topics_and_fields() -> None:
    assert topic_for("defect", "cam0", "visual") == "defect.visual.cam0"
    assert topic_for("verdict", "mic0") == "verdict.mic0"
    assert topic_for("heartbeat") == "heartbeat"
    with pytest.raises(ValueError):
        topic_for("defect", "cam0", "thermal")
    assert iso_utc(0.1234) == "1970-01-01T00:00:00.123Z"
    v = acoustic()
    ev = event_from_verdict(v, 5, v.mono + 0.0042)
    assert ev["offset_s"] == 12.5 and ev["duration_s"] == 0.75 and "frame" not in ev
    assert ev["model"] == {"name": "machine-gru", "sha256": "fedcba987654"}
    assert ev["latency_ms"] == pytest.approx(4.2, abs=0.01)


# ---------------------------------------------------------------- journal
def test_seq_gap_free_across_restart(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "j.db"  # parent directories are created
    j = Journal(path)
    assert j.next_seq() == 1
    assert [j.append("status.a", {"n": i}) for i in range(10)] == list(range(1, 11))
    j.close()
    j = Journal(path)  # "restart"
    assert j.next_seq() == 11
    assert j.append("status.a", {"n": 10}) == 11
    seqs = [json.loads(p)["seq"] for _, p in j.since(0, 100)]
    assert seqs == list(range(1, 12))
    j.close()
    # through the bus as well: a restarted daemon continues the numbering
    bus = EventBus(ANY, Journal(path), None, heartbeat_s=0)
    ev = bus.publish_verdict(visual())
    bus.close()
    bus.journal.close()
    assert ev["seq"] == 12


def test_prune_keeps_newest_and_numbering(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", retention_events=100)
    for i in range(1000):
        j.append("status.a", {"n": i})
    assert j.prune(max_batches=10) == 900
    assert j.first_seq() == 901
    j.close()
    j = Journal(tmp_path / "j.db", retention_events=100)
    assert j.next_seq() == 1001
    j.close()


def test_bus_prunes_journal_beyond_retention(tmp_path: Path) -> None:
    bus = EventBus(ANY, Journal(tmp_path / "j.db", retention_events=50), None, heartbeat_s=0)
    try:
        for i in range(300):
            bus.publish_verdict(visual(frame=i))
        deadline = time.monotonic() + 5
        while bus.journal.first_seq() != 251 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bus.journal.first_seq() == 251 and bus.journal.last_seq == 300
    finally:
        bus.close()
        bus.journal.close()


def test_corrupt_journal_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    garbage = b"this is not sqlite\n" * 300
    path.write_bytes(garbage)
    with pytest.raises(UserError, match=re.escape(str(path))):
        Journal(path)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.db"]


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE recipes (id INTEGER PRIMARY KEY)")
    before = path.read_bytes()
    with pytest.raises(UserError, match="something else"):
        Journal(path)
    assert path.read_bytes() == before


def test_journal_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is a directory"):
        Journal(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_journal_unwritable_directory(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(UserError, match="not writable"):
        Journal(ro / "j.db")


# ---------------------------------------------------------------- bus
def test_subscriber_receives_topics_and_fields(tmp_path: Path, ctx: zmq.Context) -> None:
    bus = make_bus(tmp_path)
    sub = subscribe(ctx, bus)
    try:
        sent = [bus.publish_verdict(visual()), bus.publish_verdict(acoustic()),
                bus.publish_verdict(visual("ok", defect=False), "verdict"),
                bus.publish_status("cam0", "reconnecting", "rtsp timeout")]
        got = [recv(sub) for _ in sent]
    finally:
        bus.close()
    assert [t for t, _ in got] == ["defect.visual.cam0", "defect.acoustic.mic0", "verdict.cam0",
                                   "status.cam0"]
    seqs = [ev["seq"] for _, ev in got]
    assert seqs == list(range(seqs[0], seqs[0] + 4)) and seqs == [e["seq"] for e in sent]
    for _, ev in got:
        assert ev["schema"] == SCHEMA and ISO.match(ev["ts"]) and len(ev["id"]) >= 16
    vis, aco, ok, status = (ev for _, ev in got)
    assert vis["kind"] == "visual" and vis["label"] == "scratch" and vis["frame"] == 7
    assert vis["bbox"] == [10, 20, 30, 40] and vis["model"]["sha256"] == "0123456789ab"
    assert vis["latency_ms"] >= 0 and aco["latency_ms"] >= 0
    assert aco["offset_s"] == 12.5 and ok["label"] == "ok" and ok["defect"] is False
    assert status["state"] == "reconnecting" and status["detail"] == "rtsp timeout"
    assert len({ev["id"] for _, ev in got}) == 4
    # what went over the wire is byte-for-byte what the journal serves
    assert json.loads(bus.journal.payload_of(vis["seq"])) == vis
    bus.journal.close()


def test_heartbeat_carries_counters(tmp_path: Path, ctx: zmq.Context) -> None:
    bus = make_bus(tmp_path, heartbeat_s=0.1, counters=lambda: {"frames_in": 42})
    sub = ctx.socket(zmq.SUB)
    sub.connect(bus.endpoint)
    sub.subscribe(b"heartbeat")
    try:
        topic, hb = recv(sub, 3000)
    finally:
        bus.close()
        bus.journal.close()
    assert topic == "heartbeat" and hb["kind"] == "heartbeat" and hb["uptime_s"] > 0
    assert hb["counters"]["frames_in"] == 42
    assert {"published", "dropped_in_memory", "catchup_requests", "journal_seq"} <= hb["counters"].keys()


def test_slow_joiner_fetches_missed_events_via_catchup(tmp_path: Path, ctx: zmq.Context) -> None:
    bus = make_bus(tmp_path)
    try:
        # nobody listening; 1200 events span three 500-event reply batches
        early = [bus.publish_verdict(visual(frame=i)) for i in range(1200)]
        sub = subscribe(ctx, bus, b"defect.")
        live = bus.publish_verdict(visual(frame=99))
        _, ev = recv(sub)
        assert ev["seq"] == live["seq"]
        # the subscriber has seen nothing before: everything up to this seq is a gap
        missed = fetch_since(ctx, bus.catchup_endpoint, 0, ev["seq"] - 1, ["defect."])
        assert [decode(p)["seq"] for _, p in missed] == [e["seq"] for e in early]
        assert all(t == "defect.visual.cam0" for t, _ in missed)
        assert [decode(p)["frame"] for _, p in missed] == list(range(1200))
        assert bus.counters()["catchup_requests"] == 1
        # a malformed request gets an error reply, not silence
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(bus.catchup_endpoint)
        dealer.send_multipart([b"", b"since", b"abc"])
        assert dealer.poll(2000)
        assert dealer.recv_multipart()[1] == b"error"
    finally:
        bus.close()
        bus.journal.close()


def test_close_under_load_publishes_everything(tmp_path: Path, ctx: zmq.Context) -> None:
    bus = make_bus(tmp_path)
    sub = subscribe(ctx, bus, b"defect.")
    first = bus.publish_verdict(visual())["seq"]
    for i in range(4999):
        bus.publish_verdict(visual(frame=i))
    t0 = time.monotonic()
    bus.close(timeout_s=3.0)
    took = time.monotonic() - t0
    seqs = []
    while sub.poll(1000):
        seqs.append(decode(sub.recv_multipart()[1])["seq"])
    bus.journal.close()
    assert took < 4.0
    assert seqs == list(range(first, first + 5000))
    assert bus.counters()["dropped_in_memory"] == 0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_rss_bounded_without_subscriber(tmp_path: Path) -> None:
    bus = make_bus(tmp_path, heartbeat_s=0.5)
    v = visual()
    for _ in range(5000):  # warm-up: SQLite page cache, allocator pools
        bus.publish_verdict(v)
    base = _rss_bytes()
    for _ in range(200_000):
        bus.publish_verdict(v)
    growth = _rss_bytes() - base
    bus.close()
    c = bus.counters()
    bus.journal.close()
    assert growth < 100 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB"
    assert c["published"] + c["dropped_in_memory"] == c["journal_seq"]
    assert c["journal_seq"] >= 205_000


def test_bind_conflict_names_endpoint(tmp_path: Path) -> None:
    bus = make_bus(tmp_path)
    try:
        with pytest.raises(UserError, match=re.escape(bus.endpoint)):
            EventBus(bus.endpoint, bus.journal, None)
        msg = check_endpoint_bindable(bus.endpoint)
        assert msg and bus.endpoint in msg and "in use" in msg
        with pytest.raises(UserError, match="catch-up endpoint"):
            EventBus(ANY, bus.journal, bus.catchup_endpoint)
    finally:
        bus.close()
        bus.journal.close()
    assert check_endpoint_bindable("tcp://127.0.0.1:*") is None
    bad = check_endpoint_bindable("localhost:5556")
    assert bad and "'localhost:5556'" in bad


# ---------------------------------------------------------------- tail
def _run_tail_against(
    bus: EventBus, stop: threading.Event, hidden_every: int = 0, **kw
) -> tuple[int, str]:
    def produce() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if hidden_every and n % hidden_every == 0:
                # journalled but never published: exactly what a subscriber misses on a PUB drop
                ev = event_from_verdict(visual(frame=-n), 0, time.monotonic())
                bus.journal.append("defect.visual.cam0", ev)
            else:
                bus.publish_verdict(visual(frame=n))
            time.sleep(0.01)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    out = io.StringIO()
    try:
        rc = run_tail(bus.endpoint, kw.pop("topics", ["defect."]), out=out, **kw)
    finally:
        stop.set()
        t.join()
    return rc, out.getvalue()


def test_run_tail_json_count(tmp_path: Path) -> None:
    bus = make_bus(tmp_path)
    try:
        rc, text = _run_tail_against(bus, threading.Event(), as_json=True, catchup_endpoint=None,
                                     count=5)
    finally:
        bus.close()
        bus.journal.close()
    lines = text.splitlines()
    assert rc == 0 and len(lines) == 5
    evs = [json.loads(line) for line in lines]
    assert all(e["topic"] == "defect.visual.cam0" and e["schema"] == SCHEMA for e in evs)
    assert [e["seq"] for e in evs] == list(range(evs[0]["seq"], evs[0]["seq"] + 5))


def test_run_tail_human_lines(tmp_path: Path) -> None:
    bus = make_bus(tmp_path)
    try:
        rc, text = _run_tail_against(bus, threading.Event(), as_json=False, catchup_endpoint=None,
                                     count=3)
    finally:
        bus.close()
        bus.journal.close()
    lines = text.splitlines()
    assert rc == 0 and len(lines) == 3
    assert all("defect.visual.cam0" in ln and "scratch" in ln and "0.910" in ln
               and re.search(r"frame \d+", ln) and "bbox 10,20,30,40" in ln and " ms" in ln for ln in lines)


def test_run_tail_fills_gaps_and_replays_since(tmp_path: Path) -> None:
    bus = make_bus(tmp_path)
    # journalled but never published: exactly what a subscriber misses when PUB drops
    for i in range(3):
        ev = event_from_verdict(visual(frame=1000 + i), 0, time.monotonic())
        bus.journal.append("defect.visual.cam0", ev)
    try:
        rc, text = _run_tail_against(bus, threading.Event(), as_json=True,
                                     catchup_endpoint=bus.catchup_endpoint, count=8, since=0)
    finally:
        bus.close()
        bus.journal.close()
    evs = [json.loads(line) for line in text.splitlines()]
    assert rc == 0 and [e["seq"] for e in evs] == list(range(1, 9))
    assert [e["frame"] for e in evs[:3]] == [1000, 1001, 1002]


def test_run_tail_fetches_live_gaps(tmp_path: Path) -> None:
    bus = make_bus(tmp_path)
    try:
        rc, text = _run_tail_against(bus, threading.Event(), hidden_every=3, as_json=True,
                                     catchup_endpoint=bus.catchup_endpoint, count=12)
    finally:
        bus.close()
        bus.journal.close()
    evs = [json.loads(line) for line in text.splitlines()]
    assert rc == 0 and [e["seq"] for e in evs] == list(range(evs[0]["seq"], evs[0]["seq"] + 12))
    assert any(e["frame"] < 0 for e in evs), "no gap was filled from the journal"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does to `cmd &` and what nohup inherits


def _tail_stops_on(tmp_path: Path, sig: signal.Signals, preexec_fn: Callable[[], None] | None) -> None:
    """`edge-inspector tail --json` gets ``sig`` once it has printed an event (so it is in its
    receive loop, however slow the machine): it must stop with exit 0 and no traceback."""
    bus = make_bus(tmp_path)
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.wait(0.05):
            n += 1
            bus.publish_verdict(visual(frame=n))

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    proc = subprocess.Popen([sys.executable, "-m", "edge_inspector.cli", "tail", "--endpoint", bus.endpoint,
                             "--catchup", "", "--json"], cwd=Path(__file__).resolve().parent.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # an event printed: tail is in its receive loop
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
    finally:
        stop.set()
        producer.join()
        if proc.poll() is None:
            proc.kill()
        bus.close()
        bus.journal.close()
    assert json.loads(first)["topic"] == "defect.visual.cam0"
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_tail_ctrl_c_exits_zero(tmp_path: Path) -> None:
    """Ctrl-C stops `tail` with exit 0, with whatever SIGINT disposition the suite was started with."""
    _tail_stops_on(tmp_path, signal.SIGINT, None)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_tail_started_in_the_background_stops_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    """`edge-inspector tail &` from a script starts with SIGINT ignored: SIGINT and SIGTERM still stop it (exit 0)."""
    _tail_stops_on(tmp_path, sig, _ignore_sigint)
