"""TensorRT backend: what runs without a GPU runs everywhere; the rest is marked ``gpu``.

CPU-only checks: the plan cache key, shape profiles read from real ONNX files, the plan cache,
feed validation, and that asking for TensorRT without a CUDA device gives a clear error instead
of a crash.  GPU checks build plans from tiny ONNX models (a CNN and a real ONNX GRU with state)
and from the shipped ``engines/*.onnx``, and compare TensorRT's outputs with ONNX Runtime's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edge_inspector.errors import UserError  # noqa: E402
from edge_inspector.commands import build_engines  # noqa: E402
from edge_inspector.runtime import build  # noqa: E402
from edge_inspector.runtime.build import ShapeProfile, plan_cache_key, resolve_inputs  # noqa: E402
from edge_inspector.runtime.tensorrt import check_feeds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(7)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_cnn(path: Path, classes: int = 3) -> Path:
    """image [N,3,16,16] -> Conv -> Relu -> GlobalAveragePool -> Gemm -> Softmax = probs, plus a sigmoid heatmap."""
    w = numpy_helper.from_array(RNG.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(RNG.normal(0, 0.5, (classes, 4)).astype(np.float32), "fc")
    hw = numpy_helper.from_array(RNG.normal(0, 0.5, (1, 4, 1, 1)).astype(np.float32), "hw")
    shape = helper.make_tensor("flat", TensorProto.INT64, [2], [0, -1])
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Reshape", ["g", "flat"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        helper.make_node("Conv", ["r", "hw"], ["hl"]),
        helper.make_node("Sigmoid", ["hl"], ["heatmap"]),
    ]
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes]),
         helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["batch", 1, 16, 16])],
        [w, fc, hw, shape],
    )
    return _save(graph, path)


def make_gru(path: Path, n_mels: int = 8, hidden: int = 6, classes: int = 3) -> Path:
    """mel [N,T,F], h_in [1,N,H] -> ONNX GRU -> probs [N,T,C], h_out [1,N,H] (the streaming chunk model)."""
    inits = [
        numpy_helper.from_array(RNG.normal(0, 0.4, (1, 3 * hidden, n_mels)).astype(np.float32), "W"),
        numpy_helper.from_array(RNG.normal(0, 0.4, (1, 3 * hidden, hidden)).astype(np.float32), "R"),
        numpy_helper.from_array(RNG.normal(0, 0.1, (1, 6 * hidden)).astype(np.float32), "B"),
        numpy_helper.from_array(RNG.normal(0, 0.5, (hidden, classes)).astype(np.float32), "head"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Transpose", ["mel"], ["x"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["x", "W", "R", "B", "", "h_in"], ["y", "h_out"], hidden_size=hidden, linear_before_reset=1),
        helper.make_node("Squeeze", ["y", "axis1"], ["ys"]),
        helper.make_node("Transpose", ["ys"], ["yt"], perm=[1, 0, 2]),
        helper.make_node("MatMul", ["yt", "head"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "gru",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["batch", "time", n_mels]),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, [1, "batch", hidden])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", "time", classes]),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, "batch", hidden])],
        inits,
    )
    return _save(graph, path)


# ----------------------------------------------------------------------------- CPU: cache key
KEY_ARGS = {"trt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7", "precision": "fp16"}


def test_cache_key_is_stable_and_changes_with_every_part(tmp_path: Path) -> None:
    model = make_cnn(tmp_path / "visual.onnx")
    profile = ShapeProfile.for_batch(8)
    base = plan_cache_key(model, profile=profile, **KEY_ARGS)
    assert base == plan_cache_key(model, profile=ShapeProfile.for_batch(8), **KEY_ARGS)
    assert len(base) == 64 and int(base, 16) >= 0
    variants = [
        {**KEY_ARGS, "trt_version": "10.3.1"},
        {**KEY_ARGS, "gpu_name": "NVIDIA H100 80GB HBM3"},
        {**KEY_ARGS, "compute_capability": "9.0"},
        {**KEY_ARGS, "precision": "fp32"},
    ]
    keys = {base} | {plan_cache_key(model, profile=profile, **v) for v in variants}
    for other in (ShapeProfile.for_batch(4), ShapeProfile.for_batch(8, opt_batch=1),
                  ShapeProfile.for_batch(8, default_extra=(1, 50, 800)), ShapeProfile.for_batch(8, extra={"time": (1, 10, 100)})):
        keys.add(plan_cache_key(model, profile=other, **KEY_ARGS))
    assert len(keys) == 1 + len(variants) + 4
    before = model.read_bytes()
    make_cnn(model)  # same graph, new random weights: a retrained model
    assert model.read_bytes() != before
    assert plan_cache_key(model, profile=profile, **KEY_ARGS) not in keys


def test_cache_key_rejects_unknown_precision(tmp_path: Path) -> None:
    model = make_cnn(tmp_path / "visual.onnx")
    with pytest.raises(UserError, match="precision must be one of int8, fp16, fp32"):
        plan_cache_key(model, profile=ShapeProfile.for_batch(8), **{**KEY_ARGS, "precision": "int4"})


def test_profile_validation() -> None:
    with pytest.raises(UserError, match="max_batch must be >= 1"):
        ShapeProfile.for_batch(0)
    with pytest.raises(UserError, match="1 <= min <= opt <= max"):
        ShapeProfile.for_batch(4, extra={"time": (10, 5, 100)})
    assert ShapeProfile.for_batch(4, opt_batch=99).batch == (1, 4, 4)


# ----------------------------------------------------------------------------- CPU: profiles
def test_resolve_inputs_finds_batch_and_time_axes(tmp_path: Path) -> None:
    ranges = resolve_inputs(make_gru(tmp_path / "gru.onnx"), ShapeProfile.for_batch(4))
    mel, h_in = ranges["mel"], ranges["h_in"]
    assert (mel.min, mel.opt, mel.max, mel.batch_axes) == ((1, 1, 8), (4, 50, 8), (4, 400, 8), (0,))
    assert (h_in.min, h_in.opt, h_in.max, h_in.batch_axes) == ((1, 1, 6), (1, 4, 6), (1, 4, 6), (1,))
    cnn = resolve_inputs(make_cnn(tmp_path / "cnn.onnx"), ShapeProfile.for_batch(2, opt_batch=1))["image"]
    assert (cnn.min, cnn.opt, cnn.max) == ((1, 3, 16, 16), (1, 3, 16, 16), (2, 3, 16, 16))


def test_resolve_inputs_rejects_a_non_model(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(UserError, match="broken.onnx: not a loadable ONNX model"):
        resolve_inputs(bad, ShapeProfile.for_batch(1))


def test_default_profile_uses_manifest_chunk_frames(tmp_path: Path) -> None:
    gru = make_gru(tmp_path / "acoustic_gru.onnx")
    cnn = make_cnn(tmp_path / "visual_cnn.onnx")
    (tmp_path / "manifest.toml").write_text(
        '[acoustic]\nfile = "acoustic_gru.onnx"\nsha256 = "0"\nhidden_size = 6\nnum_layers = 1\n'
        'chunk_frames = 25\nlabels = ["normal", "knock", "hiss"]\nthreshold = 0.5\nonset = 0.6\noffset = 0.4\n'
    )
    assert build.default_profile(gru, 4).default_extra == (1, 25, 400)
    assert build.default_profile(cnn, 4) == ShapeProfile.for_batch(4)
    (tmp_path / "elsewhere").mkdir()
    lone = make_gru(tmp_path / "elsewhere" / "acoustic_gru.onnx")  # no manifest beside it
    assert build.default_profile(lone, 2) == ShapeProfile.for_batch(2)


def test_default_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGE_INSPECTOR_CACHE", raising=False)
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.default_cache_dir() == tmp_path / "xdg" / "edge-inspector" / "plans"
    monkeypatch.setenv("CACHE_DIRECTORY", f"{tmp_path}/systemd:{tmp_path}/other")
    assert build.default_cache_dir() == tmp_path / "systemd" / "plans"
    monkeypatch.setenv("EDGE_INSPECTOR_CACHE", str(tmp_path / "mine"))
    assert build.default_cache_dir() == tmp_path / "mine"


# ----------------------------------------------------------------------------- CPU: plan cache
def test_plan_cache_hits_only_on_the_exact_key_and_an_intact_plan(tmp_path: Path) -> None:
    model = make_cnn(tmp_path / "visual_cnn.onnx")
    parts = build.plan_key_parts(model, profile=ShapeProfile.for_batch(8), **KEY_ARGS)
    cache = tmp_path / "plans"
    assert build.find_cached_plan(cache, parts) is None
    payload = os.urandom(4096)
    plan, sidecar = build.plan_paths(cache, parts)
    plan.parent.mkdir()
    plan.write_bytes(payload)
    build.write_sidecar(plan, sidecar, parts, build_seconds=1.5)
    assert build.find_cached_plan(cache, parts) == plan
    assert plan.name.startswith("visual_cnn-") and plan.suffix == ".plan"
    meta = json.loads(sidecar.read_text())
    assert meta["parts"]["gpu"] == "Orin" and meta["key"] == plan_cache_key(model, profile=ShapeProfile.for_batch(8), **KEY_ARGS)
    other = build.plan_key_parts(model, profile=ShapeProfile.for_batch(8), **{**KEY_ARGS, "trt_version": "10.4.0"})
    assert build.find_cached_plan(cache, other) is None  # another TensorRT never sees this plan
    plan.write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))  # same size, damaged content
    assert build.find_cached_plan(cache, parts) is None
    assert not list(cache.glob(".*.tmp"))


# ----------------------------------------------------------------------------- CPU: feed checks
def _gru_ranges(tmp_path: Path) -> dict[str, build.InputRange]:
    return resolve_inputs(make_gru(tmp_path / "gru.onnx"), ShapeProfile.for_batch(4))


def test_check_feeds_accepts_valid_batches(tmp_path: Path) -> None:
    ranges = _gru_ranges(tmp_path)
    dtypes = {n: np.dtype(np.float32) for n in ranges}
    mel = np.zeros((3, 50, 8), np.float32)[:, ::-1]  # a non-contiguous view is made contiguous
    out = check_feeds({"mel": mel, "h_in": np.zeros((1, 3, 6), np.float32)}, ranges, dtypes)
    assert out["mel"].flags.c_contiguous and out["mel"].shape == (3, 50, 8)
    with pytest.raises(UserError, match="'mel': batch axis is 3, this engine accepts 1..2"):
        check_feeds({"mel": mel, "h_in": np.zeros((1, 3, 6), np.float32)}, ranges, dtypes, max_batch=2)


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({"mel": ((2, 50, 8), np.float32)}, "missing input\\(s\\): h_in \\(the model takes: mel, h_in\\)"),
        ({"mel": ((1, 50, 8), np.float32), "h_in": ((1, 1, 6), np.float32), "x": ((1,), np.float32)}, "unknown input\\(s\\): x"),
        ({"mel": ((1, 50, 8), np.float64), "h_in": ((1, 1, 6), np.float32)}, "'mel': dtype float64, expected float32"),
        ({"mel": ((50, 8), np.float32), "h_in": ((1, 1, 6), np.float32)}, "'mel': shape \\(50, 8\\) has 2 axes, expected 3"),
        ({"mel": ((5, 50, 8), np.float32), "h_in": ((1, 5, 6), np.float32)}, "'mel': batch axis is 5, this engine accepts 1..4"),
        ({"mel": ((1, 401, 8), np.float32), "h_in": ((1, 1, 6), np.float32)}, "'mel': axis 1 is 401, this engine accepts 1..400"),
        ({"mel": ((1, 50, 9), np.float32), "h_in": ((1, 1, 6), np.float32)}, "'mel': axis 2 is 9, this engine accepts exactly 8"),
        ({"mel": ((2, 50, 8), np.float32), "h_in": ((1, 3, 6), np.float32)}, "'h_in': batch 3 differs from the batch of 'mel' \\(2\\)"),
    ],
)
def test_check_feeds_names_the_problem(tmp_path: Path, feeds: dict, message: str) -> None:
    ranges = _gru_ranges(tmp_path)
    arrays = {name: np.zeros(shape, dtype) for name, (shape, dtype) in feeds.items()}
    with pytest.raises(UserError, match=message):
        check_feeds(arrays, ranges, {n: np.dtype(np.float32) for n in ranges})


# ----------------------------------------------------------------------------- CPU: no device
def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run in a child so that a crash (segfault) shows as a failed test, not a dead test run."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    full_env = {**os.environ, "PYTHONPATH": path, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=60)


def test_import_does_not_load_tensorrt_or_cuda() -> None:
    res = _python(
        "import sys, edge_inspector.runtime.tensorrt, edge_inspector.runtime.build\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'cuda', 'pycuda')))"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_without_a_cuda_device_everything_says_why(tmp_path: Path) -> None:
    """CUDA_VISIBLE_DEVICES='' hides every GPU, so this runs the no-device path on any machine."""
    model = make_cnn(tmp_path / "visual_cnn.onnx")
    code = (
        "import json\n"
        "from pathlib import Path\n"
        "from edge_inspector.errors import UserError\n"
        "from edge_inspector.runtime import available_backends, create_engine\n"
        "from edge_inspector.runtime.tensorrt import tensorrt_available\n"
        "from edge_inspector.commands.build_engines import build_all\n"
        "out = {'available': tensorrt_available(), 'backends': available_backends()}\n"
        "for name, call in [('engine', lambda: create_engine(Path(%r), backend='tensorrt')),\n"
        "                   ('build_all', lambda: build_all(Path(%r)))]:\n"
        "    try:\n"
        "        call(); out[name] = 'no error'\n"
        "    except UserError as exc:\n"
        "        out[name] = str(exc)\n"
        "print(json.dumps(out))\n"
    ) % (str(model), str(tmp_path))
    res = _python(code, CUDA_VISIBLE_DEVICES="")
    assert res.returncode == 0, f"child died with {res.returncode}: {res.stderr[-2000:]}"
    out = json.loads(res.stdout)
    ok, reason = out["available"]
    assert ok is False and reason.startswith("no CUDA device (")
    assert out["backends"] == ["onnxruntime"]
    for name in ("engine", "build_all"):
        assert out[name] == f"TensorRT not available: {reason}"


def test_tensorrt_available_is_consistent() -> None:
    ok, reason = build.tensorrt_available()
    assert isinstance(ok, bool) and (ok == (reason == ""))
    if not ok:
        assert reason.split(" (")[0] in {"no CUDA device", "tensorrt not installed"} or \
            reason.startswith("no CUDA binding installed: cuda-python or pycuda") or \
            reason.startswith("tensorrt ") and "10.x needed" in reason


# ----------------------------------------------------------------------------- GPU
def _tensorrt_or_skip() -> None:
    ok, reason = build.tensorrt_available()
    if not ok:
        pytest.skip(f"TensorRT not available: {reason}")


@pytest.mark.gpu
@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-4), ("fp16", 1e-2)])
def test_tensorrt_cnn_matches_onnxruntime(tmp_path: Path, precision: str, atol: float) -> None:
    _tensorrt_or_skip()
    from edge_inspector.runtime import create_engine

    model = make_cnn(tmp_path / "visual_cnn.onnx")
    ref = create_engine(model, "onnxruntime")
    with create_engine(model, "tensorrt", max_batch=4, precision=precision, cache_dir=tmp_path, progress=False) as eng:
        assert (eng.inputs, eng.outputs, eng.max_batch) == (ref.inputs, ref.outputs, 4)
        for n in (1, 3, 4, 2):
            x = RNG.normal(size=(n, 3, 16, 16)).astype(np.float32)
            got, want = eng.run({"image": x}), ref.run({"image": x})
            for name in want:
                np.testing.assert_allclose(got[name], want[name], atol=atol, err_msg=f"{name} at batch {n}")
        with pytest.raises(UserError, match="batch axis is 5"):
            eng.run({"image": np.zeros((5, 3, 16, 16), np.float32)})


@pytest.mark.gpu
@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-4), ("fp16", 1e-2)])
def test_tensorrt_gru_streams_state_like_onnxruntime(tmp_path: Path, precision: str, atol: float) -> None:
    _tensorrt_or_skip()
    from edge_inspector.runtime import create_engine

    model = make_gru(tmp_path / "acoustic_gru.onnx")
    ref = create_engine(model, "onnxruntime")
    with create_engine(model, "tensorrt", max_batch=2, precision=precision, cache_dir=tmp_path, progress=False) as eng:
        h_trt = h_ref = np.zeros((1, 2, 6), np.float32)
        for frames in (50, 17, 1, 400):  # chunks of varying length, state carried across them
            mel = RNG.normal(size=(2, frames, 8)).astype(np.float32)
            got, want = eng.run({"mel": mel, "h_in": h_trt}), ref.run({"mel": mel, "h_in": h_ref})
            np.testing.assert_allclose(got["probs"], want["probs"], atol=atol)
            np.testing.assert_allclose(got["h_out"], want["h_out"], atol=atol)
            h_trt, h_ref = got["h_out"], want["h_out"]


@pytest.mark.gpu
def test_build_all_builds_once_then_hits_the_cache(tmp_path: Path) -> None:
    _tensorrt_or_skip()
    engines = tmp_path / "engines"
    engines.mkdir()
    make_cnn(engines / "visual_cnn.onnx")
    make_gru(engines / "acoustic_gru.onnx")
    first = build_engines.build_all(engines, tmp_path / "plans", "fp16", 4)
    second = build_engines.build_all(engines, tmp_path / "plans", "fp16", 4)
    assert [r["cached"] for r in first] == [False, False] and [r["cached"] for r in second] == [True, True]
    assert [r["plan"] for r in first] == [r["plan"] for r in second]
    from edge_inspector.runtime import create_engine

    with create_engine(engines / "visual_cnn.onnx", "tensorrt", max_batch=2, cache_dir=tmp_path / "plans") as eng:
        assert eng.max_batch == 2  # served by the batch-4 plan: nothing new was compiled
        assert eng.run({"image": np.zeros((2, 3, 16, 16), np.float32)})["probs"].shape == (2, 3)
        with pytest.raises(UserError, match="batch axis is 3, this engine accepts 1..2"):
            eng.run({"image": np.zeros((3, 3, 16, 16), np.float32)})
    assert len(list((tmp_path / "plans").glob("*.plan"))) == 2
    device = build.probe_cuda_device()
    meta = json.loads(Path(first[0]["plan"]).with_suffix(".json").read_text())
    assert meta["parts"]["gpu"] == device.name and meta["parts"]["compute_capability"] == device.compute_capability


def _shipped_jobs() -> list:
    try:
        return build_engines._build_jobs(ROOT / "engines", "int8") + [
            job for job in build_engines._build_jobs(ROOT / "engines", "fp16") if job[1] == "fp16"]
    except UserError:
        return []


def test_build_jobs_follow_the_manifest_and_the_precision(tmp_path: Path) -> None:
    from edge_inspector.manifest import load_manifest

    manifest = load_manifest(ROOT / "engines")
    visual = manifest.classifier("visual")
    trt_int8 = next((v for v in visual.int8 if v.target == "tensorrt"), None)
    jobs = {p.name: precision for p, precision in build_engines._build_jobs(ROOT / "engines", "int8")}
    if trt_int8 is not None:
        assert jobs == {trt_int8.file: "int8", "acoustic_gru.onnx": "fp16"}  # the GRU has no INT8 file
    assert {p.name: precision for p, precision in build_engines._build_jobs(ROOT / "engines", "fp32")} == {
        visual.file: "fp32", "acoustic_gru.onnx": "fp32"}  # never the INT8 files at fp16/fp32
    make_cnn(tmp_path / "a.onnx")  # a directory without a manifest: every file, int8 meaning fp16
    assert build_engines._build_jobs(tmp_path, "int8") == [(tmp_path / "a.onnx", "fp16")]


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("job", _shipped_jobs() or [None], ids=lambda j: f"{j[0].name}-{j[1]}" if j else "none")
def test_shipped_models_match_onnxruntime(tmp_path: Path, job: tuple | None) -> None:
    """Each shipped file at the precision the daemon runs it: fp16 plans of the float files within
    1e-2 of ONNX Runtime; the INT8 plan of the TensorRT INT8 file against ONNX Runtime running the
    same Q/DQ graph (TensorRT rounds its float layers differently, hence the wider bound)."""
    if job is None:
        pytest.skip("no engines/*.onnx to compare (train them with python -m training.visual.train / python -m training.acoustic.train)")
    _tensorrt_or_skip()
    from edge_inspector.runtime import create_engine

    model, precision = job
    ref = create_engine(model, "onnxruntime")
    with create_engine(model, "tensorrt", max_batch=4, precision=precision, cache_dir=tmp_path, progress=False) as eng:
        feeds = {}
        for name, rng in resolve_inputs(model, build.default_profile(model, 4)).items():
            shape = [2 if axis in rng.batch_axes else size for axis, size in enumerate(rng.opt)]
            feeds[name] = RNG.normal(0, 1, shape).astype(np.float32)
        got, want = eng.run(feeds), ref.run(feeds)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-2 if precision == "fp16" else 0.1,
                                       err_msg=f"{model.name}:{name}")
