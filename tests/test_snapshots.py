"""Defect snapshots: the bounded store, the writer's queue, and pictures served for real events."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import ENGINES, DaemonConfig, journal_events, wait_until, write_video
from edge_inspector.values import Verdict
from edge_inspector.snapshots.store import SnapshotStore
from edge_inspector.snapshots.writer import SnapshotWriter


def jpeg_of(rng: np.random.Generator, size: int) -> bytes:
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def disk_bytes(directory: Path) -> int:
    return sum(e.stat().st_size for e in os.scandir(directory) if e.is_file())


def test_store_stays_under_its_cap_over_10000_defects(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pictures = [jpeg_of(rng, s) for s in (16, 24, 32, 48)]  # 0.7-7 kB each: groups of varied size
    cap = 400_000
    store = SnapshotStore(tmp_path / "snaps", cap, max_age_s=86400.0, min_free_bytes=0)
    store.open()
    ids = []
    for i in range(10_000):
        event_id = uuid.uuid4().hex
        ids.append(event_id)
        assert store.save(event_id, {".jpg": pictures[i % 4], ".thumb.jpg": pictures[(i + 1) % 4]})
        if i % 500 == 499:
            assert store.total_bytes <= cap and disk_bytes(store.directory) == store.total_bytes
    on_disk = {name.split(".")[0] for name in os.listdir(store.directory)}
    assert disk_bytes(store.directory) <= cap
    assert on_disk == set(ids[-len(on_disk):]), "the oldest must go first, the newest stay"
    assert store.deleted == 10_000 - len(on_disk) and len(on_disk) == store.count > 50
    assert not store.save(uuid.uuid4().hex, {".jpg": b"x" * (cap + 1)}) and store.skipped_size == 1


def test_the_index_costs_under_300_bytes_a_group_and_names_every_file(tmp_path: Path) -> None:
    """The in-memory index grows with the pictures kept (until the caps delete the oldest): a
    2 GB store of small groups holds tens of thousands of them, so each must stay small."""
    import tracemalloc

    import edge_inspector.snapshots.store as store_module

    store = SnapshotStore(tmp_path / "snaps", 10**12, max_age_s=86400.0, min_free_bytes=0)
    store.open()
    kinds = ({".jpg": b"j", ".overlay.jpg": b"o", ".thumb.jpg": b"t"}, {".png": b"p", ".thumb.png": b"t"})
    ids = [uuid.uuid4().hex for _ in range(2000)]
    def held() -> int:  # what the store's own code allocated and still holds
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, store_module.__file__)])
        return sum(s.size for s in snap.statistics("filename"))

    tracemalloc.start()
    try:
        before = held()
        for i, event_id in enumerate(ids):
            assert store.save(event_id, kinds[i % 2])
        per_group = (held() - before) / len(ids)
    finally:
        tracemalloc.stop()
    assert per_group < 300, per_group  # as strings and tuples: 440 to 610 bytes
    assert store.has(ids[0]) and not store.has("f" * 32) and not store.has("not hex")
    store.max_bytes = 0  # everything goes, and each group's files with it
    store.prune()
    assert store.count == 0 and os.listdir(store.directory) == []


def test_store_reindexes_what_it_holds_and_prunes_by_age(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, 10**9, max_age_s=3600.0, min_free_bytes=0)
    store.open()
    now = time.time()
    old, new = uuid.uuid4().hex, uuid.uuid4().hex
    store.save(old, {".png": b"a" * 100, ".thumb.png": b"b" * 10}, now=now - 7200)
    store.save(new, {".jpg": b"c" * 50}, now=now)
    os.utime(tmp_path / f"{old}.png", (now - 7200, now - 7200))
    os.utime(tmp_path / f"{old}.thumb.png", (now - 7200, now - 7200))
    (tmp_path / ".tmp-half-written.jpg").write_bytes(b"x")  # a write a crash cut short
    (tmp_path / "notes.txt").write_text("not ours")
    again = SnapshotStore(tmp_path, 10**9, max_age_s=3600.0, min_free_bytes=0)
    again.open()  # a restart: indexes the directory, then applies the age limit
    assert again.count == 1 and again.has(new) and not again.has(old) and again.total_bytes == 50
    assert sorted(os.listdir(tmp_path)) == sorted([f"{new}.jpg", "notes.txt"])
    assert again.path_of("../journal.sqlite3") is None and again.path_of(f"{new}.jpg/..") is None


def test_store_never_takes_the_last_free_space(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, 10**9, max_age_s=3600.0, min_free_bytes=0)
    store.open()
    kept = uuid.uuid4().hex
    assert store.save(kept, {".jpg": b"k" * 1000})
    store.min_free_bytes = store.free_bytes() + 10**9  # another program filled the disk
    assert not store.save(uuid.uuid4().hex, {".jpg": b"n" * 1000})
    assert store.skipped_disk == 1 and store.has(kept), "deleting the store would not help: keep it"


def visual_verdict(image: np.ndarray, bbox: list[int] | None) -> Verdict:
    return Verdict(source="cam", kind="visual", label="scratch", score=0.9, defect=True, ts=time.time(),
                   mono=time.monotonic(), model="m", model_sha256="0" * 64, frame=3, bbox=bbox,
                   heatmap=np.eye(32, dtype=np.float32), image=image, image_origin=(100, 50))


def test_writer_drops_beyond_its_queue_and_writes_the_rest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, 10**9, max_age_s=3600.0, min_free_bytes=0)
    writer = SnapshotWriter(store, queue_size=3)
    image = np.full((120, 200, 3), 128, np.uint8)
    reserved = [writer.reserve(visual_verdict(image, [110, 60, 30, 20])) for _ in range(5)]  # thread not started
    assert [r is not None for r in reserved] == [True, True, True, False, False] and writer.dropped == 2
    event_id, fields = reserved[0]  # type: ignore[misc]
    assert fields == {"snapshot": f"/snapshots/{event_id}.jpg", "snapshot_overlay": f"/snapshots/{event_id}.overlay.jpg"}
    writer.start()
    for r in reserved[:3]:
        writer.wait_written(r[0], 10.0)  # type: ignore[index]
    writer.close()
    assert writer.written == 3 and writer.failed == 0
    frame = cv2.imread(str(tmp_path / f"{event_id}.jpg"))
    assert frame.shape == image.shape
    thumb = cv2.imread(str(tmp_path / f"{event_id}.thumb.jpg"))
    assert thumb.shape[1] == 200  # narrower than a thumbnail already: never enlarged
    overlay = cv2.imread(str(tmp_path / f"{event_id}.overlay.jpg"))
    box_edge = overlay[10:30, 10].astype(int)  # the box's left edge, at x = 110 - 100
    assert (box_edge[:, 2] - box_edge[:, 1]).mean() > 80, "a red box where the defect is"
    assert writer.reserve(visual_verdict(image, None)) is None  # closed: counted, never queued
    assert writer.dropped == 3


def fetch(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), ""


@pytest.mark.slow
@pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines/manifest.toml not built")
def test_every_defect_event_names_pictures_the_server_serves(tmp_path: Path, surfaces: Any) -> None:
    """A file camera and a WAV microphone with a fault: each defect event's pictures, over HTTP."""
    import scipy.io.wavfile

    from edge_inspector.config import load_config
    from edge_inspector.service import Service
    from edge_inspector.synthetic.machines import make_clip

    labels = ["ok", "scratch", "ok", "crack", "ok", "spot", "ok", "ok"]
    frames = [surfaces(700 + i, label, "metal").image for i, label in enumerate(labels)]
    video = write_video(tmp_path / "belt.mp4", frames, fps=10)
    clip = make_clip(np.random.default_rng(42), duration_s=8.0, label="squeal", snr_db=3.0, rotation_hz=25.0,
                     fault_start_s=3.0, fault_end_s=6.0)
    wav = tmp_path / "gear.wav"
    scipy.io.wavfile.write(wav, 16000, (clip.samples * 32767).astype(np.int16))
    cfg = DaemonConfig(tmp_path, cameras=[{"name": "belt", "uri": f"file://{video}", "realtime": False,
                                           "roi": [8, 8, 240, 240]}],
                       microphones=[{"name": "gear", "uri": f"file://{wav}", "realtime": False}])
    service = Service(load_config(cfg.path))

    def journalled(prefix: str) -> list[dict[str, Any]]:
        # the journal, not a subscriber: files read faster than real time can be done before a SUB joins
        return [e for t, e in journal_events(cfg.journal) if t.startswith(prefix)]

    try:
        service.start()
        deadline = time.monotonic() + 60
        while not service.finished() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.finished()
        assert wait_until(lambda: len(journalled("defect.visual.")) >= 2 and journalled("defect.acoustic."), 10)
        visual, acoustic = journalled("defect.visual."), journalled("defect.acoustic.")
        base = f"http://{cfg.health}"
        for event in visual:
            status, body, kind = fetch(base + event["snapshot"])
            assert status == 200 and kind == "image/jpeg", event["snapshot"]
            image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert [image.shape[1], image.shape[0]] == event["extra"]["image_size"] == [240, 240]
            assert event["snapshot"] == f"/snapshots/{event['id']}.jpg"
            status, body, _ = fetch(base + event["snapshot_overlay"])
            assert status == 200 and cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (240, 240)
            status, body, _ = fetch(f"{base}/snapshots/{event['id']}.thumb.jpg")
            assert status == 200 and cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape[1] == 240
        for event in acoustic:
            status, body, kind = fetch(base + event["snapshot"])
            assert status == 200 and kind == "image/png" and event["snapshot"].endswith(".png")
            picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape[1] == 960 and picture.shape[0] > 300
        assert fetch(f"{base}/snapshots/{'0' * 32}.jpg")[0] == 404
        assert fetch(f"{base}/snapshots/..%2Fjournal.sqlite3")[0] == 404
        assert service.views.snapshots is not None and service.views.snapshots.dropped == 0
    finally:
        service.stop()
    stored = os.listdir(tmp_path / "snapshots")
    assert len(stored) == 3 * len(visual) + 2 * len(acoustic)


def test_a_camera_rejecting_every_frame_gets_max_per_s_pictures(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, 10**9, max_age_s=3600.0, min_free_bytes=0)
    writer = SnapshotWriter(store, queue_size=100, max_per_s=2.0)
    now = [1000.0]
    writer.clock = lambda: now[0]
    image = np.full((32, 32, 3), 90, np.uint8)
    burst = [writer.reserve(visual_verdict(image, None)) for _ in range(10)]
    assert sum(r is not None for r in burst) == 4 and writer.limited == 6  # bursts of twice the rate
    other = visual_verdict(image, None)
    other.source = "cam2"
    assert writer.reserve(other) is not None  # per source
    now[0] += 0.6  # 1.2 pictures' worth of allowance
    assert writer.reserve(visual_verdict(image, None)) is not None
    assert writer.reserve(visual_verdict(image, None)) is None and writer.limited == 7
