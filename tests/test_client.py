"""The client library against real daemons' buses on loopback: gaps, duplicates, resets, resume."""

from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import free_port
from edge_inspector.client import EventStream
from edge_inspector.events import EventBus, Journal
from edge_inspector.events.schema import event_from_verdict
from test_events import visual


def _bus(tmp_path: Path, name: str, endpoint: str, catchup: str, **kw) -> EventBus:
    kw.setdefault("heartbeat_s", 0)
    return EventBus(endpoint, Journal(tmp_path / f"{name}.db"), catchup, **kw)


def _hidden(bus: EventBus, frame: int) -> None:
    """Journalled but never published: what a subscriber misses when PUB drops."""
    bus.journal.append("defect.visual.cam0", event_from_verdict(visual(frame=frame), 0, time.monotonic()))


def _collect(stream: EventStream, n: int, timeout_s: float = 10.0, feed=None) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        if feed is not None:
            feed()
        ev = stream.recv(0.1)
        if ev is not None:
            got.append(ev)
    return got


def _connected(stream: EventStream, bus: EventBus) -> None:
    """Publish probes until the stream hears one (the SUB socket joins asynchronously)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        bus.publish_status("probe", "online")
        ev = stream.recv(0.1)
        if ev is not None:
            while stream.recv(0.2) is not None:
                pass
            return
    raise AssertionError("stream never connected")


def test_gaps_filled_in_order_without_duplicates(tmp_path: Path) -> None:
    ep, cu = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    bus = _bus(tmp_path, "a", ep, cu)
    try:
        for i in range(5):
            bus.publish_verdict(visual(frame=i))  # before the client: fetched with since=0
        with EventStream(ep, cu, since=0, on_note=lambda m: None) as stream:
            got = _collect(stream, 5)
            for i in range(30):
                if i % 4 == 0:
                    _hidden(bus, 1000 + i)
                else:
                    bus.publish_verdict(visual(frame=i))
            got += _collect(stream, 30)
            assert stream.filled >= 8
    finally:
        bus.close()
        bus.journal.close()
    seqs = [e.seq for e in got]
    assert seqs == list(range(1, 36)), seqs
    assert got[5].event["frame"] == 1000  # the first hidden event came back from the journal


def test_heartbeat_reveals_a_lost_tail_under_a_topic_filter(tmp_path: Path) -> None:
    ep, cu = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    bus = _bus(tmp_path, "a", ep, cu, heartbeat_s=0.1)
    try:
        with EventStream(ep, cu, topics=["defect."], on_note=lambda m: None) as stream:
            deadline = time.monotonic() + 5
            while stream.last_seq is None and time.monotonic() < deadline:
                stream.recv(0.1)  # a hidden heartbeat sets the starting point
            _hidden(bus, 4242)  # the last defect was never published; only heartbeats follow
            got = _collect(stream, 1, 5.0)
    finally:
        bus.close()
        bus.journal.close()
    assert [e.event["frame"] for e in got] == [4242]
    assert all(e.topic.startswith("defect.") for e in got)


def test_journal_reset_is_reported_and_replayed_from_its_start(tmp_path: Path) -> None:
    ep, cu = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    resets: list[tuple[int | None, str]] = []
    bus = _bus(tmp_path, "old", ep, cu)
    stream = EventStream(ep, cu, on_note=lambda m: None, on_reset=lambda old, why: resets.append((old, why)))
    try:
        _connected(stream, bus)
        for i in range(20):
            bus.publish_verdict(visual(frame=i))
        old = _collect(stream, 20)
        assert len(old) == 20
        last_old = old[-1]
        old_third = json.loads(bus.journal.payload_of(3) or b'{}')
        bus.close()
        bus.journal.close()
        bus = _bus(tmp_path, "new", ep, cu)  # the daemon restarted with a new journal
        got = _collect(stream, 5, feed=lambda: bus.publish_verdict(visual(frame=7)))
    finally:
        stream.close()
        bus.close()
        bus.journal.close()
    assert len(resets) == 1 and resets[0][0] == last_old.seq and "journal_id changed" in resets[0][1]
    assert [e.seq for e in got] == [1, 2, 3, 4, 5]
    # a client restarted with its old position notices the reset as well
    bus = _bus(tmp_path, "new", ep, cu)
    try:
        with EventStream(ep, cu, since=3, since_id=old_third["id"], on_note=lambda m: None,
                         on_reset=lambda old, why: resets.append((old, why))) as again:
            replay = _collect(again, 3)
    finally:
        bus.close()
        bus.journal.close()
    assert len(resets) == 2 and "another event" in resets[1][1]
    assert [e.seq for e in replay] == [1, 2, 3]


def test_a_stuck_sink_blocks_neither_producers_nor_other_sinks(tmp_path: Path) -> None:
    """A sink whose consumer hangs (a dead broker that still holds the socket, a stalled PLC
    client): events are still journalled and published, and it only sheds its own queue."""
    import threading

    from edge_inspector.events.sink import LiveSink

    release = threading.Event()

    class Stuck(LiveSink):
        def _deliver(self, batch) -> None:
            release.wait(30)

    stuck = Stuck("stuck", max_queued=100)
    ep, cu = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    bus = EventBus(ep, Journal(tmp_path / "j.db"), cu, heartbeat_s=0, sinks=[stuck])
    try:
        with EventStream(ep, cu, on_note=lambda m: None) as stream:
            _connected(stream, bus)
            start = bus.journal.last_seq
            for i in range(1000):
                bus.publish_verdict(visual(frame=i))
            got = _collect(stream, 1000)
            assert [e.event["frame"] for e in got] == list(range(1000))
            assert bus.journal.last_seq == start + 1000
            assert stuck.dropped_in_memory >= 800 and stuck.alive
    finally:
        release.set()
        bus.close()
        bus.journal.close()
