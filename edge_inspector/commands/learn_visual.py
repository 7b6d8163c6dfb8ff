"""``edge-inspector learn visual SOURCE… --out DIR``: a good-parts-only model of one camera's product.

Reads good images (folders, videos, ``record`` directories: :mod:`edge_inspector.learn.images`)
at the size and normalisation of the directory's visual models, fits the anomaly model
(:mod:`edge_inspector.learn.visual`), and writes DIR as a complete engines directory: the base
directory's models, the learnt model, its manifest entry and card (staged beside DIR, swapped
in at the end, as ``learn acoustic`` does).

**One budget for the directory.** ``--max-false-reject`` is the share of good parts the
directory may reject, both models together.  When a classifier runs beside the anomaly model,
its rejects among these good images count too: a classifier trained on other surfaces may see
"scratches" in a new product's print.  Its threshold is raised (never lowered, and only with
evidence: these images) until it rejects at most half the budget; the anomaly model gets the
rest.  ``--keep-classifier`` leaves the classifier as it is, ``--no-classifier`` leaves it out.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge_inspector.commands.learn import _base_dir, _progress, _stage, add_learn_arguments, add_source_options
from edge_inspector.errors import UserError

VISUAL_FILE = "visual_anomaly.onnx"
VISUAL_CARD = "visual_anomaly.md"
VISUAL_HISTOGRAM = "visual_anomaly_scores.png"
VISUAL_HEATMAPS = "visual_anomaly_heatmaps.png"
VISUAL_REFERENCE = "visual_anomaly_reference.npy"  # aligned products: the view frames are registered to
DEFAULT_CONTRACT = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def classifier_scores(manifest: Any, inputs: np.ndarray) -> np.ndarray:
    """1 - p(ok) of the directory's visual classifier on input tensors."""
    from edge_inspector.inspectors.factory import engine_opener, open_visual

    runner = open_visual(manifest, engine_opener("onnxruntime"), 16, kinds=("classifier",))
    try:
        scores = [runner.models[0].head.batch(runner.run(inputs[a : a + 16])[0]).pred_score
                  for a in range(0, len(inputs), 16)]
    finally:
        runner.close()
    return np.concatenate(scores)


def share_budget(classifier: Any, scores: np.ndarray, budget: float, sources: list[str]) -> tuple[Any, float, str]:
    """The classifier entry with its threshold raised, if needed, to reject at most half the
    budget of these good images; returns (entry, its reject rate now, a sentence for the card)."""
    from edge_inspector.manifest import Calibration

    before = float(np.mean(scores >= classifier.threshold))
    if before <= budget / 2:
        return classifier, before, (f"The classifier (`{classifier.name}`) beside it rejects {before:.2%} of these "
                                    "good images at its own threshold, within half the budget: left as it is.")
    wanted = float(np.quantile(scores, 1.0 - budget / 2, method="higher"))
    threshold = float(min(1.0, np.nextafter(wanted, 2.0)))
    after = float(np.mean(scores >= threshold))
    cal = Calibration(date=_now(), items=len(scores), sources=tuple(sources), target=budget / 2,
                      threshold_before=classifier.threshold, threshold=round(threshold, 6), rate_before=before,
                      rate_after=after)
    entry = classifier.model_copy(update={"threshold": round(threshold, 6),
                                          "calibrations": (*classifier.calibrations, cal)})
    return entry, after, (f"The classifier (`{classifier.name}`) beside it rejected {before:.2%} of these good "
                          f"images: its threshold was raised from {classifier.threshold:.4f} to {threshold:.4f} "
                          f"({after:.2%}), half the budget.")


def learn_visual(args: argparse.Namespace) -> int:
    from edge_inspector.atomic import replacing_dir
    from edge_inspector.inspectors.visual_model import Preprocessor
    from edge_inspector.learn.card import histogram_png
    from edge_inspector.learn.images import read_good_images
    from edge_inspector.learn.visual import LearnOptions, learn
    from edge_inspector.learn.visual_card import card_markdown, heatmaps_png
    from edge_inspector.learn.visual_graph import write_graph
    from edge_inspector.manifest import (Alignment, ImageInput, Provenance, VisualAnomalyModel, load_manifest,
                                         replace_entry, sha256_of, write_manifest)

    t0 = time.monotonic()
    if not 0.0 < args.max_false_reject < 0.5:
        raise UserError(f"--max-false-reject: must be between 0 and 0.5, got {args.max_false_reject}")
    out = Path(args.out)
    base = _base_dir(out, Path(args.engines))
    base_manifest = load_manifest(base)
    classifier = None if args.no_classifier else base_manifest.classifier("visual")
    contract = classifier or ImageInput(**DEFAULT_CONTRACT)
    _, h, w = contract.input_shape
    _progress(f"reading {len(args.sources)} source(s)")
    good = read_good_images(args.sources, (w, h), args.camera, args.max_images)
    _progress(f"{len(good)} good image(s){f' ({good.skipped} video frames skipped to spread them)' if good.skipped else ''}")
    inputs = Preprocessor(contract)(good.images)
    budget = args.max_false_reject
    sentence, classifier_rate = "", 0.0
    if classifier is not None and not args.keep_classifier:
        _progress(f"the classifier on {len(good)} good image(s)")
        classifier, classifier_rate, sentence = share_budget(classifier, classifier_scores(base_manifest, inputs),
                                                             budget, good.sources)
    elif classifier is not None:
        classifier_rate = float(np.mean(classifier_scores(base_manifest, inputs) >= classifier.threshold))
        sentence = f"The classifier beside it was kept as it is; it rejects {classifier_rate:.2%} of these good images."
    anomaly_budget = max(budget - classifier_rate, budget / 2) if classifier is not None else budget
    options = LearnOptions(max_false_reject=anomaly_budget, layout=args.layout)
    learnt = learn(inputs, contract, options, _progress)
    cal = learnt.calibrated
    with replacing_dir(out, check=load_manifest) as staged:  # checked as the daemon will read it
        manifest = _stage(base, staged, {VISUAL_FILE, VISUAL_CARD, VISUAL_HISTOGRAM, VISUAL_HEATMAPS, VISUAL_REFERENCE})
        if args.no_classifier and manifest.classifier("visual") is not None:
            manifest = manifest.model_copy(update={"visual": tuple(e for e in manifest.visual if e.kind != "classifier")})
            (staged / base_manifest.classifier("visual").file).unlink(missing_ok=True)
        elif classifier is not None:
            manifest = replace_entry(manifest, "visual", classifier)
        write_graph(learnt.model, staged / VISUAL_FILE, contract.input_shape)
        scales = ", ".join(f"{s.patch * s.down} px" for s in learnt.model.scales)
        alignment = None
        if learnt.reference is not None:
            np.save(staged / VISUAL_REFERENCE, learnt.reference, allow_pickle=False)
            alignment = Alignment(file=VISUAL_REFERENCE, sha256=sha256_of(staged / VISUAL_REFERENCE))
            scoring = ("frames registered (shift and turn) to the good parts' reference view; per cell the Mahalanobis "
                       "distance to the good parts' codes at that cell")
        else:
            scoring = f"distance to the nearest of {options.bank} remembered good codes per scale"
        entry = VisualAnomalyModel(
            kind="anomaly", file=VISUAL_FILE, sha256=sha256_of(staged / VISUAL_FILE),
            **{k: getattr(contract, k) for k in ImageInput.model_fields},
            method=(f"light-normalised patches of {scales}, each coded by {options.components} half-whitened principal "
                    f"components of the good parts' own patches; {scoring}, in units of the held-out spread at its "
                    f"position; {options.grid}x{options.grid} map, image score its maximum. Layout: {learnt.choice}"),
            threshold=round(cal.threshold, 6), score_scale=round(cal.score_scale, 6),
            map_threshold=round(cal.map_threshold, 6), typical=round(cal.typical, 6),
            max_false_reject=round(anomaly_budget, 6), alignment=alignment,
            learnt_from=Provenance(items=len(good), sha256=good.sha256(), sources=tuple(good.sources), date=_now()),
        )
        write_manifest(replace_entry(manifest, "visual", entry), staged)
        histogram_png(staged / VISUAL_HISTOGRAM, cal.held_out, cal.threshold, None,
                      f"{entry.name}: held-out good images, threshold for {anomaly_budget:.2%}",
                      caption="image score of held-out good images (log count)")
        heatmaps_png(staged / VISUAL_HEATMAPS, good.images, learnt.held_out_maps, cal.held_out, cal.threshold, cal.typical)
        info = {"typical": cal.typical, "rate_observed": cal.rate_observed, "rate_law": cal.rate_at_threshold,
                "learn_s": time.monotonic() - t0, "histogram": VISUAL_HISTOGRAM, "heatmaps": VISUAL_HEATMAPS,
                "classifier": sentence, "warning": cal.warning,
                "thinned": f" ({good.skipped} video frames left out to spread them evenly)" if good.skipped else ""}
        (staged / VISUAL_CARD).write_text(card_markdown(entry, info))
    if cal.warning:
        print(f"learn: warning: {cal.warning}", file=sys.stderr)
    print(f"{out}: learnt {entry.name} from {len(good)} good image(s) in {info['learn_s']:.0f} s; threshold "
          f"{entry.threshold:.3f} ({cal.rate_observed:.2%} of held-out good images above it, {cal.rate_at_threshold:.2%} "
          f"by the fitted law, asked {anomaly_budget:.2%}){'; ' + sentence if sentence else ''}; card {out / VISUAL_CARD}")
    return 0


def add_visual_parser(modality: Any, fmt: dict[str, Any]) -> None:
    v = modality.add_parser("visual", help="a good-parts-only model of one camera's product, from images, videos "
                            "or recordings", **fmt)
    add_learn_arguments(v, "folders of images, video files or directories made by `record` (200+ good parts)")
    v.add_argument("--max-false-reject", type=float, default=0.01, metavar="RATE",
                   help="share of good parts the directory's models may reject together (default 0.01)")
    add_source_options(v)
    v.add_argument("--layout", choices=("auto", "free", "aligned"), default="auto",
                   help="free: compare patches wherever they are (textures, parts at any angle); aligned: register "
                        "each frame to the good parts' reference view and compare cell by cell (labels, boards, parts "
                        "that arrive the same way up); auto (default): the one that better finds defects painted on "
                        "held-out good parts")
    group = v.add_mutually_exclusive_group()
    group.add_argument("--keep-classifier", action="store_true",
                       help="leave the classifier's threshold as it is, whatever it rejects of these good parts")
    group.add_argument("--no-classifier", action="store_true", help="leave the classifier out of DIR")
    v.set_defaults(func=learn_visual)
