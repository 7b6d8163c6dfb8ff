#!/usr/bin/env python3
"""INT8 versions of a directory's visual classifier, shipped only when they keep its accuracy.

    python -m training.visual.quantize --engines engines

1. **Calibrate** on images from the training generator (the training families, a seed split of
   their own: never an evaluation image), preprocessed by the runtime's own ``preprocess``.
2. **Quantize** with ONNX Runtime static quantization in QDQ form, one file per runtime target
   (``training/common/quantize.py``: ``<model>.int8.onnx`` for ONNX Runtime on CPU,
   ``<model>.int8-tensorrt.onnx`` for TensorRT's explicit quantization).
3. **Verify** every file through the runtime path (``VisualModelRunner`` on an ONNX Runtime
   engine, as the daemon runs it) against the float model on held-out sets: the two sets of the
   model card (``training/visual/evaluate.py``) and a nuisance set of lighting, noise and focus
   beyond the training range, where clipped activation ranges would show first.  A file ships only
   if on every set its AUROC is within 0.005 and its F1 within 0.01 of the float model's.
4. **Ship**: the files, their ``[[visual.int8]]`` entries (sha256, and the sha256 of the float
   model they came from) in ``manifest.toml``, and the ``visual-int8`` section of the model card
   with every figure.  Nothing is written when a check fails (exit 1, the failing set named).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_inspector import DEFAULT_ENGINES_DIR
from edge_inspector.inspectors.heads import head_for
from edge_inspector.inspectors.visual_model import LoadedModel, VisualModelRunner
from edge_inspector.manifest import QuantizedFile, load_manifest, replace_entry, sha256_of, write_manifest
from edge_inspector.precision import ModelFile
from edge_inspector.runtime import create_engine
from edge_inspector.synthetic.surfaces import FAMILIES, Sample
from training.common.modelcard import update_readme_section
from training.common.quantize import RECIPES, Recipe, quantize, stamp
from training.visual.data import TRAIN_FAMILIES, generate_one
from training.visual.evaluate import EVAL_SEED, SETS, generate_set, score_set
from training.visual.int8_card import int8_card

SPLIT_CALIBRATION = 5  # seed split of the calibration images (training uses 1/2, evaluation 3/4, nuisance 6)
SPLIT_NUISANCE = 6
NUISANCE = "nuisance (light, noise, focus)"
MAX_AUROC_DROP, MAX_F1_DROP = 0.005, 0.01  # a file ships only within these of the float model, on every set


@dataclass
class Checked:
    """One file's figures on every held-out set, and whether it may ship."""

    name: str  # "fp32" or the recipe's target
    metrics: dict[str, dict[str, float]]  # set -> score_set() figures
    score_diff: dict[str, float]  # set -> max |score - fp32 score|
    agreement: dict[str, float]  # set -> share of images with the fp32 model's decision
    failures: list[str]


def calibration_tensors(runner: VisualModelRunner, seed: int, n: int) -> np.ndarray:
    """``n`` training-like images (training families in turn, split ``SPLIT_CALIBRATION``) as the
    runtime preprocesses them."""
    images = [generate_one((seed, SPLIT_CALIBRATION, i, TRAIN_FAMILIES, False))[0] for i in range(n)]
    return runner.preprocess(images)


def _nuisance(image: np.ndarray, kind: int, rng: np.random.Generator) -> np.ndarray:
    """Beyond the training nuisances (gain 0.75-1.2, noise sigma <= 5, blur sigma <= 1.1)."""
    import cv2

    x = image.astype(np.float32)
    if kind == 0:  # over-exposed: highlights clip
        x = x * rng.uniform(1.3, 1.5)
    elif kind == 1:  # dim
        x = x * rng.uniform(0.45, 0.6)
    elif kind == 2:  # sensor noise
        x = x + rng.normal(0.0, rng.uniform(7.0, 10.0), x.shape)
    else:  # soft focus
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(1.3, 1.8))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def nuisance_set(n: int) -> list[Sample]:
    """Evaluation-seed surfaces of every family, each with one nuisance beyond the training range
    (over-exposure, dim light, sensor noise, soft focus in turn); half good, half defective."""
    samples = generate_set(FAMILIES, SPLIT_NUISANCE, n)
    out = []
    for i, s in enumerate(samples):
        rng = np.random.default_rng([EVAL_SEED, SPLIT_NUISANCE, i, 1])
        out.append(Sample(_nuisance(s.image, (i // 2) % 4, rng), s.label, s.mask, s.bbox, s.family, s.visibility))
    return out


def heldout_sets(n: int) -> dict[str, list[Sample]]:
    sets = {name: generate_set(families, split, n) for name, (families, split) in SETS.items()}
    sets[NUISANCE] = nuisance_set(n)
    return sets


def open_runner(entry: object, file: ModelFile, threads: int = 1) -> VisualModelRunner:
    """The runtime path over one file of the entry (ONNX Runtime, ``threads`` intra-op threads)."""
    engine = create_engine(file.path, "onnxruntime", max_batch=8, intra_op_threads=threads)
    return VisualModelRunner([LoadedModel(entry, head_for(entry), engine, file)])


def check(name: str, runner: VisualModelRunner, sets: dict[str, list[Sample]], reference: dict[str, list] | None,
          ref_metrics: dict[str, dict[str, float]] | None, bounds: tuple[float, float] = (MAX_AUROC_DROP, MAX_F1_DROP),
          ) -> tuple[Checked, dict]:
    """Score ``runner`` on every set; against the float model's results when given, failing a set
    where AUROC or F1 fell by more than ``bounds``."""
    metrics, diff, agree, failures, results = {}, {}, {}, [], {}
    for set_name, samples in sets.items():
        res = runner.infer([s.image for s in samples])
        results[set_name] = res
        metrics[set_name] = score_set(samples, res)
        if reference is not None and ref_metrics is not None:
            ref = reference[set_name]
            diff[set_name] = float(max(abs(a.score - b.score) for a, b in zip(res, ref)))
            agree[set_name] = float(np.mean([a.label == b.label for a, b in zip(res, ref)]))
            d_auroc = metrics[set_name]["auroc"] - ref_metrics[set_name]["auroc"]
            d_f1 = metrics[set_name]["f1"] - ref_metrics[set_name]["f1"]
            if d_auroc < -bounds[0] or d_f1 < -bounds[1]:
                failures.append(f"{set_name}: AUROC {d_auroc:+.4f}, F1 {d_f1:+.4f} against fp32")
        print(f"{name:>12} {set_name:>30}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics[set_name].items()
                                                         if isinstance(v, float)))
    return Checked(name, metrics, diff, agree, failures), results


def speed(runners: dict[str, VisualModelRunner], rounds: int, calls: int) -> dict[str, dict[str, float]]:
    """ms per frame of one engine call at batch 1 and 8, one thread, the files in turn within each
    round (a shared machine drifts between rounds): the median round, wall and thread CPU time."""
    x8 = next(iter(runners.values())).preprocess([np.zeros((256, 256, 3), np.uint8)] * 8)
    per: dict[str, dict[str, list[float]]] = {n: {} for n in runners}
    for _ in range(rounds):
        for batch in (1, 8):
            x = x8[:batch]
            for name, runner in runners.items():
                runner.run(x)
                wall, cpu = [], []
                for _ in range(max(3, calls // batch)):
                    t, c = time.perf_counter(), time.thread_time()
                    runner.run(x)
                    wall.append(time.perf_counter() - t)
                    cpu.append(time.thread_time() - c)
                per[name].setdefault(f"b{batch}", []).append(1000.0 * float(np.median(wall)) / batch)
                per[name].setdefault(f"b{batch} cpu", []).append(1000.0 * float(np.median(cpu)) / batch)
    out = {n: {k: float(np.median(v)) for k, v in d.items()} for n, d in per.items()}
    out["load"] = {"1min": os.getloadavg()[0]}
    return out


def run(engines_dir: Path, n: int, calibration: int, rounds: int,
        bounds: tuple[float, float] = (MAX_AUROC_DROP, MAX_F1_DROP)) -> int:
    manifest = load_manifest(engines_dir)
    entry = manifest.classifier("visual")
    if entry is None:
        raise SystemExit(f"{engines_dir}/manifest.toml has no visual classifier")
    float_path = manifest.path_of(entry)
    fp32 = open_runner(entry, ModelFile(float_path, entry.sha256, "fp32"))
    seed = int(_recipe(float_path).get("seed", 20240611))
    t0 = time.monotonic()
    calib = calibration_tensors(fp32, seed, calibration)
    print(f"calibration: {len(calib)} training-like images (seed {seed}, split {SPLIT_CALIBRATION})")
    sets = heldout_sets(n)
    ref, ref_results = check("fp32", fp32, sets, None, None)
    checked: list[tuple[Recipe, Path, Checked]] = []
    runners = {"fp32": fp32}
    for recipe in RECIPES:
        out = engines_dir / f"{Path(entry.file).stem}{recipe.suffix}"
        tmp = out.with_name(f".{out.stem}.candidate.onnx")
        quantize(float_path, tmp, recipe, entry.input, calib)
        runner = open_runner(entry, ModelFile(tmp, sha256_of(tmp), "int8"))
        result, _ = check(recipe.target, runner, sets, ref_results, ref.metrics, bounds)
        checked.append((recipe, tmp, result))
        if recipe.target == "onnxruntime":  # the TensorRT file is not meant for a CPU: not timed here
            runners[recipe.target] = runner
    timing = speed(runners, rounds, 40)
    failed = [f"{r.target}: {'; '.join(c.failures)}" for r, _, c in checked if c.failures]
    if failed:
        for _, tmp, _ in checked:
            tmp.unlink(missing_ok=True)
        print("not shipped, accuracy not kept: " + " | ".join(failed), file=sys.stderr)
        return 1
    calibration_text = (f"{len(calib)} images from the training generator ({'+'.join(TRAIN_FAMILIES)}, seed {seed}, "
                        f"split {SPLIT_CALIBRATION}), min/max")
    variants = []
    for recipe, tmp, _ in checked:
        out = engines_dir / f"{Path(entry.file).stem}{recipe.suffix}"
        stamp(tmp, {"source_sha256": entry.sha256, "target": recipe.target, "scheme": recipe.scheme,
                    "calibration": calibration_text})
        tmp.replace(out)
        variants.append(QuantizedFile(target=recipe.target, file=out.name, sha256=sha256_of(out),
                                      source_sha256=entry.sha256, scheme=recipe.scheme, calibration=calibration_text))
    write_manifest(replace_entry(manifest, "visual", entry.model_copy(update={"int8": tuple(variants)})))
    card = int8_card(entry, variants, ref, [c for _, _, c in checked], timing, n, time.monotonic() - t0, rounds, bounds)
    update_readme_section(engines_dir, "visual-int8", card)
    print(f"wrote {', '.join(v.file for v in variants)}, manifest.toml and the visual-int8 card section")
    return 0


def _recipe(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", type=Path, default=DEFAULT_ENGINES_DIR)
    ap.add_argument("-n", type=int, default=600, help="images per held-out set")
    ap.add_argument("--calibration", type=int, default=256, help="calibration images")
    ap.add_argument("--rounds", type=int, default=5, help="speed rounds (each file in turn per round)")
    ap.add_argument("--max-auroc-drop", type=float, default=MAX_AUROC_DROP, help="largest AUROC loss that ships")
    ap.add_argument("--max-f1-drop", type=float, default=MAX_F1_DROP, help="largest F1 loss that ships")
    args = ap.parse_args(argv)
    if args.n < 2 or args.calibration < 1 or args.rounds < 1:
        ap.error("-n must be >= 2, --calibration and --rounds >= 1")
    return run(args.engines, args.n, args.calibration, args.rounds, (args.max_auroc_drop, args.max_f1_drop))


if __name__ == "__main__":
    sys.exit(main())
