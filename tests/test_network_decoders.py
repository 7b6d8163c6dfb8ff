"""Network cameras decoded with PyAV (the ``decoder`` key, as for video files), against the real
GStreamer RTSP server: the frames stay YUV, the model's input made from their planes is the one
the full-frame path gives, the model gives the same verdicts on both, a camera that refuses the
password is reported without it, and ``decoder = "opencv"`` still gives full-size BGR arrays."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from conftest import ENGINES
from edge_inspector.errors import SourceError
from edge_inspector.inspectors.visual_model import resize_to
from edge_inspector.sources.decoded import DecodedPicture, pixels
from edge_inspector.sources.registry import open_source, source_settings
from edge_inspector.values import Frame
from rtsp_camera import RtspCamera

pytest.importorskip("av", reason="PyAV is not installed (./setup.sh installs the video extra)")

PASSWORD = "n3t-Secret"


@pytest.fixture(scope="module")
def camera() -> RtspCamera:
    cam = RtspCamera(user="admin", password=PASSWORD, fps=10, width=640, height=360)
    yield cam
    cam.close()


def _frames(uri: str, decoder: str, count: int) -> list[Frame]:
    """The first ``count`` frames a camera thread would queue (stale ones of the connect backlog dropped)."""
    src, _queue = open_source(source_settings("camera", name="ipcam", uri=uri, decoder=decoder))
    src.open()
    try:
        frames = []
        for frame in src.read_items():
            frames.append(frame)
            if len(frames) == count:
                return frames
    finally:
        src.release()
    raise AssertionError(f"the stream ended after {len(frames)} frames")


def test_rtsp_frames_stay_yuv_and_give_the_full_frame_paths_model_input(camera: RtspCamera) -> None:
    frames = _frames(camera.url(), "pyav", 6)
    assert [f.index for f in frames] == list(range(6))
    assert all(b.mono > a.mono for a, b in zip(frames, frames[1:]))  # stamped by the stream's clock, in order
    for frame in frames:
        picture = frame.image
        assert isinstance(picture, DecodedPicture) and picture._frame.format.name == "yuv420p"
        assert picture.shape == (360, 640, 3)
        small = picture.resized(256, 256, resize_to)
        diff = np.abs(small.astype(int) - resize_to(pixels(picture), 256, 256))
        assert diff.mean() < 2.0 and np.percentile(diff, 99) <= 6, (diff.mean(), np.percentile(diff, 99))


def test_opencv_decoder_still_gives_full_size_bgr(camera: RtspCamera) -> None:
    frames = _frames(camera.url(), "opencv", 3)
    assert all(isinstance(f.image, np.ndarray) and f.image.shape == (360, 640, 3) for f in frames)


@pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines/manifest.toml not built")
def test_the_model_gives_the_same_verdicts_on_planes_and_full_frames(camera: RtspCamera) -> None:
    from edge_inspector.inspectors.factory import engine_opener, open_visual
    from edge_inspector.manifest import load_manifest

    pictures = [f.image for f in _frames(camera.url(), "pyav", 6)]
    runner = open_visual(load_manifest(ENGINES), engine_opener("onnxruntime"), 8)
    try:
        planes, full = runner.infer(pictures), runner.infer([pixels(p) for p in pictures])
    finally:
        runner.close()
    assert [r.label for r in planes] == [r.label for r in full]
    assert [r.defect for r in planes] == [r.defect for r in full]
    assert max(abs(a.score - b.score) for a, b in zip(planes, full)) < 0.1


def test_a_refused_password_is_reported_without_it(camera: RtspCamera, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edge_inspector")
    src, _queue = open_source(source_settings("camera", name="ipcam", uri=camera.url(password="wrong-" + PASSWORD),
                                              decoder="pyav"))
    with pytest.raises(SourceError) as err:
        src.open()
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("edge_inspector")]
    assert "admin:***@" in str(err.value) and "401" in str(err.value), err.value  # what the status event says
    assert any("401" in m for m in ours), ours
    assert PASSWORD not in str(err.value) + "".join(ours)


def test_a_closed_port_is_named_as_refused() -> None:
    from rtsp_camera import unanswering_port

    sock, port = unanswering_port()
    sock.close()  # type: ignore[attr-defined]
    src, _queue = open_source(source_settings("camera", name="ipcam", uri=f"rtsp://127.0.0.1:{port}/cam", decoder="pyav"))
    with pytest.raises(SourceError, match="refused"):
        src.open()
