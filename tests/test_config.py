"""check-config: every bad config exits 2 with one line per problem naming its key path."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge_inspector.cli import main
from edge_inspector.config import load_config

from conftest import ROOT, free_port, render_toml


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "line.toml"
    path.write_text(text)
    return path


def base_tables(tmp_path: Path) -> dict:
    return {"publisher": {"endpoint": f"tcp://127.0.0.1:{free_port()}",
                          "catchup_endpoint": f"tcp://127.0.0.1:{free_port()}",
                          "journal": str(tmp_path / "j.sqlite3")}}


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["check-config", str(path)])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line]


def expect_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str], tables: dict, expected: str | None) -> None:
    """check-config of ``tables`` with one synthetic camera: ok when ``expected`` is None, else exit 2
    with exactly one line, containing ``expected``."""
    tables = {"health": {"listen": f"127.0.0.1:{free_port()}"}, **tables}  # not the default port: it may be taken
    path = write(tmp_path, render_toml(tables, {"camera": [{"name": "cam0", "uri": "synthetic://surface"}]}))
    code, lines = check(path, capsys)
    if expected is None:
        assert code == 0, lines
    else:
        assert code == 2 and len(lines) == 1 and expected in lines[0], lines


def test_shipped_configs_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = check(ROOT / "configs" / "demo.toml", capsys)
    assert code == 0, lines
    cfg = load_config(ROOT / "configs" / "line.example.toml")  # structure only: its devices are not here
    assert [c.name for c in cfg.camera] == ["top", "side"]
    assert cfg.camera[0].roi == (320, 0, 640, 720)


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        ({"name": "cam0", "uri": "synthetic://surface", "treshold": 0.5}, "camera[0].treshold: unknown key"),
        ({"name": "cam0", "uri": "synthetic://surface", "queue_size": "four"}, "camera[0].queue_size:"),
        ({"name": "cam0", "uri": "synthetic://surface", "threshold": 1.5}, "camera[0].threshold:"),
        ({"name": "cam0", "uri": "synthetic://surface", "roi": [0, 0, 0, 10]}, "camera[0].roi:"),
        ({"name": "cam 0", "uri": "synthetic://surface"}, "camera[0].name:"),
        ({"name": "cam0", "uri": "ftp://host/clip.mp4"}, "camera[0].uri: unknown camera URI scheme 'ftp'"),
        ({"name": "cam0", "uri": "file:///nonexistent/clip.mp4"}, "camera[0].uri: file not found: /nonexistent/clip.mp4"),
        ({"name": "cam0", "uri": "file://relative/clip.mp4"}, "camera[0].uri: file URIs need an absolute path"),
        # a key of another kind of camera names the kinds it is for
        ({"name": "cam0", "uri": "synthetic://surface", "width": 640},
         "camera[0].width: only for v4l2:///dev/video0 cameras; this one is synthetic"),
        ({"name": "cam0", "uri": "v4l2:///dev/video0", "loop": True},
         "camera[0].loop: only for file:///abs/clip.mp4 cameras; this one is v4l2"),
        ({"name": "cam0", "uri": "file:///x.mp4", "stall_timeout_s": 1.0},
         "(MJPEG) · v4l2:///dev/video0 cameras; this one is file"),
    ],
)
def test_bad_camera_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], camera: dict, expected: str) -> None:
    path = write(tmp_path, render_toml(base_tables(tmp_path), {"camera": [camera]}))
    code, lines = check(path, capsys)
    assert code == 2
    assert any(expected in line for line in lines), lines
    assert not any("Traceback" in line for line in lines)


def test_duplicate_names_and_unknown_mic_scheme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = render_toml(base_tables(tmp_path), {
        "camera": [{"name": "a", "uri": "synthetic://surface"}, {"name": "a", "uri": "synthetic://surface"}],
    })
    code, lines = check(write(tmp_path, text), capsys)
    assert code == 2 and any(line.endswith("camera[1].name: duplicate source name 'a' (also camera[0])") for line in lines), lines

    text = render_toml(base_tables(tmp_path), {"microphone": [{"name": "m", "uri": "alsa:hw0"}]})
    code, lines = check(write(tmp_path, text), capsys)
    assert code == 2 and any("microphone[0].uri: unknown microphone URI scheme" in line for line in lines), lines


def test_unbindable_endpoint_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        tables = base_tables(tmp_path)
        tables["publisher"]["endpoint"] = f"tcp://127.0.0.1:{port}"
        text = render_toml(tables, {"camera": [{"name": "c", "uri": "synthetic://surface"}]})
        code, lines = check(write(tmp_path, text), capsys)
    finally:
        busy.close()
    assert code == 2
    assert any(line.startswith("edge-inspector: publisher.endpoint:") and str(port) in line for line in lines), lines


def test_every_problem_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = render_toml(base_tables(tmp_path), {"camera": [
        {"name": "a", "uri": "file:///missing/a.mp4"},
        {"name": "b", "uri": "file:///missing/b.mp4"},
    ]})
    code, lines = check(write(tmp_path, text), capsys)
    assert code == 2
    assert any("camera[0].uri" in line for line in lines) and any("camera[1].uri" in line for line in lines), lines


def test_not_toml_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = check(write(tmp_path, "[[camera]\nname = "), capsys)
    assert code == 2 and "not valid TOML" in lines[0]
    code, lines = check(tmp_path / "nope.toml", capsys)
    assert code == 2 and "config file not found" in lines[0]


def test_cli_prints_no_traceback_for_user_errors(tmp_path: Path) -> None:
    path = write(tmp_path, render_toml(base_tables(tmp_path), {"camera": [{"name": "c", "uri": "rtmp://x"}]}))
    proc = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "run", "--config", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "camera[0].uri: unknown camera URI scheme 'rtmp'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_review_cases_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        tables = base_tables(tmp_path)
        tables["health"] = {"listen": f"127.0.0.1:{busy.getsockname()[1]}"}
        text = render_toml(tables, {
            "camera": [{"name": "c", "uri": "synthetic://surface?fps=0"}],
            "microphone": [{"name": "m", "uri": "synthetic://machine?fault_rate=2"},
                           {"name": "n", "uri": "synthetic://machine", "offset": 0.99}],
        })
        code, lines = check(write(tmp_path, text), capsys)
    finally:
        busy.close()
    assert code == 2
    for key in ("health.listen: cannot listen", "camera[0].uri: fps=0", "microphone[0].uri:", "microphone[1].offset:"):
        assert any(key in line for line in lines), (key, lines)


def test_percent_encoded_file_uri_and_no_bind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import write_video
    import numpy as np

    folder = tmp_path / "line 3"
    folder.mkdir()
    video = write_video(folder / "clip.mp4", [np.zeros((64, 64, 3), np.uint8)] * 3)
    tables = base_tables(tmp_path)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    tables["publisher"]["endpoint"] = f"tcp://127.0.0.1:{busy.getsockname()[1]}"
    try:
        path = write(tmp_path, render_toml(tables, {"camera": [{"name": "c", "uri": video.as_uri()}]}))
        assert "%20" in video.as_uri()
        code, lines = check(path, capsys)
        assert code == 2 and any("publisher.endpoint" in line for line in lines), lines
        assert main(["check-config", "--no-bind", str(path)]) == 0  # a running station holds its ports
    finally:
        busy.close()
