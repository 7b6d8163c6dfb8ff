"""The source-kind registry: every kind found by its scheme, one queue policy for every user of sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_inspector.sources.registry import all_kinds, kind_for, open_source, source_settings


def test_every_scheme_has_exactly_one_kind_per_medium() -> None:
    cameras = {s for k in all_kinds() if k.media == "camera" for s in k.schemes}
    microphones = {s for k in all_kinds() if k.media == "microphone" for s in k.schemes}
    assert {"file", "v4l2", "rtsp", "rtsps", "http", "https", "gst", "synthetic"} <= cameras
    assert {"pulse", "pyaudio", "file", "synthetic"} <= microphones
    assert kind_for("camera", "file:///a.mp4") is not kind_for("microphone", "file:///a.wav")
    assert kind_for("camera", "ftp://host/a.mp4") is None


@pytest.mark.parametrize(("media", "uri", "policy", "size"), [
    ("camera", "synthetic://surface", "drop_oldest", 4),  # live: bounded latency, drops counted
    ("camera", "file:///clip.mp4", "block", 16),  # a file never skips, and may decode the next batch ahead
    ("microphone", "synthetic://machine", "drop_oldest", 64),
    ("microphone", "file:///clip.wav", "block", 64),
])
def test_open_source_applies_the_queue_policy_of_the_kind(media: str, uri: str, policy: str, size: int,
                                                          tmp_path: Path) -> None:
    thread, queue = open_source(source_settings(media, name="s", uri=uri), min_file_size=16)  # type: ignore[arg-type]
    assert (queue.policy, queue.maxsize) == (policy, size)
    assert thread.source_name == "s" and not thread.is_alive()  # opened, not started


def test_settings_of_a_kind_offer_only_its_own_keys() -> None:
    v4l2 = source_settings("camera", name="c", uri="v4l2:///dev/video2", width=640)
    assert v4l2.width == 640 and "loop" not in type(v4l2).model_fields  # type: ignore[attr-defined]
    video = source_settings("camera", name="c", uri="file:///a.mp4", realtime=False)
    assert video.paced_by_inspector() and "width" not in type(video).model_fields
