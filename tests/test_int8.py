"""INT8 models: the QDQ recipes, the manifest's INT8 entries, which file runs at which precision,
and the quantization script's rule that nothing ships unless it kept the float model's accuracy."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_inspector.errors import UserError
from edge_inspector.inspectors.factory import engine_opener, open_visual
from edge_inspector.manifest import Manifest, load_manifest, sha256_of
from edge_inspector.precision import default_precision, model_file
from edge_inspector.synthetic.surfaces import make_surface

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ROOT / "engines"
LABELS = ("ok", "scratch", "crack", "spot", "dent")
FIRST_CONV = "/features/features.0/features.0.0/Conv"


def _shipped_int8() -> bool:
    m = load_manifest(ENGINES, verify=False)
    return bool(m.classifier("visual") and m.classifier("visual").int8)


needs_int8 = pytest.mark.skipif(not _shipped_int8(), reason="engines/ ships no INT8 file yet "
                                "(python -m training.visual.quantize --engines engines)")


def _entry(**over: object) -> dict:
    entry = {"name": "visual_cnn", "file": "visual_cnn.onnx", "sha256": "2" * 64, "mean": [0.5] * 3,
             "std": [0.25] * 3, "labels": list(LABELS), "threshold": 0.8}
    entry.update(over)
    return entry


def _variant(target: str = "onnxruntime", **over: object) -> dict:
    v = {"target": target, "file": f"visual_cnn.{target}.onnx", "sha256": "3" * 64, "source_sha256": "2" * 64,
         "scheme": "QDQ", "calibration": "test"}
    v.update(over)
    return v


# ------------------------------------------------------------------------- which file runs


def test_each_precision_picks_its_file_on_each_backend(tmp_path: Path) -> None:
    entry = Manifest(visual=[_entry(int8=[_variant("onnxruntime"), _variant("tensorrt", sha256="4" * 64)])]).classifier("visual")
    cases = {  # (asked, backend) -> (file, precision that runs, fell back?)
        ("int8", "onnxruntime"): ("visual_cnn.onnxruntime.onnx", "int8", False),
        ("int8", "tensorrt"): ("visual_cnn.tensorrt.onnx", "int8", False),
        ("fp16", "onnxruntime"): ("visual_cnn.onnx", "fp32", True),
        ("fp16", "tensorrt"): ("visual_cnn.onnx", "fp16", False),
        ("fp32", "onnxruntime"): ("visual_cnn.onnx", "fp32", False),
        (None, "onnxruntime"): ("visual_cnn.onnxruntime.onnx", "int8", False),
        (None, "tensorrt"): ("visual_cnn.onnx", "fp16", False),
    }
    for (asked, backend), (name, runs, note) in cases.items():
        f = model_file(tmp_path, entry, asked, backend)
        assert (f.path, f.precision, bool(f.note)) == (tmp_path / name, runs, note), (asked, backend)
    assert model_file(tmp_path, entry, "int8", "tensorrt").sha256 == "4" * 64  # the file that runs is named
    assert (default_precision("onnxruntime"), default_precision("tensorrt")) == ("int8", "fp16")
    bare = Manifest(visual=[_entry()]).classifier("visual")
    f = model_file(tmp_path, bare, "int8", "onnxruntime")
    assert f.precision == "fp32" and "has no INT8 file for onnxruntime" in f.note


@pytest.mark.parametrize("variants,message", [
    ([_variant(source_sha256="9" * 64)], "were made from another model; re-run python -m training.visual.quantize"),
    ([_variant(), _variant(file="other.onnx")], "more than one INT8 file per target"),
    ([_variant(target="openvino")], "visual.0"),
])
def test_inconsistent_int8_entries_are_refused(tmp_path: Path, variants: list, message: str) -> None:
    import tomli_w

    (tmp_path / "manifest.toml").write_text(tomli_w.dumps({"schema_version": 1, "visual": _entry(int8=variants)}))
    with pytest.raises(UserError, match="invalid manifest") as err:
        load_manifest(tmp_path, verify=False)
    assert message in str(err.value)


@needs_int8
def test_a_changed_int8_file_is_refused_by_its_own_sha256(tmp_path: Path) -> None:
    shutil.copytree(ENGINES, tmp_path / "engines")
    variant = load_manifest(tmp_path / "engines").classifier("visual").int8[0]
    with open(tmp_path / "engines" / variant.file, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(UserError, match=f"{variant.file}: sha256 .* does not match the manifest"):
        load_manifest(tmp_path / "engines")


@needs_int8
def test_the_daemon_default_runs_the_int8_file_and_names_it() -> None:
    manifest = load_manifest(ENGINES)
    entry = manifest.classifier("visual")
    variant = next(v for v in entry.int8 if v.target == "onnxruntime")
    assert variant.source_sha256 == entry.sha256 == sha256_of(manifest.path_of(entry))
    int8 = open_visual(manifest, engine_opener("onnxruntime"), 4, precision=None)
    fp32 = open_visual(manifest, engine_opener("onnxruntime"), 4, precision="fp32")
    assert int8.models[0].precision == "int8" and int8.sha256 == variant.sha256 != fp32.sha256
    assert "visual_cnn int8 (visual_cnn.int8.onnx)" in int8.describe()
    rng = np.random.default_rng(5)
    images = [make_surface(rng, "metal", label).image for label in ("ok", "scratch", "spot", "ok")]
    a, b = int8.infer(images), fp32.infer(images)
    assert max(abs(x.score - y.score) for x, y in zip(a, b)) < 0.25  # close, not equal: it is INT8
    assert all(x.heatmap.shape == y.heatmap.shape == (32, 32) for x, y in zip(a, b))
    int8.close()
    fp32.close()


# ------------------------------------------------------------------------- the recipes


def _nodes(path: Path):
    import onnx

    return onnx.load(str(path)).graph


@pytest.mark.slow
def test_recipes_make_the_qdq_graph_each_runtime_wants(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from training.common.quantize import RECIPES, first_convs, quantize

    assert first_convs(ENGINES / "visual_cnn.onnx") == [FIRST_CONV, "/features/features.0/features.0.2/Relu"]
    runner = open_visual(load_manifest(ENGINES), engine_opener("onnxruntime"), 8, precision="fp32")
    rng = np.random.default_rng(1)
    x = runner.preprocess([make_surface(rng, f, "ok").image for f in ("metal", "cast", "painted", "metal")] * 2)
    reference = runner.run(x)[0]["probs"]
    for recipe in RECIPES:
        out = quantize(ENGINES / "visual_cnn.onnx", tmp_path / f"m{recipe.suffix}", recipe, "image", x)
        graph = _nodes(out)
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        produced_by = {o: n for n in graph.node for o in n.output}
        convs = [n for n in graph.node if n.op_type == "Conv"]
        quantized = {n.name for n in convs if n.input[1] in produced_by and produced_by[n.input[1]].op_type == "DequantizeLinear"}
        zero_points = [inits[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
        if recipe.target == "onnxruntime":
            assert quantized == {n.name for n in convs} - {FIRST_CONV}  # the 6-channel first conv stays float
            assert all(z.dtype == np.uint8 for z in zero_points)
        else:
            assert quantized == {n.name for n in convs}
            assert all(z.dtype == np.int8 and not z.any() for z in zero_points)  # TensorRT: symmetric int8 only
            conv_outputs = {o for n in convs for o in n.output}
            assert not [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in conv_outputs]
        assert not any(n.op_type == "QuantizeLinear" and n.input[0] == "image" for n in graph.node)  # front end float
        onnx.checker.check_model(str(out))
        import onnxruntime as ort

        probs = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["probs"], {"image": x})[0]
        assert np.abs(probs - reference).max() < 0.2 and (probs.argmax(1) == reference.argmax(1)).mean() >= 0.75
    runner.close()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed (./setup.sh --train)")
def test_quantize_ships_only_what_keeps_the_accuracy(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    engines.mkdir()
    for name in ("manifest.toml", "visual_cnn.onnx", "acoustic_gru.onnx", "README.md"):
        shutil.copy(ENGINES / name, engines / name)
    manifest = load_manifest(engines, verify=False)
    bare = manifest.classifier("visual").model_copy(update={"int8": ()})
    from edge_inspector.manifest import replace_entry, write_manifest

    write_manifest(replace_entry(manifest, "visual", bare))
    before = (engines / "manifest.toml").read_text()
    cmd = [sys.executable, "-m", "training.visual.quantize", "--engines", str(engines), "-n", "24",
           "--calibration", "16", "--rounds", "1"]
    # an impossible bound (INT8 must be better than fp32 by 1.0 AUROC): refused, nothing written
    proc = subprocess.run(cmd + ["--max-auroc-drop", "-1"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1 and "not shipped, accuracy not kept: onnxruntime: main" in proc.stderr, proc.stderr[-2000:]
    assert (engines / "manifest.toml").read_text() == before and not list(engines.glob("*int8*"))
    assert not list(engines.glob(".*"))  # no candidate left behind
    proc = subprocess.run(cmd + ["--max-auroc-drop", "1", "--max-f1-drop", "1"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shipped = load_manifest(engines)  # verifies every file's sha256, INT8 ones included
    variants = {v.target: v for v in shipped.classifier("visual").int8}
    assert set(variants) == {"onnxruntime", "tensorrt"}
    assert all(v.source_sha256 == shipped.classifier("visual").sha256 for v in variants.values())
    card = (engines / "README.md").read_text()
    assert "<!-- BEGIN visual-int8 -->" in card and "nuisance (light, noise, focus)" in card
    assert "<!-- BEGIN visual -->" in card  # the float model's card is kept
    meta = {p.key: p.value for p in _nodes_meta(engines / variants["tensorrt"].file)}
    assert meta["source_sha256"] == shipped.classifier("visual").sha256 and meta["target"] == "tensorrt"


def _nodes_meta(path: Path):
    import onnx

    return onnx.load(str(path)).metadata_props
