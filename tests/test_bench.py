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
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    machine = data["machine"]
    for key in ("date", "git_commit", "cpu_model", "cpu_cores", "versions", "command"):
        assert key in machine, key
    assert machine["versions"]["onnxruntime"] and machine["versions"]["opencv"]
    assert data["scenarios"] == ["engine", "decode", "bus"]
    by_precision = data["engine"]["onnxruntime"]
    assert set(by_precision) == set(data["config"]["precisions"]) and data["default_precision"] in by_precision
    for precision, e in by_precision.items():
        assert set(e["batches"]) == {"1", "2", "4", "8"} and e["runs"] == precision
        for b in e["batches"].values():
            assert b["fps"] > 0 and b["calls"] >= 5 and b["cpu_ms_per_frame"] > 0
        assert e["all_cores_fps"] == max(e["all_cores"].values()) and "1x1" in e["all_cores"]
    if {"int8", "fp32"} <= set(by_precision):
        assert data["int8_vs_fp32"]["all_cores"] == round(by_precision["int8"]["all_cores_fps"]
                                                          / by_precision["fp32"]["all_cores_fps"], 3)
    assert data["decode"]["fps"] > 0 and data["decode"]["frames"] >= data["clip"]["frames"]
    from edge_inspector.sources.settings import FFmpegDecoder

    assert data["decode"]["threads"] == FFmpegDecoder.model_fields["decode_threads"].default  # as the daemon decodes
    assert data["bus"]["received"] == data["bus"]["events"]  # loopback SUB, nothing lost
    statuses = {t["target"]: t["status"] for t in data["targets"]}
    assert statuses["INT8 model vs FP32 model"] in ("PASS", "FAIL", "SKIP")
    assert statuses["p99 latency at 30 fps"] == "SKIP"  # daemon and plant scenarios not run
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "model onnxruntime fp32 batch 1" in proc.stdout


def test_unknown_scenario_is_a_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--only", "engine,warp", "--out", str(tmp_path / "b.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "unknown scenario(s) warp" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "b.json").exists()


def _speed_results(vs: list[float], naive: float = 70.0, threaded: float = 110.0) -> dict:
    runs = [200.0, 210.0, 220.0]
    return {
        "default_precision": "int8",
        "engine": {"onnxruntime": {
            "int8": {"all_cores_fps": 900.0, "batches": {"1": {"fps": 500.0, "cpu_ms_per_frame": 2.0}}},
            "fp32": {"all_cores_fps": 450.0, "batches": {"1": {"fps": 300.0, "cpu_ms_per_frame": 3.5}}}}},
        "daemon_replay": {"int8": {"fps": 210.0, "runs_fps": runs, "runs_ceiling_fps": [230.0, 230.0, 240.0],
                                   "runs_vs_ceiling": vs, "vs_ceiling_median": sorted(vs)[1],
                                   "runs_cpu_ms_per_frame": [6.0, 5.5, 5.2], "runs_cores_busy": [1.7, 1.9, 1.95],
                                   "runs_cpu_share": [0.8, 0.873, 0.923], "cpu_share_median": 0.873,
                                   "runs_preprocess_cpu_ms": [1.2, 1.3, 1.25], "runs_inference_cpu_ms": [2.0, 2.1, 2.05],
                                   "policy": {"batch": 1, "workers": 2, "threads": 1}}},
        "naive": {"fp32": {"fps": naive}},
        "threaded": {"fp32": {"fps": threaded}, "int8": {"fps": 150.0}},
        "latency": {"capture_to_receive_ms": {"p99": 50.0}, "decode_preprocess_inference_ms": {"p50": 20.0}},
        "scale": {"max_sustained_cameras": 2, "runs": [
            {"cameras": 4, "sustained": False, "inspected_fps_total": 90.0, "dropped": 120,
             "limiting_stage": "inference"}]},
    }


def test_speed_targets_pass_and_fail_on_the_measured_numbers() -> None:
    from bench_report import evaluate_targets
    from bench_speed import summarise

    results = _speed_results([0.87, 0.913, 0.917])
    results.update(summarise(results))
    assert results["ceiling"] == {"int8": 230.0} and results["daemon_vs_ceiling"] == {"int8": 0.913}
    assert results["int8_vs_fp32"] == {"all_cores": 2.0, "one_thread": 1.667, "one_thread_cpu_batch1": 1.75}
    assert results["daemon_vs_peers"] == {"naive_fp32": 3.0, "threaded_fp32": 1.909, "threaded_int8": 1.4}
    got = {t["target"]: t for t in evaluate_targets(results)}
    ceiling = got["daemon vs all-cores ceiling (int8)"]
    assert ceiling["status"] == "PASS" and ceiling["value"] == 0.913 and "200/230, 210/230, 220/240" in ceiling["detail"]
    assert results["daemon_cpu_share"] == {"int8": 0.873}
    share = got["daemon CPU share of the ceiling per core (int8)"]
    assert share["status"] == "FAIL" and "0.923 (1.95 cores busy)" in share["detail"]  # 0.873 < 0.9
    assert got["INT8 model vs FP32 model"]["status"] == "PASS"  # 2.0 >= 1.8
    assert got["daemon (int8) vs naive FP32 loop"]["status"] == "PASS"  # 3.0 >= 2.5
    assert got["daemon (int8) vs threaded two-stage loop"]["status"] == "PASS"  # 1.909 >= 1.5
    assert "ratio 1.4" in got["daemon (int8) vs threaded two-stage loop"]["detail"]  # the INT8 peer is shown too
    assert got["p99 latency at 30 fps"]["status"] == "FAIL"  # 50 > 40
    assert "limited by inference" in got["4 cameras 720p30, zero drops"]["detail"]
    slow = _speed_results([0.8, 0.85, 0.95], naive=90.0, threaded=150.0)
    slow.update(summarise(slow))
    got = {t["target"]: t for t in evaluate_targets(slow)}
    assert got["daemon vs all-cores ceiling (int8)"]["status"] == "FAIL"  # median 0.85
    assert got["daemon (int8) vs naive FP32 loop"]["status"] == "FAIL"  # 210 / 90 = 2.33
    assert got["daemon (int8) vs threaded two-stage loop"]["status"] == "FAIL"  # 1.4
    assert {t["target"]: t for t in evaluate_targets({})}["INT8 model vs FP32 model"]["status"] == "SKIP"


def test_the_ceiling_is_every_core_over_the_cpu_each_frame_needs() -> None:
    from bench_engine import ceiling_fps

    assert ceiling_fps(2, 2.0, 1.0, 2.0) == 400.0  # 2 cores x 1000 / (2 + 1 + 2 ms)
    assert ceiling_fps(4, 2.0, 1.0, 2.0) == 800.0


@pytest.mark.slow
@pytest.mark.skipif(not _has_visual_model(), reason="engines/manifest.toml has no [visual] model yet")
def test_paired_replays_measure_the_model_after_each_real_daemon_run(tmp_path: Path, monkeypatch) -> None:
    import statistics

    from bench_common import make_clips
    from bench_daemon import paired_replays
    from bench_engine import ceiling_fps

    from edge_inspector.inspectors.policy import usable_cores

    monkeypatch.setenv("EDGE_INSPECTOR_CACHE", str(tmp_path / "cache"))
    clip = make_clips(tmp_path, 24, distinct=4).h264
    out = paired_replays(clip, ROOT / "engines", "fp32", None, 2, 0.2, decode_cpu_ms=2.0)
    assert len(out["runs_fps"]) == len(out["runs_ceiling_fps"]) == len(out["runs_vs_ceiling"]) == 2
    assert out["verdicts"] == 24 and out["fps"] in out["runs_fps"] and out["precision"] == "fp32"
    assert out["policy"]["how"] in ("measured", "cached") and out["models"][0]["precision"] == "fp32"
    # each run's ceiling: every core running the one-thread decode -> preprocess -> inference loop
    for fps, loop, cpu, prep, parts, ceiling, ratio in zip(
            out["runs_fps"], out["runs_pipeline_cpu_ms"], out["runs_inference_cpu_ms"], out["runs_preprocess_cpu_ms"],
            out["runs_parts_cpu_ms"], out["runs_ceiling_fps"], out["runs_vs_ceiling"]):
        assert prep > 0 and loop > cpu  # the loop infers too, and decodes and preprocesses
        assert ceiling == ceiling_fps(usable_cores(), loop) and ratio == round(fps / ceiling, 3)
        assert parts == round(2.0 + prep + cpu, 3)  # the parts alone, beside it
    assert out["vs_ceiling_median"] == round(statistics.median(out["runs_vs_ceiling"]), 3)
    # the process's CPU per frame between the first and the last verdict, and the loop's share of it
    for cpu, busy, share, loop in zip(out["runs_cpu_ms_per_frame"], out["runs_cores_busy"], out["runs_cpu_share"],
                                      out["runs_pipeline_cpu_ms"]):
        assert cpu > 0 and 0 < busy <= usable_cores() + 0.5 and share == round(loop / cpu, 3)


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


def test_latency_subscriber_is_a_process_of_its_own_stamping_each_verdict() -> None:
    """The latency scenario's subscriber runs as a real client does, outside the daemon's process
    (inside it, each receive would also wait for the daemon's interpreter lock)."""
    import os
    import time

    import zmq
    from bench_latency import _Sub

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub = _Sub(f"tcp://127.0.0.1:{port}")
    try:
        sub.start()
        assert sub._proc.pid != os.getpid() and sub._proc.is_alive()
        t0 = time.time()
        deadline = time.monotonic() + 10.0
        seq = 0
        while time.monotonic() < deadline and seq < 150:  # 1.5 s: time enough for the slow joiner to join
            seq += 1
            pub.send_multipart([b"verdict.cam0", json.dumps({"seq": seq}).encode()])
            pub.send_multipart([b"defect.visual.cam0", json.dumps({"seq": -seq}).encode()])
            time.sleep(0.01)
    finally:
        sub.close()
        pub.close(0)
        ctx.term()
    t1 = time.time()
    assert sub.events, "the subscriber process received nothing"
    seqs = [e["seq"] for _, e in sub.events]
    assert all(s > 0 for s in seqs) and seqs == sorted(seqs)  # only verdict.*, in order
    assert all(t0 <= t <= t1 for t, _ in sub.events)
    assert sub._proc.exitcode == 0


def test_chart_draws_the_daemons_cpu_beside_its_parts() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bench_speed import cpu_panel, summarise

    results = _speed_results([0.87, 0.913, 0.917])
    results["decode"] = {"cpu_ms_per_frame": 2.4}
    results.update(summarise(results))
    fig, ax = plt.subplots()
    cpu_panel(results, ax)
    heights = [round(p.get_height(), 3) for p in ax.patches]
    plt.close(fig)
    assert heights == [2.4, 1.25, 2.05, 5.5]  # decode, preprocess, inference stacked; the daemon's 5.5 ms
    assert "share 0.873" in [t.get_text() for t in ax.texts]
