"""Would an INT8 learnt anomaly model pay?  ``python -m training.anomaly.int8_check``.

Per product family: the real ``edge-inspector learn visual`` on 200 good parts (as
``training.anomaly.evaluate`` does), then its graph quantized to INT8 QDQ with ONNX Runtime's
static quantization (the CPU recipe of ``training/common/quantize.py``: uint8 activations, int8
per-channel weights, min/max calibration on the learnt good parts) in three variants: the patch
convolutions only, the nearest-good-patch MatMuls only, both.  Each is scored against the float
graph on the family's 400 test parts (200 good, 200 defective): image AUROC, F1 and the share of
good parts rejected at the threshold learn set, and its thread-CPU time per frame at batch 1 on
one ONNX Runtime thread.  A variant ships only if it is faster and within 0.005 AUROC and 0.01
F1 of the float graph on every family (development and held out alike).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_inspector import DEFAULT_ENGINES_DIR
from edge_inspector.inspectors.visual_model import Preprocessor
from edge_inspector.manifest import load_manifest
from training.anomaly.evaluate import learn_dir
from training.anomaly.families import DEVELOPMENT, HELD_OUT, good_parts, test_parts
from training.common.metrics import auroc
from training.common.quantize import RECIPES, quantize

VARIANTS = {"conv": ("Conv",), "matmul": ("MatMul",), "conv+matmul": ("Conv", "MatMul")}


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _measure(path: Path, entry: Any, x: np.ndarray, bad: np.ndarray, calls: int = 30) -> dict[str, float]:
    session = _session(path)
    scores = np.concatenate([session.run([entry.output_score], {entry.input: x[i : i + 8]})[0]
                             for i in range(0, len(x), 8)])
    t0 = time.thread_time()
    for i in range(calls):
        session.run(None, {entry.input: x[i : i + 1]})
    ms = 1000.0 * (time.thread_time() - t0) / calls
    flag = scores >= entry.threshold
    tp, fp, fn = int((flag & bad).sum()), int((flag & ~bad).sum()), int((~flag & bad).sum())
    return {"auroc": round(auroc(scores, bad), 4), "f1": round(2 * tp / max(1, 2 * tp + fp + fn), 4),
            "good_rejected": round(fp / max(1, int((~bad).sum())), 4), "ms_per_frame": round(ms, 2)}


def check_family(family: str, product: int, base: Path, work: Path) -> dict[str, Any]:
    goods = [p.image for p in good_parts(family, product, 200)]
    directory, _ = learn_dir(goods, f"{family}{product}", base, work)
    manifest = load_manifest(directory)
    entry = manifest.anomaly("visual")
    prepare = Preprocessor(entry)
    parts = test_parts(family, product, 200, 200)
    x, bad = prepare([p.image for p in parts]), np.array([not p.good for p in parts])
    out = {"fp32": _measure(manifest.path_of(entry), entry, x, bad)}
    cpu = next(r for r in RECIPES if r.target == "onnxruntime")
    for name, ops in VARIANTS.items():
        recipe = type(cpu)(cpu.target, f".{name}.int8.onnx", False, False, ops, cpu.scheme)
        path = quantize(manifest.path_of(entry), work / f"{family}{product}{recipe.suffix}", recipe, entry.input,
                        prepare(goods[::3]))
        out[name] = _measure(path, entry, x, bad)
    print(f"{family:>10} p{product}: " + " | ".join(
        f"{k} AUROC {v['auroc']:.4f} F1 {v['f1']:.4f} {v['ms_per_frame']:.2f} ms" for k, v in out.items()), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="dev,heldout", help="dev, heldout, both (dev,heldout) or family names")
    ap.add_argument("--engines", type=Path, default=DEFAULT_ENGINES_DIR, help="the classifier learnt models run beside")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args(argv)
    sets = {"dev": list(DEVELOPMENT), "heldout": list(HELD_OUT)}
    names = [n for part in args.families.split(",") for n in sets.get(part, [part])]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="anomaly-int8-") as tmp:
        for family in names:
            results[family] = check_family(family, 0, args.engines, Path(tmp))
    verdict = {}
    for name in VARIANTS:
        worst_auroc = max(r["fp32"]["auroc"] - r[name]["auroc"] for r in results.values())
        worst_f1 = max(r["fp32"]["f1"] - r[name]["f1"] for r in results.values())
        speed = float(np.median([r["fp32"]["ms_per_frame"] / r[name]["ms_per_frame"] for r in results.values()]))
        ok = worst_auroc <= 0.005 and worst_f1 <= 0.01 and speed > 1.0
        verdict[name] = {"worst_auroc_loss": round(worst_auroc, 4), "worst_f1_loss": round(worst_f1, 4),
                         "speed_vs_fp32_median": round(speed, 3), "ships": ok}
        print(f"{name}: worst AUROC loss {worst_auroc:.4f}, worst F1 loss {worst_f1:.4f}, "
              f"fp32 ms / int8 ms (median) {speed:.2f}x -> {'ships' if ok else 'does not ship'}")
    if args.json:
        args.json.write_text(json.dumps({"families": results, "variants": verdict}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
