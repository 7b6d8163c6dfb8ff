#!/usr/bin/env python3
"""Evaluate the shipped visual model through ONNX Runtime and write its model card.

    python3 tools/eval_visual.py --engines engines

Uses the runtime path (``edge_inspector.inspectors.visual_model``) on the exported ONNX file,
so the figures are what the daemon delivers.  Two held-out sets, generated from seeds never
used in training: the training families (metal, painted) and an unseen style (cast).  Writes
``visual_confusion.png``, ``visual_examples.png`` and the ``visual`` section of README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edge_inspector.inspectors.visual_model import VisualModelRunner, VisualResult  # noqa: E402
from edge_inspector.manifest import load_manifest  # noqa: E402
from edge_inspector.runtime import create_engine  # noqa: E402
from edge_inspector.synthetic.surfaces import LABELS, Sample, make_surface  # noqa: E402

EVAL_SEED = 900_001  # training uses --seed with splits 1/2; these never overlap
MAIN, STYLE = "main (metal, painted)", "held-out style (cast)"
SETS = {MAIN: (("metal", "painted"), 3), STYLE: (("cast",), 4)}


@dataclass
class SetResult:
    samples: list[Sample]
    results: list[VisualResult]
    metrics: dict[str, float]


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties averaged."""
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average the ranks of tied scores
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


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


def speed(runner: VisualModelRunner, batch: int, repeats: int) -> float:
    """Median ms per frame of one engine call at ``batch`` (preprocessing excluded)."""
    x = runner.preprocess([np.zeros((256, 256, 3), np.uint8)] * batch)
    feeds = {runner.model.input: x}
    runner.engine.run(feeds)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        runner.engine.run(feeds)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1000.0 / batch


def evaluate(engines_dir: Path, smoke: bool = False, n: int = 600) -> dict[str, SetResult]:
    """Run both held-out sets, measure speed, write the PNGs and the model card section."""
    from _modelcard import update_readme_section

    engines_dir = Path(engines_dir)
    manifest = load_manifest(engines_dir)
    model = manifest.visual
    if model is None:
        raise SystemExit(f"{engines_dir}/manifest.toml has no [visual] section")
    engine = create_engine(manifest.path_of(model), "onnxruntime", max_batch=8)
    runner = VisualModelRunner(engine, model)
    n = 20 if smoke else n
    sets: dict[str, SetResult] = {}
    for name, (families, split) in SETS.items():
        samples = generate_set(families, split, n)
        results = runner.infer([s.image for s in samples])
        sets[name] = SetResult(samples, results, score_set(samples, results))
        print(f"{name:>22}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in sets[name].metrics.items()))
    repeats = 5 if smoke else 50
    timing = {"batch 1": speed(runner, 1, repeats), "batch 8": speed(runner, 8, max(3, repeats // 4)),
              "load": os.getloadavg()[0]}
    print("ORT CPU ms/frame: " + ", ".join(f"{k} {v:.2f}" for k, v in timing.items()) + " (last: load avg)")
    import onnxruntime as ort

    meta = ort.InferenceSession(str(manifest.path_of(model)), providers=["CPUExecutionProvider"])
    recipe = dict(meta.get_modelmeta().custom_metadata_map)
    plot_confusion({k: confusion(v.samples, v.results) for k, v in sets.items()}, LABELS,
                   engines_dir / "visual_confusion.png")
    plot_examples(sets[MAIN].samples[:12] + sets[STYLE].samples[:4],
                  sets[MAIN].results[:12] + sets[STYLE].results[:4],
                  engines_dir / "visual_examples.png")
    card = model_card(model, {k: v.metrics for k, v in sets.items()}, timing, recipe)
    update_readme_section(engines_dir, "visual", card)
    print(f"wrote {engines_dir / 'README.md'} (visual section), visual_confusion.png, visual_examples.png")
    engine.close()
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


def _crop_epochs(recipe: dict) -> int:
    try:
        return int(recipe.get("epochs", 0)) - int(recipe.get("full_epochs", 0))
    except ValueError:
        return 0


def model_card(model, metrics: dict[str, dict[str, float]], timing: dict[str, float], recipe: dict) -> str:
    rows = [("image AUROC, defect vs ok", "auroc", ">= 0.98"), ("F1 at the shipped threshold", "f1", ">= 0.95"),
            ("defect recall", "recall", ""), ("good-part reject rate", "good_reject", "<= 0.02"),
            ("defect-type accuracy (defective images)", "type_accuracy", ">= 0.90"),
            ("5-class accuracy", "accuracy_5class", ""), ("bbox overlaps the defect (detected)", "bbox_hit", "")]
    names = list(metrics)
    table = ["| metric | target | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    table += [f"| images | | " + " | ".join(str(metrics[n]["images"]) for n in names) + " |"]
    for title, key, target in rows:
        table.append(f"| {title} | {target} | " + " | ".join(f"{metrics[n][key]:.3f}" for n in names) + " |")
    r = recipe
    return f"""## visual_cnn.onnx -- surface defect classifier and localiser

**Task.** One image of a part surface -> `ok` or a defect type (`scratch`, `crack`, `spot`, `dent`),
a defect score (1 - p(ok)) and a 32x32 heatmap from which the box is derived.

**Input / output.** `image` float32 [N, 3, 256, 256], RGB, pixel/255 normalised with mean
{list(model.mean)} and std {list(model.std)}; frames of any size are resized (stretched) to
256x256. Outputs `probs` [N, 5] softmax over {list(model.labels)} and `heatmap` [N, 1, 32, 32]
sigmoid defect probability per 8x8 cell. Dynamic batch, opset 17, BatchNorm folded; ops:
Conv, Relu, MaxPool, GlobalAveragePool, Concat, Flatten, Gemm, Sigmoid, Softmax.

**Architecture.** Seven 3x3 conv+ReLU blocks (16-32-32-64-64-64-64 channels, strides to 1/8,
the last two dilated 2 and 4, receptive field ~90 px); heatmap = 1x1 conv + sigmoid; class head
= global average + max pooling of the features and of the heatmap logits -> 64 -> 5 -> softmax.

**Data.** Procedural surfaces from `edge_inspector/synthetic/surfaces.py`: brushed/ground
metal, painted/coated and cast/textured families, plus scikit-image CC0 textures (gravel,
brick, grass) at training time. Defects are drawn with random shape, size, width, position,
polarity and contrast (down to barely visible): scratches (1-3 px anti-aliased lines or gentle
curves, sometimes broken), cracks (dark jagged tapering branching walks), spots (soft-edged
stains, dark, bright or tinted), dents (height bumps visible only as shading under the scene's
light). Every image, good or bad, gets illumination gradients and vignetting, gain, tint,
gamma, a small shift, blur, sensor noise and JPEG compression.

**Training.** The shipped file was made with
`python3 tools/train_visual.py --out engines --device {r.get("device")} --train-size {r.get("train_size")} --epochs {r.get("epochs")}`
(seed {r.get("seed")}, torch {r.get("torch")}, {r.get("train_minutes")} min including data generation on a
16-core machine; the device only changes speed, not the recipe):
{r.get("train_size")} images of {r.get("families")} (30 % good), {r.get("epochs")} epochs of which the
first {_crop_epochs(r)} on {r.get("crop")}x{r.get("crop")} crops around the defect (4x cheaper, more defects
per second) and the last {r.get("full_epochs")} on whole images; batch {r.get("batch")}, AdamW + one-cycle
LR 3e-3, flips/rotations; loss = cross-entropy on the class + BCE (pos_weight 4) on the heatmap
against the max-pooled defect mask. The CPU default (`--device cpu`: 4500 images, 20 epochs; 2.9 min
on 12 CPU threads; about 7 min on 2 idle cores from measured step times, longer when the cores
are shared) gives a weaker model: measured once on
the same held-out sets, AUROC 0.982 / F1 0.912 / good reject 0.013 / type accuracy 0.887 (main)
and 0.817 / 0.626 / 0.017 / 0.680 (held-out style). The **cast** family is never seen in
training: it is the held-out style below.

**Threshold.** `threshold = {model.threshold:.4f}` on the defect score: the 99th percentile of
the score of the good images among {r.get("val_size")} validation images (<= 1 % false rejects there),
kept in [0.05, 0.95]. `heatmap_threshold = {model.heatmap_threshold}`: the box is the largest
connected group of cells above it (or the region around the peak when none is).

**Evaluation** (`python3 tools/eval_visual.py --engines engines`; ONNX Runtime, through the
runtime code; new seeds; half good, half defects evenly over the four types):

{chr(10).join(table)}

**Speed** (ONNX Runtime CPU, 2-core build machine, model call only, median; 1-min load average
{timing["load"]:.1f} while measuring): batch 1 {timing["batch 1"]:.2f} ms/frame, batch 8 {timing["batch 8"]:.2f} ms/frame.

![confusion](visual_confusion.png)
![examples](visual_examples.png)

**Limitations.** On the unseen cast style the good-part reject rate is
{metrics[STYLE]["good_reject"]:.0%} and the AUROC {metrics[STYLE]["auroc"]:.3f}: a surface style that differs
from the training data needs its own training images, or at least a threshold re-set on its
good parts. Trained on synthetic surfaces only: expect to fine-tune or at least re-set
the threshold on real good parts from the line before trusting the reject rate. The box
resolution is one 8x8 cell of the 256x256 input; defects thinner than ~1 px after the resize
(large frames) or with contrast near the noise level are missed; specular highlights, edges
of the part and fixtures in the field of view are not in the training data and may score as
defects -- crop the frame to the surface (camera `roi`). Dents are only visible with a
grazing light; under diffuse light they are not detectable by any camera model.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", type=Path, default=ROOT / "engines")
    ap.add_argument("-n", type=int, default=600, help="images per held-out set")
    args = ap.parse_args(argv)
    evaluate(args.engines, n=args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
