"""tools/bench.py: a quick run finishes and writes JSON with the keys tracked across commits.

Speed is never asserted here (the figures depend on the machine); the structure, the target
logic and the error handling are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "tools" / "bench.py"
sys.path.insert(0, str(ROOT / "tools"))


def _has_visual_model() -> bool:
    manifest = ROOT / "engines" / "manifest.toml"
    return manifest.is_file() and "[visual]" in manifest.read_text()


@pytest.mark.slow
@pytest.mark.skipif(not _has_visual_model(), reason="engines/manifest.toml has no [visual] model yet")
def test_quick_engine_decode_bus_writes_json_and_chart(tmp_path: Path) -> None:
    out = tmp_path / "res" / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--only", "engine,decode,bus", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    machine = data["machine"]
    for key in ("date", "git_commit", "cpu_model", "cpu_cores", "versions", "command"):
        assert key in machine, key
    assert machine["versions"]["onnxruntime"] and machine["versions"]["opencv"]
    assert data["scenarios"] == ["engine", "decode", "bus"]
    batches = data["engine"]["onnxruntime"]["batches"]
    assert set(batches) == {"1", str(data["config"]["max_batch"])}
    for b in batches.values():
        assert b["fps"] > 0 and b["calls"] >= 5
    assert data["decode"]["fps"] > 0 and data["decode"]["frames"] >= data["clip"]["frames"]
    from edge_inspector.config import CameraConfig

    assert data["decode"]["threads"] == CameraConfig.model_fields["decode_threads"].default  # as the daemon decodes
    assert data["bus"]["received"] == data["bus"]["events"]  # loopback SUB, nothing lost
    statuses = {t["target"]: t["status"] for t in data["targets"]}
    assert len(statuses) == 8 and set(statuses.values()) == {"SKIP"}  # daemon and plant scenarios not run
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "engine onnxruntime batch 1" in proc.stdout


def test_unknown_scenario_is_a_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--only", "engine,warp", "--out", str(tmp_path / "b.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "unknown scenario(s) warp" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "b.json").exists()


def test_targets_pass_and_fail_on_the_measured_numbers() -> None:
    from bench_report import evaluate_targets

    results = {
        "engine": {"onnxruntime": {"batches": {"8": {"fps": 200.0}}}},
        "decode": {"fps": 400.0},
        "daemon_replay": {"fps": 185.0},
        "naive": {"fps": 70.0},
        "latency": {"capture_to_receive_ms": {"p99": 50.0}, "decode_preprocess_inference_ms": {"p50": 20.0}},
        "scale": {"max_sustained_cameras": 2, "runs": [
            {"cameras": 4, "sustained": False, "inspected_fps_total": 90.0, "dropped": 120,
             "limiting_stage": "inference"}]},
    }
    got = {t["target"]: t for t in evaluate_targets(results, 8)}
    assert got["pipeline efficiency"]["status"] == "PASS"  # 185 >= 0.9 * min(200, 400)
    assert got["pipeline efficiency"]["bound"] == 180.0
    assert got["daemon vs naive loop"]["status"] == "FAIL"  # 185 < 210
    assert got["p99 latency at 30 fps"]["status"] == "FAIL"  # 50 > 40
    assert got["4 cameras 720p30, zero drops"]["status"] == "FAIL"
    assert "limited by inference" in got["4 cameras 720p30, zero drops"]["detail"]
    results["daemon_replay"]["fps"] = 150.0
    results["latency"]["capture_to_receive_ms"]["p99"] = 40.0
    got = {t["target"]: t for t in evaluate_targets(results, 8)}
    assert got["pipeline efficiency"]["status"] == "FAIL"
    assert got["p99 latency at 30 fps"]["status"] == "PASS"


def test_cpu_ceiling_counts_every_core_and_every_inference_thread() -> None:
    from bench_report import cpu_ceiling_fps, evaluate_targets

    results = {
        "machine": {"cpu_cores_usable": 2},
        "engine": {"onnxruntime": {"threads": 1, "batches": {"8": {"fps": 250.0, "ms_per_frame": 4.0}}}},
        "decode": {"fps": 500.0, "ms_per_frame": {"mean": 2.0}},
        "preprocess_ms_per_frame": {"runner_preprocess": 2.0},
        "daemon_replay": {"fps": 200.0},
        "naive": {"fps": 100.0},
    }
    assert cpu_ceiling_fps(results, 8) == 250.0  # 2 cores x 1000 / (2 + 2 + 4 ms)
    naive = {t["target"]: t for t in evaluate_targets(results, 8)}["daemon vs naive loop"]
    assert naive["status"] == "FAIL" and "tops out at 250 fps = 2.50 x naive" in naive["detail"]
    results["engine"]["onnxruntime"]["threads"] = 2  # two busy threads per call cost twice the CPU
    assert cpu_ceiling_fps(results, 8) == 2000.0 / 12.0
    del results["preprocess_ms_per_frame"]  # not measured: no ceiling claimed
    assert cpu_ceiling_fps(results, 8) is None


def test_paired_efficiency_is_the_median_of_each_run_against_its_own_engine_figure() -> None:
    from bench_report import evaluate_targets

    results = {
        "engine": {"onnxruntime": {"batches": {"8": {"fps": 280.0}}}},  # measured minutes earlier
        "decode": {"fps": 500.0},
        "daemon_replay": {"fps": 230.0, "runs_fps": [210.0, 230.0, 240.0], "runs_engine_fps": [230.0, 250.0, 262.0],
                          "runs_efficiency": [0.913, 0.92, 0.916], "efficiency_median": 0.916,
                          "efficiency_decode_fps": 500.0},
    }
    eff = {t["target"]: t for t in evaluate_targets(results, 8)}["pipeline efficiency"]
    assert eff["status"] == "PASS" and eff["value"] == 0.916 and eff["bound"] == 0.9  # 230 / 280 alone would fail
    assert "210/230, 230/250, 240/262" in eff["detail"]
    results["daemon_replay"].update(runs_efficiency=[0.8, 0.85, 0.95], efficiency_median=0.85)
    assert {t["target"]: t for t in evaluate_targets(results, 8)}["pipeline efficiency"]["status"] == "FAIL"
    results["daemon_replay"]["efficiency_decode_fps"] = None  # --only daemon: decode not measured first
    eff = {t["target"]: t for t in evaluate_targets(results, 8)}["pipeline efficiency"]
    assert eff["status"] == "SKIP" and "decode not measured" in eff["detail"]


@pytest.mark.slow
@pytest.mark.skipif(not _has_visual_model(), reason="engines/manifest.toml has no [visual] model yet")
def test_paired_replays_runs_the_engine_before_each_real_daemon_run(tmp_path: Path) -> None:
    import statistics

    from bench_common import make_clips
    from bench_daemon import paired_replays
    from edge_inspector.manifest import load_manifest

    engines = ROOT / "engines"
    manifest = load_manifest(engines)
    clip = make_clips(tmp_path, 24, distinct=4).h264
    out = paired_replays(clip, engines, manifest.path_of(manifest.classifier("visual")), 4, 2, 0.2, decode_fps=150.0)
    assert len(out["runs_fps"]) == len(out["runs_engine_fps"]) == len(out["runs_efficiency"]) == 2
    assert out["verdicts"] == 24 and out["fps"] in out["runs_fps"]
    for fps, engine, ratio in zip(out["runs_fps"], out["runs_engine_fps"], out["runs_efficiency"]):
        assert engine > 0 and ratio == round(fps / min(engine, 150.0), 3)
    assert out["efficiency_median"] == round(statistics.median(out["runs_efficiency"]), 3)  # 2 runs: the mean
    assert out["efficiency_decode_fps"] == 150.0


def test_only_runs_scenarios_in_the_fixed_order() -> None:
    from bench import _parse_only

    assert _parse_only("daemon,decode,engine") == ["engine", "decode", "daemon"]


@pytest.mark.slow
def test_quick_plant_scenarios_report_their_targets(tmp_path: Path) -> None:
    pytest.importorskip("paho.mqtt")
    pytest.importorskip("pymodbus")
    from mqtt_broker import need_mosquitto

    need_mosquitto()
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--only", "mqtt,plc", "--out", str(out), "--no-chart"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["mqtt"]["received"] == data["mqtt"]["events"] and data["mqtt"]["acked_per_s"] > 0
    assert data["plc"]["decisions"] == 100 and 0 < data["plc"]["p50_ms"] <= data["plc"]["p99_ms"]
    statuses = {t["target"]: t["status"] for t in data["targets"]}
    assert statuses["MQTT QoS 1 events/s, journal on"] in ("PASS", "FAIL")
    assert statuses["broker outage: events lost"] == "SKIP"  # not run
    assert "PLC decision to a Modbus client" in proc.stdout
