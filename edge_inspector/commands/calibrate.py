"""``edge-inspector calibrate DIR SOURCE…``: re-set the visual models' thresholds from good parts.

A threshold set at the factory (the classifier) or at learning time (the anomaly model) meets
the line's own variation later: another batch of material, a re-aimed light.  Given good parts
recorded on the line (folders, videos, ``record`` directories, as ``learn visual`` reads them),
each chosen model's threshold moves to where it rejects ``--max-false-reject`` of them: the
classifier's at that quantile of its scores (above every score when the images are too few to
show one reject), the anomaly model's by the same fitted law as when it learnt
(:func:`edge_inspector.learn.visual.calibrate`).  The rates before and after are printed, the
manifest records the calibration in the model's entry, and only the manifest is rewritten
(atomically): no model changes, so no sha256 changes.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge_inspector.errors import UserError
from edge_inspector.commands.learn import add_source_options


def raw_scores(manifest: Any, kind: str, images: list[np.ndarray]) -> np.ndarray:
    """The ``kind`` model's threshold-free score (``pred_score``) of each image."""
    from edge_inspector.inspectors.factory import engine_opener, open_visual

    runner = open_visual(manifest, engine_opener("onnxruntime"), 16, kinds=(kind,))
    try:
        head = runner.models[0].head
        return np.concatenate([head.batch(runner.run(runner.preprocess(images[a : a + 16]))[0]).pred_score
                               for a in range(0, len(images), 16)])
    finally:
        runner.close()


def new_threshold(entry: Any, scores: np.ndarray, rate: float) -> float:
    if entry.kind == "anomaly":
        from edge_inspector.learn.visual import calibrate

        return float(calibrate(scores, rate).threshold)
    if len(scores) * rate < 1.0:
        return float(min(1.0, np.nextafter(float(np.max(scores)), 2.0)))
    return float(min(1.0, np.nextafter(float(np.quantile(scores, 1.0 - rate, method="higher")), 2.0)))


def calibrate_command(args: argparse.Namespace) -> int:
    from edge_inspector.learn.images import read_good_images
    from edge_inspector.manifest import Calibration, load_manifest, replace_entry, write_manifest

    if not 0.0 < args.max_false_reject < 0.5:
        raise UserError(f"--max-false-reject: must be between 0 and 0.5, got {args.max_false_reject}")
    manifest = load_manifest(args.dir)
    entries = [e for e in manifest.entries("visual") if args.model in (None, e.kind)]
    if not entries:
        which = f" of kind {args.model}" if args.model else ""
        raise UserError(f"{Path(args.dir) / 'manifest.toml'}: no visual model{which} to calibrate")
    _, h, w = entries[0].input_shape
    good = read_good_images(args.sources, (w, h), args.camera, args.max_images)
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    before_any = np.zeros(len(good), bool)
    after_any = np.zeros(len(good), bool)
    for entry in entries:
        scores = raw_scores(manifest, entry.kind, good.images)
        threshold = new_threshold(entry, scores, args.max_false_reject)
        before, after = float(np.mean(scores >= entry.threshold)), float(np.mean(scores >= threshold))
        before_any |= scores >= entry.threshold
        after_any |= scores >= threshold
        cal = Calibration(date=date, items=len(good), sources=tuple(good.sources), target=args.max_false_reject,
                          threshold_before=entry.threshold, threshold=round(threshold, 6), rate_before=before,
                          rate_after=after)
        manifest = replace_entry(manifest, "visual", entry.model_copy(
            update={"threshold": round(threshold, 6), "calibrations": (*entry.calibrations, cal)}))
        print(f"{entry.name} ({entry.kind}): threshold {entry.threshold:.4f} -> {threshold:.4f}; good parts rejected "
              f"{before:.2%} -> {after:.2%} of {len(good)}")
    if len(entries) > 1:
        print(f"the directory (either model): {before_any.mean():.2%} -> {after_any.mean():.2%}")
    if len(good) * args.max_false_reject < 2.0:
        print(f"calibrate: warning: {len(good)} good images cannot show a rate of {args.max_false_reject:.2%} "
              f"(about {int(np.ceil(2.0 / args.max_false_reject))} would); the threshold errs on the high side",
              file=sys.stderr)
    write_manifest(manifest)
    print(f"{Path(args.dir) / 'manifest.toml'}: updated")
    return 0


def add_parser(sub: Any, fmt: dict[str, Any]) -> None:
    p = sub.add_parser("calibrate", help="re-set the visual models' thresholds from good parts recorded on the line",
                       **fmt)
    p.add_argument("dir", type=Path, metavar="DIR", help="engines directory (its manifest is updated)")
    p.add_argument("sources", nargs="+", type=Path, metavar="SOURCE",
                   help="good parts: folders of images, video files or directories made by `record`")
    p.add_argument("--max-false-reject", type=float, default=0.01, metavar="RATE",
                   help="share of these good parts each model may reject (default 0.01)")
    p.add_argument("--model", choices=["classifier", "anomaly"], default=None,
                   help="only this model (default: every visual model of DIR)")
    add_source_options(p)
    p.set_defaults(func=calibrate_command)
