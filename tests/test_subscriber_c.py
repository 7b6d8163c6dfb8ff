"""The C subscriber example compiles against libzmq and receives events from EventBus."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from edge_inspector.events import EventBus, Journal
from edge_inspector.values import Verdict

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "examples" / "subscriber.c"


def _zmq_header() -> bool:
    dirs = ["/usr/include", "/usr/local/include", "/usr/include/x86_64-linux-gnu",
            "/usr/include/aarch64-linux-gnu"]
    return any((Path(d) / "zmq.h").exists() for d in dirs)


pytestmark = [
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed"),
    pytest.mark.skipif(not _zmq_header(), reason="zmq.h missing (apt-get install libzmq3-dev)"),
]


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("csub") / "subscriber"
    # The documented build command, plus -Wall -Werror so warnings in the example fail here.
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(SOURCE),
                    "-lzmq"], check=True, capture_output=True, text=True)
    return out


def test_c_subscriber_receives_defects(binary: Path, tmp_path: Path) -> None:
    bus = EventBus("tcp://127.0.0.1:*", Journal(tmp_path / "j.db"), None, heartbeat_s=0)
    proc = subprocess.Popen([str(binary), "-e", bus.endpoint, "-n", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sent: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 10
        i = 0
        while proc.poll() is None and time.monotonic() < deadline:
            i += 1
            label = ["scratch", "crack", "dent"][i % 3]
            v = Verdict("cam0", "visual", label, 0.9, True, time.time(), time.monotonic(),
                        "cnn", "ab" * 32, frame=i, bbox=[1, 2, 3, 4])
            sent[bus.publish_verdict(v)["seq"]] = f"defect.visual.cam0 {label}"
            bus.publish_status("cam0", "online")  # filtered out by the default "defect." prefix
            time.sleep(0.02)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        bus.close()
        bus.journal.close()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 5
    seqs = []
    for line in lines:
        seq_s, rest = line.split(" ", 1)
        seqs.append(int(seq_s))
        assert sent[int(seq_s)] == rest
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    # consecutive defect events are two seqs apart (a status event sits between them)
    assert all(b - a == 2 for a, b in zip(seqs, seqs[1:]))
