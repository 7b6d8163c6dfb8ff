#!/usr/bin/env python3
"""Evaluate the shipped visual model through ONNX Runtime and write its model card.

    python -m training.visual.evaluate --engines engines

Uses the runtime path (``edge_inspector.inspectors.visual_model``) on the exported ONNX file,
so the figures are what the daemon delivers.  Two held-out sets, generated from seeds never
used in training: all three families (metal, painted, cast) and cast alone.  Writes
``visual_confusion.png``, ``visual_examples.png`` and the ``visual`` section of README.md.

    python -m training.visual.train --holdout-family cast --out /tmp/vis-holdout
    python -m training.visual.evaluate --engines engines --holdout-engines /tmp/vis-holdout

The second form also runs the cast set through a model trained WITHOUT cast (the held-out
style experiment) and stores its figures in ``visual_heldout_style.json`` next to the shipped
model, so later card rewrites keep them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge_inspector import DEFAULT_ENGINES_DIR
from edge_inspector.inspectors.factory import engine_opener, open_visual
from edge_inspector.inspectors.visual_model import VisualModelRunner, VisualResult
from edge_inspector.manifest import Manifest, load_manifest
from edge_inspector.synthetic.surfaces import LABELS, Sample, make_surface
from training.common.metrics import auroc
from training.common.modelcard import update_readme_section
from training.visual.card import HELDOUT_NAME as HELDOUT_FILE, contrast_window, model_card, speed_text

EVAL_SEED = 900_001  # training uses --seed with splits 1/2; these never overlap
MAIN, CAST = "main (metal, painted, cast)", "cast only"
SETS = {MAIN: (("metal", "painted", "cast"), 3), CAST: (("cast",), 4)}


@dataclass
class SetResult:
    samples: list[Sample]
    results: list[VisualResult]
    metrics: dict[str, float]



def generate_set(families: tuple[str, ...], split: int, n: int) -> list[Sample]:
    """Half good, half defects (even over types), random family, reproducible per index."""
    out = []
    for i in range(n):
        rng = np.random.default_rng([EVAL_SEED, split, i])
        label = "ok" if i % 2 == 0 else LABELS[1 + (i // 2) % (len(LABELS) - 1)]
        out.append(make_surface(rng, families[int(rng.integers(len(families)))], label))
    return out


def _overlaps(bbox: list[int] | None, mask: np.ndarray) -> bool:
    if bbox is None:
        return False
    x, y, w, h = bbox
    return bool(mask[y : y + h, x : x + w].any())


def score_set(samples: list[Sample], results: list[VisualResult]) -> dict[str, float]:
    truth = np.array([s.label != "ok" for s in samples])
    scores = np.array([r.score for r in results])
    flagged = np.array([r.defect for r in results])
    tp, fp = int((flagged & truth).sum()), int((flagged & ~truth).sum())
    fn = int((~flagged & truth).sum())
    defect_idx = np.flatnonzero(truth)
    type_ok = [LABELS[1 + int(np.argmax([results[i].probs[k] for k in LABELS[1:]]))] == samples[i].label
               for i in defect_idx]
    hits = [_overlaps(results[i].bbox, samples[i].mask) for i in defect_idx if results[i].defect]
    return {
        "images": len(samples),
        "auroc": auroc(scores, truth),
        "f1": 2 * tp / max(1, 2 * tp + fp + fn),
        "recall": tp / max(1, tp + fn),
        "good_reject": fp / max(1, int((~truth).sum())),
        "type_accuracy": float(np.mean(type_ok)) if type_ok else float("nan"),
        "accuracy_5class": float(np.mean([r.label == s.label for r, s in zip(results, samples)])),
        "bbox_hit": float(np.mean(hits)) if hits else float("nan"),
    }


def confusion(samples: list[Sample], results: list[VisualResult]) -> np.ndarray:
    m = np.zeros((len(LABELS), len(LABELS)), np.int64)
    for s, r in zip(samples, results):
        m[LABELS.index(s.label), LABELS.index(r.label)] += 1
    return m


def speed(runner: VisualModelRunner, batch: int, repeats: int, clock: Callable[[], float] = time.perf_counter,
          image: np.ndarray | None = None) -> float:
    """Median ms per frame of one engine call at ``batch`` (preprocessing excluded), by ``clock``
    (``time.thread_time`` on a one-thread engine: its cost on one core, however busy the machine)."""
    x = runner.preprocess([np.zeros((256, 256, 3), np.uint8) if image is None else image] * batch)
    for _ in range(3):  # warm-up: first calls allocate and pick kernels
        runner.run(x)
    times = []
    for _ in range(repeats):
        t = clock()
        runner.run(x)
        times.append(clock() - t)
    return float(np.median(times)) * 1000.0 / batch


def speed_rounds(runner: VisualModelRunner, rounds: int, repeats: int) -> dict[str, float]:
    """Batch 1 and 8 speed as the median of ``rounds`` rounds (each the median of ``repeats``
    calls), with the fastest and slowest round: a shared VM drifts by 30 % between rounds a few
    seconds apart, and one round alone cannot show it.  Also the 1-min load average."""
    timing: dict[str, float] = {}
    for batch in (1, 8):
        per_round = [speed(runner, batch, repeats) for _ in range(rounds)]
        timing[f"batch {batch}"] = float(np.median(per_round))
        timing[f"batch {batch} min"], timing[f"batch {batch} max"] = min(per_round), max(per_round)
    timing["load"] = os.getloadavg()[0]
    return timing


def _open(engines_dir: Path) -> tuple[Manifest, VisualModelRunner]:
    """The directory's visual classifier alone, as the daemon opens it (its anomaly model, if any,
    has a card of its own)."""
    manifest = load_manifest(engines_dir)
    if manifest.classifier("visual") is None:
        raise SystemExit(f"{engines_dir}/manifest.toml has no visual classifier")
    return manifest, open_visual(manifest, engine_opener("onnxruntime"), 8, kinds=("classifier",))


def _recipe(path: Path) -> dict[str, str]:
    """The training recipe stored in the ONNX metadata by training/visual/train.py."""
    import onnxruntime as ort

    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(meta.get_modelmeta().custom_metadata_map)


def _run_set(runner: VisualModelRunner, name: str, n: int) -> SetResult:
    families, split = SETS[name]
    samples = generate_set(families, split, n)
    results = runner.infer([s.image for s in samples])
    out = SetResult(samples, results, score_set(samples, results))
    print(f"{name:>30}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in out.metrics.items()))
    return out


def evaluate_heldout(holdout_dir: Path, engines_dir: Path, n: int = 600) -> dict:
    """Cast set through a model trained without cast; figures saved next to the shipped model."""
    manifest, runner = _open(Path(holdout_dir))
    model = manifest.classifier("visual")
    recipe = _recipe(manifest.path_of(model))
    if "cast" in recipe.get("families", "cast").split("+"):
        raise SystemExit(f"{holdout_dir}: this model was trained on cast (families {recipe.get('families')!r}); "
                         "train it with python -m training.visual.train --holdout-family cast")
    result = _run_set(runner, CAST, n)
    runner.close()
    record = {"metrics": result.metrics, "recipe": recipe, "threshold": model.threshold,
              "contrast_window": contrast_window(manifest.path_of(model))}
    (Path(engines_dir) / HELDOUT_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return record


def evaluate(engines_dir: Path, smoke: bool = False, n: int = 600,
             holdout_dir: Path | None = None) -> dict[str, SetResult]:
    """Run both held-out sets, measure speed, write the PNGs and the model card section."""
    engines_dir = Path(engines_dir)
    manifest, runner = _open(engines_dir)
    model = manifest.classifier("visual")
    n = 20 if smoke else n
    sets = {name: _run_set(runner, name, n) for name in SETS}
    heldout_path = engines_dir / HELDOUT_FILE
    if holdout_dir is not None:
        evaluate_heldout(holdout_dir, engines_dir, n)
    heldout = json.loads(heldout_path.read_text()) if heldout_path.is_file() else None
    timing = speed_rounds(runner, rounds=2 if smoke else 5, repeats=5 if smoke else 50)
    print(f"ORT CPU, median round (fastest-slowest): {speed_text(timing)}; load {timing['load']:.2f}")
    recipe = _recipe(manifest.path_of(model))
    plot_confusion({k: confusion(v.samples, v.results) for k, v in sets.items()}, LABELS,
                   engines_dir / "visual_confusion.png")
    plot_examples(sets[MAIN].samples[:12] + sets[CAST].samples[:4],
                  sets[MAIN].results[:12] + sets[CAST].results[:4],
                  engines_dir / "visual_examples.png")
    card = model_card(model, manifest.path_of(model), {k: v.metrics for k, v in sets.items()}, timing, recipe, heldout)
    update_readme_section(engines_dir, "visual", card)
    print(f"wrote {engines_dir / 'README.md'} (visual section), visual_confusion.png, visual_examples.png")
    runner.close()
    return sets


# ------------------------------------------------------------------------- figures and card


def plot_confusion(matrices: dict[str, np.ndarray], labels: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(matrices), figsize=(5 * len(matrices), 4.4))
    for ax, (name, m) in zip(np.atleast_1d(axes), matrices.items()):
        ax.imshow(m / np.maximum(1, m.sum(1, keepdims=True)), cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", color="black" if i != j else "white", fontsize=9)
        ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted (at the shipped threshold)")
        ax.set_ylabel("true")
        ax.set_title(f"{name} ({int(m.sum())} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_examples(samples: list[Sample], results: list[VisualResult], path: Path) -> None:
    """Grid of inputs with the heatmap overlaid, true box (green) and predicted box (red)."""
    import cv2

    tiles = []
    for s, r in zip(samples, results):
        img = s.image.copy()
        heat = cv2.resize(r.heatmap, img.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
        img = np.where(heat[..., None] > 0.2, (0.6 * img + 0.4 * colour).astype(np.uint8), img)
        if s.bbox:
            x, y, w, h = s.bbox
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (0, 200, 0), 1)
        if r.bbox:
            x, y, w, h = r.bbox
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (0, 0, 255), 2)
        text = f"{s.family}/{s.label} -> {r.label} {r.score:.2f}"
        cv2.rectangle(img, (0, 0), (256, 16), (0, 0, 0), -1)
        cv2.putText(img, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(img)
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + 4]) for i in range(0, len(tiles), 4)]
    cv2.imwrite(str(path), np.vstack(rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", type=Path, default=DEFAULT_ENGINES_DIR)
    ap.add_argument("-n", type=int, default=600, help="images per held-out set")
    ap.add_argument("--holdout-engines", type=Path, default=None,
                    help="directory of a model trained with --holdout-family cast: adds the held-out style figures")
    args = ap.parse_args(argv)
    evaluate(args.engines, n=args.n, holdout_dir=args.holdout_engines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
