"""Evaluate ``edge-inspector learn visual`` as a user meets it: ``python -m training.anomaly.evaluate``.

Per product family (``--families heldout``: the five nothing was tuned on, the default; ``dev``:
the four the method was chosen on; or names):

1. 200 good parts of the product written to a folder, and the real ``edge-inspector learn visual``
   run on it with the classifier of ``--engines`` beside it (timed);
2. 400 test parts of the same product from other seeds: 200 good, 200 with one defect each, the
   family's kinds in turn (none of which the classifier has a label for), all with the line's
   nuisances;
3. the anomaly model alone: image AUROC, good parts rejected and defects found at the threshold
   it learnt, and how often the box of a found defect overlaps it (IoU >= 0.3); per defect kind
   the share found; and the directory as the daemon runs it (both models: ``score``, either flags).

``--shipped`` adds the classifier's own surfaces (metal, paint, cast: the demo camera's parts):
learnt from 200 good ones, scored on the classifier's held-out set, classifier alone against
both models.  Prints tables, writes ``--json`` and, with ``--card``, the ``visual-anomaly``
section of that engines directory's model card and its pictures (training/anomaly/card.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_inspector import DEFAULT_ENGINES_DIR, cli
from edge_inspector.inspectors.factory import engine_opener, open_visual
from edge_inspector.manifest import load_manifest
from training.anomaly.families import DEVELOPMENT, HELD_OUT, good_parts, test_parts
from training.anomaly.scene import Part
from training.common.metrics import auroc

N_LEARN, N_GOOD, N_BAD = 200, 200, 200


def box_iou(a: list[int] | None, b: list[int] | None) -> float:
    if a is None or b is None:
        return 0.0
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / float(aw * ah + bw * bh - inter)


def learn_dir(images: list[np.ndarray], name: str, base: Path, work: Path) -> tuple[Path, float]:
    """Write ``images`` to a folder and run ``edge-inspector learn visual`` on it (timed)."""
    folder = work / f"{name}-good"
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    out = work / f"{name}-learnt"
    t0 = time.perf_counter()
    if cli.main(["learn", "visual", str(folder), "--out", str(out), "--engines", str(base)]) != 0:
        raise SystemExit(f"learn visual failed for {name}")
    return out, time.perf_counter() - t0


def infer(directory: Path, images: list[np.ndarray], kinds: tuple[str, ...] | None) -> list[Any]:
    runner = open_visual(load_manifest(directory), engine_opener("onnxruntime", intra_op_threads=2), 8, kinds=kinds)
    try:
        return runner.infer(images)
    finally:
        runner.close()


def frame_cost(directory: Path, image: np.ndarray, calls: int = 40) -> float:
    """Thread-CPU ms of the anomaly model alone on one frame, on one ONNX Runtime thread (batch 1):
    what it adds per frame on one core, however loaded the machine is."""
    from training.visual.evaluate import speed

    runner = open_visual(load_manifest(directory), engine_opener("onnxruntime", intra_op_threads=1), 1,
                         kinds=("anomaly",))
    try:
        return speed(runner, 1, calls, clock=time.thread_time, image=image)
    finally:
        runner.close()


def measures(parts: list[Any], alone: list[Any], both: list[Any], truth_boxes: list[Any]) -> dict[str, Any]:
    """The figures of one family (or set) from the anomaly model's and the directory's results."""
    bad = np.array([not p.good if isinstance(p, Part) else p.label != "ok" for p in parts])
    a_score = np.array([r.anomaly_score for r in alone])
    a_flag = np.array([r.defect for r in alone])
    found = [i for i in np.flatnonzero(bad) if a_flag[i]]
    ious = [box_iou(alone[i].bbox, truth_boxes[i]) for i in found]
    b_flag = np.array([r.defect for r in both])
    out: dict[str, Any] = {
        "images": len(parts), "defective": int(bad.sum()),
        "auroc": auroc(a_score, bad), "good_rejected": float(a_flag[~bad].mean()), "recall": float(a_flag[bad].mean()),
        "box_iou_0.3": float(np.mean([v >= 0.3 for v in ious])) if ious else float("nan"),
        "box_iou_median": float(np.median(ious)) if ious else float("nan"),
        "dir_auroc": auroc(np.array([r.score for r in both]), bad), "dir_good_rejected": float(b_flag[~bad].mean()),
        "dir_recall": float(b_flag[bad].mean()),
        "dir_labels": {k: int(v) for k, v in zip(*np.unique([r.label for r, f in zip(both, b_flag) if f] or ["-"],
                                                           return_counts=True))},
    }
    kinds = sorted({p.defect for p in parts if isinstance(p, Part) and p.defect})
    out["per_kind"] = {k: float(np.mean([a_flag[i] for i, p in enumerate(parts) if p.defect == k])) for k in kinds}
    out["per_size"] = found_by_size(parts, a_flag)
    return out


SIZE_BINS = (0, 4, 8, 16, 32, 10_000)  # a defect's size: the side of a square of its area, pixels at 256 x 256


def found_by_size(parts: list[Any], flags: np.ndarray) -> dict[str, list[float]]:
    """Share of defects found per size bin (``"4-8 px": [share, count]``): how small a defect the
    model still sees, whatever its kind."""
    sizes = np.array([np.sqrt(p.mask.sum()) if isinstance(p, Part) and p.defect else np.nan for p in parts])
    out: dict[str, list[float]] = {}
    for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:]):
        on = (sizes >= lo) & (sizes < hi)
        if on.any():
            out[f"{lo}-{hi} px" if hi < 10_000 else f">={lo} px"] = [float(flags[on].mean()), int(on.sum())]
    return out


def evaluate_family(family: str, product: int, base: Path, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    t0 = time.perf_counter()
    directory, learn_s = learn_dir([p.image for p in good_parts(family, product, N_LEARN)], f"{family}{product}",
                                   base, work)
    parts = test_parts(family, product, N_GOOD, N_BAD)
    images = [p.image for p in parts]
    alone, both = infer(directory, images, ("anomaly",)), infer(directory, images, None)
    m = measures(parts, alone, both, [p.bbox for p in parts])
    m.update(learn_s=learn_s, total_s=time.perf_counter() - t0, product=product, ms_per_frame=frame_cost(directory, images[0]))
    entry = load_manifest(directory).anomaly("visual")
    m["layout"] = "aligned" if entry.alignment is not None else "free"
    m["choice"] = entry.method.split("Layout: ", 1)[-1]
    print(f"{family:>10} p{product} ({m['layout']}): AUROC {m['auroc']:.3f}, rejected {m['good_rejected']:.1%}, found {m['recall']:.1%}, "
          f"box IoU>=0.3 {m['box_iou_0.3']:.1%} | directory AUROC {m['dir_auroc']:.3f}, rejected "
          f"{m['dir_good_rejected']:.1%}, found {m['dir_recall']:.1%} | learn {learn_s:.0f} s, "
          f"{m['ms_per_frame']:.1f} ms/frame | per kind found: "
          + ", ".join(f"{k} {v:.0%}" for k, v in m["per_kind"].items()) + " | per size found: "
          + ", ".join(f"{k} {v:.0%} of {n}" for k, (v, n) in m["per_size"].items()), flush=True)
    picks = [i for i in range(N_GOOD, N_GOOD + N_BAD)][:6] + [int(np.argmax([r.anomaly_score for r in alone[:N_GOOD]]))]
    pictures = {"images": [images[i] for i in picks], "results": [alone[i] for i in picks],
                "truth": [parts[i].bbox for i in picks], "captions": [parts[i].defect or "good" for i in picks]}
    return m, pictures


def evaluate_shipped(base: Path, work: Path, n: int = 600) -> dict[str, Any]:
    """The classifier's own surfaces: classifier alone against classifier + a model learnt from 200 good ones."""
    from edge_inspector.synthetic.surfaces import make_surface
    from training.visual.evaluate import generate_set

    rng = np.random.default_rng(77)
    learn_images = [make_surface(rng, label="ok").image for _ in range(N_LEARN)]
    directory, learn_s = learn_dir(learn_images, "shipped", base, work)
    samples = generate_set(("metal", "painted", "cast"), 3, n)
    images = [s.image for s in samples]
    bad = np.array([s.label != "ok" for s in samples])
    out: dict[str, Any] = {"learn_s": learn_s, "images": n}
    for name, path, kinds in (("classifier", base, ("classifier",)), ("both", directory, None)):
        res = infer(path, images, kinds)
        flag = np.array([r.defect for r in res])
        tp, fp, fn = int((flag & bad).sum()), int((flag & ~bad).sum()), int((~flag & bad).sum())
        out[name] = {"auroc": auroc(np.array([r.score for r in res]), bad), "f1": 2 * tp / max(1, 2 * tp + fp + fn),
                     "good_rejected": fp / max(1, int((~bad).sum())), "recall": tp / max(1, int(bad.sum()))}
        print(f"shipped surfaces, {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in out[name].items()), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default="heldout", help="heldout, dev, or family names separated by commas")
    ap.add_argument("--products", default="0", help="product seeds per family, e.g. 0,1")
    ap.add_argument("--engines", type=Path, default=DEFAULT_ENGINES_DIR, help="the classifier learnt models run beside")
    ap.add_argument("--shipped", action="store_true", help="also the classifier's own surfaces (classifier alone vs both)")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    ap.add_argument("--card", type=Path, default=None, metavar="DIR",
                    help="write the visual-anomaly section of DIR/README.md and its pictures")
    args = ap.parse_args(argv)
    names = {"heldout": list(HELD_OUT), "dev": list(DEVELOPMENT)}.get(args.families, args.families.split(","))
    results: dict[str, Any] = {"families": {}, "set": args.families}
    pictures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="anomaly-eval-") as tmp:
        for family in names:
            for product in (int(p) for p in args.products.split(",")):
                m, pics = evaluate_family(family, product, args.engines, Path(tmp))
                results["families"][f"{family}/{product}"] = m
                pictures.setdefault(family, pics)
        if args.shipped:
            results["shipped"] = evaluate_shipped(args.engines, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.card:
        from training.anomaly.card import write_card

        write_card(args.card, results, pictures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
