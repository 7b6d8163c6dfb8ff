"""tools/bench.py --only views: the with/without runs really carry snapshots and a viewer.

Speed is not asserted (the machine decides it); that the "with" runs wrote pictures, streamed
preview frames to a real HTTP client and that the target is judged on the medians is.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ENGINES, ROOT


@pytest.mark.slow
@pytest.mark.skipif(not (ENGINES / "manifest.toml").exists(), reason="engines/manifest.toml not built")
def test_quick_views_bench_runs_both_modes_and_reports_the_cost(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "--quick", "--only", "views",
                           "--out", str(out), "--no-chart"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    v = json.loads(out.read_text())["views"]
    assert v["pairs"] == 2 and len(v["runs_fps_with"]) == len(v["runs_fps_without"]) == 2
    assert v["defects_per_run"] > 0 and all(n > 0 for n in v["snapshots_written"])
    assert all(n > 0 for n in v["preview_frames_received"]), v
    # the cost is judged on the medians of the runs (fps_with/fps_without are those, rounded for show)
    medians = statistics.median(v["runs_fps_with"]) / statistics.median(v["runs_fps_without"])
    assert v["cost"] == round(1 - medians, 3)
    target = next(t for t in json.loads(out.read_text())["targets"] if t["target"] == "snapshots + open preview cost")
    assert target["status"] in ("PASS", "FAIL") and target["bound"] == 0.1
    assert "with snapshots + open preview" in proc.stdout
