"""Video files decoded with PyAV: the model's input made from the YUV planes must be the input the
OpenCV path gives (same verdicts), and the full-size picture must be OpenCV's, for every format
a file or camera sends (x264's limited-range 4:2:0, MJPEG's full-range 4:2:0 and 4:2:2)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ENGINES
from edge_inspector.errors import SourceError, UserError
from edge_inspector.inspectors.visual_model import resize_to
from edge_inspector.sources.decoded import DecodedPicture, pixels
from edge_inspector.sources.frames import crop_roi
from edge_inspector.sources.pyav_capture import AvCapture

pytest.importorskip("av", reason="PyAV is not installed (./setup.sh installs the video extra)")

#: (codec arguments, pixel format the decoder gives)
FORMATS = {
    "h264": (["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"], "yuv420p", ".mp4"),
    "mjpeg420": (["-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"], "yuvj420p", ".avi"),
    "mjpeg422": (["-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj422p"], "yuvj422p", ".avi"),
}


def _parts(count: int, width: int = 640, height: int = 360) -> list[np.ndarray]:
    from edge_inspector.synthetic.surfaces import make_surface

    rng = np.random.default_rng(3)
    labels = ["ok", "scratch", "spot", "crack", "dent", "ok"]
    return [cv2.resize(make_surface(rng, label=labels[i % len(labels)]).image, (width, height),
                       interpolation=cv2.INTER_CUBIC) for i in range(count)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("decoded")
    frames = _parts(6)
    raw = b"".join(f.tobytes() for f in frames)
    out = {}
    for name, (codec, _, suffix) in FORMATS.items():
        path = tmp / f"{name}{suffix}"
        proc = subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
                               "-s", "640x360", "-r", "10", "-i", "-", *codec, str(path)], input=raw, capture_output=True)
        assert proc.returncode == 0, proc.stderr.decode()
        out[name] = path
    return out


def _both(path: Path) -> tuple[list[np.ndarray], list[DecodedPicture]]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    ref = []
    while (got := cap.read())[0]:
        ref.append(got[1])
    cap.release()
    av_cap = AvCapture(path)
    assert av_cap.isOpened()
    pictures = []
    while (item := av_cap.read())[0]:
        pictures.append(item[1])
    av_cap.release()
    return ref, pictures


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_model_input_from_the_planes_matches_the_full_frame_path(clips: dict[str, Path], fmt: str) -> None:
    ref, pictures = _both(clips[fmt])
    assert len(pictures) == len(ref) == 6
    assert pictures[0]._frame.format.name == FORMATS[fmt][1]  # the path under test, not the fallback
    for bgr, picture in zip(ref, pictures):
        assert picture.shape == bgr.shape
        small = picture.resized(256, 256, resize_to)
        diff = np.abs(small.astype(int) - resize_to(bgr, 256, 256))
        assert small.shape == (256, 256, 3) and small.dtype == np.uint8
        assert diff.mean() < 2.0 and np.percentile(diff, 99) <= 6, (diff.mean(), np.percentile(diff, 99))
        # the full-size picture is OpenCV's (FFmpeg's conversion, converted only now)
        full = np.abs(pixels(picture).astype(int) - bgr)
        assert full.mean() < 1.0


def test_a_region_of_interest_is_cut_from_the_planes(clips: dict[str, Path]) -> None:
    _, pictures = _both(clips["h264"])
    picture = pictures[2]
    full = picture.pixels()
    crop, origin = crop_roi(picture, (101, 51, 300, 240), "cam0")
    assert origin == (101, 51) and crop.shape == (240, 300, 3)
    assert np.array_equal(pixels(crop), full[51:291, 101:401])
    diff = np.abs(crop.resized(128, 128, resize_to).astype(int) - resize_to(full[51:291, 101:401], 128, 128))
    assert diff.mean() < 2.0
    edge, _ = crop_roi(picture, (600, 300, 100, 100), "cam0")  # cut at the frame's edge, as an array slice is
    assert edge.shape == (60, 40, 3) and np.array_equal(pixels(edge), full[300:, 600:])
    with pytest.raises(UserError, match="outside the 640x360 frame"):
        crop_roi(picture, (640, 0, 10, 10), "cam0")


@pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines/manifest.toml not built")
@pytest.mark.parametrize("fmt", ["h264", "mjpeg422"])
def test_the_model_gives_the_same_verdicts_on_either_path(clips: dict[str, Path], fmt: str) -> None:
    from edge_inspector.inspectors.factory import engine_opener, open_visual
    from edge_inspector.manifest import load_manifest

    runner = open_visual(load_manifest(ENGINES), engine_opener("onnxruntime"), 8)
    try:
        ref, pictures = _both(clips[fmt])
        a, b = runner.infer(ref), runner.infer(pictures)
    finally:
        runner.close()
    assert [r.label for r in a] == [r.label for r in b]
    assert [r.defect for r in a] == [r.defect for r in b]
    assert max(abs(x.score - y.score) for x, y in zip(a, b)) < 0.1


def test_a_looping_file_rewinds_and_a_bad_file_does_not_open(clips: dict[str, Path], tmp_path: Path) -> None:
    from edge_inspector.sources.registry import open_source, source_settings

    cfg = source_settings("camera", name="cam0", uri=f"file://{clips['h264']}", realtime=False, loop=True,
                          decoder="pyav")
    camera, queue = open_source(cfg, min_file_size=64)
    camera.start()
    deadline = 200
    while len(queue) < 15 and deadline:  # 6 frames in the file: it went round twice
        deadline -= 1
        camera.stop_event.wait(0.05)
    camera.stop()
    camera.join(10)
    got = [queue.get_nowait() for _ in range(len(queue))]
    frames = [f for f in got if f is not None]
    assert len(frames) >= 15 and isinstance(frames[0].image, DecodedPicture)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert np.array_equal(pixels(frames[0].image), pixels(frames[6].image))  # the same first frame, again
    bad = tmp_path / "not_a_video.mp4"
    bad.write_bytes(b"this is not a video\n" * 100)
    assert not AvCapture(bad).isOpened()
    cfg = source_settings("camera", name="cam1", uri=f"file://{bad}", realtime=False, decoder="pyav")
    camera, _ = open_source(cfg)
    with pytest.raises(SourceError, match="cannot open"):
        camera.open()
