"""Calibrate and evaluate the acoustic classifier through ONNX Runtime: ``python -m training.acoustic.evaluate``.

Everything runs through the runtime's code (:mod:`edge_inspector.inspectors.acoustic_model`,
the streaming inspector), on seeds and kinds never used in training.  Thresholds are chosen on
held-out *healthy* clips with training-kind nuisances only.  Measured: the held-out nuisance set
(per nuisance kind and per SNR), faults by audibility, the evaluation plant machines (kinds of
machine it never heard), the original steady-machine sets, streaming false alarms (steady,
starts and stops), sparse faults as episodes, and speed.  Writes ``acoustic_confusion.png``,
``acoustic_example.png``, the manifest entry and the model card section of ``README.md``.

    python -m training.acoustic.evaluate --out engines     # re-evaluate the shipped model
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_inspector.features import LogMelParams, logmel
from edge_inspector.inspectors import acoustic_model as am
from edge_inspector.manifest import AcousticModel, load_manifest
from edge_inspector.runtime.onnx import OnnxEngine
from edge_inspector.synthetic.machines import HELDOUT_ROTATION_HZ, LABELS, TRAIN_ROTATION_HZ, machine_stream, make_clip
from training.acoustic.card import model_card, plots
from training.acoustic.data import make_dataset
from training.acoustic.evaluate_sets import ClipSet, audibility_set, clip_set, nuisance_set, plant_set, score_clips
from training.acoustic.faults import sparse_knocks
from training.acoustic.nuisances import FRESH_KINDS, TRAIN_KINDS
from training.acoustic.streams import closing, run_stream, start_stop_audio
from training.common.metrics import auroc_of as auroc
from training.common.modelcard import update_manifest_section, update_readme_section

ROOT = Path(__file__).resolve().parents[2]
FRESH = "fresh held-out nuisances, SNR −6…+6 dB"
RECIPE = "acoustic_gru.recipe.json"  # how the shipped file was trained (written by training.acoustic.train)


def frame_probs(engine: OnnxEngine, model: AcousticModel, mel: np.ndarray, batch: int = 32) -> np.ndarray:
    out = [am.run_frames(engine, model, am.normalise(mel[i : i + batch], model))[0] for i in range(0, len(mel), batch)]
    return np.concatenate(out)


def smoothed(scores: np.ndarray, model: AcousticModel) -> np.ndarray:
    return am.smoothed(scores, model)


def calibrate(engine: OnnxEngine, model: AcousticModel, seed: int, n: int) -> AcousticModel:
    """Thresholds from held-out NORMAL clips only (both machine ranges are *not* used: train range)."""
    data = make_dataset(seed, n, LogMelParams(), labels=("normal",), desc="calibration data", nuisances=TRAIN_KINDS,
                        plant=0.3)
    probs = frame_probs(engine, model, data.mel)
    clip = np.array([am.clip_score(p, model)[0] for p in probs])
    warm = am.warmup_frames(model)
    frames = np.concatenate([smoothed(am.anomaly_scores(p), model)[warm:] for p in probs])
    # Clip threshold: above the 99th percentile of normal clip scores (target <= 1 % false alarms),
    # never below 0.3 so a confident "normal" model does not flag noise.
    threshold = float(np.clip(np.quantile(clip, 0.99) + 0.05, 0.3, 0.9))
    # Streaming hysteresis: start an episode only above the 99.9th percentile of smoothed normal
    # frame scores (and at least 0.5: more likely a fault than not); end it well below.
    onset = float(np.clip(np.quantile(frames, 0.999) + 0.1, 0.5, 0.9))
    offset = float(max(0.2, onset - 0.25))
    print(f"calibration on {n} normal clips: clip q99 {np.quantile(clip, 0.99):.3f}, frame q99.9 "
          f"{np.quantile(frames, 0.999):.3f} -> threshold {threshold:.3f}, onset {onset:.3f}, offset {offset:.3f}")
    return model.model_copy(update={"threshold": round(threshold, 4), "onset": round(onset, 4), "offset": round(offset, 4)})


def streaming_check(engine: OnnxEngine, model: AcousticModel, seed: int, n: int = 4) -> float:
    """Max |chunked-with-carried-state - whole-clip| frame score over ``n`` clips (0.1 s pushes)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for i in range(n):
        clip = make_clip(rng, 6.0, label=LABELS[i % 4], snr_db=0.0, fault_start_s=2.0, fault_end_s=4.0)
        whole = am.anomaly_scores(frame_probs(engine, model, logmel(clip.samples, LogMelParams.from_model(model))[None])[0])
        runner = am.AcousticStreamRunner(engine, model)
        parts = [runner.push(clip.samples[a : a + 1600]).scores for a in range(0, clip.samples.size, 1600)]
        worst = max(worst, float(np.abs(np.concatenate(parts) - whole).max()))
    return worst


def speed(engine: OnnxEngine, model: AcousticModel) -> dict[str, float]:
    x = np.random.default_rng(0).standard_normal((1, model.chunk_frames, model.n_mels)).astype(np.float32)
    h = am.initial_state(model)
    for _ in range(20):
        am.run_frames(engine, model, x, h)
    times = []
    for _ in range(300):
        t0 = time.perf_counter()
        am.run_frames(engine, model, x, h)
        times.append(time.perf_counter() - t0)
    clip = make_clip(np.random.default_rng(1), 10.0, label="normal")
    runner = am.AcousticStreamRunner(engine, model)
    runner.push(clip.samples[:16000])
    t0 = time.perf_counter()
    for a in range(16000, clip.samples.size, 1600):
        runner.push(clip.samples[a : a + 1600])
    per_s = (time.perf_counter() - t0) / ((clip.samples.size - 16000) / 16000)
    return {"chunk_ms": 1000 * float(np.median(times)), "chunk_p95_ms": 1000 * float(np.quantile(times, 0.95)),
            "per_audio_s_ms": 1000 * per_s, "rtf": per_s}


def measure(engine: OnnxEngine, model: AcousticModel, clips: ClipSet) -> dict[str, Any]:
    """AUROC (healthy vs faulty), healthy flagged, faults detected, accuracy and confusion."""
    scores, pred = score_clips(engine, model, clips)
    ok, bad = clips.labels == 0, clips.labels != 0
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    for t, p in zip(clips.labels, pred):
        confusion[t, p] += 1
    return {"auroc": auroc(scores[ok], scores[bad]), "fpr": float((scores[ok] >= model.threshold).mean()),
            "detect": float((scores[bad] >= model.threshold).mean()), "accuracy": float((pred == clips.labels).mean()),
            "per_class": {LABELS[c]: float((pred[clips.labels == c] == c).mean()) if (clips.labels == c).any() else float("nan")
                          for c in range(len(LABELS))},
            "confusion": confusion, "scores": scores, "pred": pred}


def breakdown(r: dict[str, Any], clips: ClipSet, threshold: float) -> dict[str, Any]:
    """Per tag among healthy clips (flagged, AUROC against every fault) and per SNR band of faults."""
    s, ok = r["scores"], clips.labels == 0
    per_tag = {str(k): {"n": int(((clips.tag == k) & ok).sum()), "flagged": float((s[(clips.tag == k) & ok] >= threshold).mean()),
                        "auroc": auroc(s[(clips.tag == k) & ok], s[~ok])}
               for k in sorted(set(clips.tag[ok]))}
    per_snr = {}
    for lo, hi in ((-6, -2), (-2, 2), (2, 6.01)):
        sel = ~ok & (clips.level >= lo) & (clips.level < hi)
        if not sel.any():
            continue
        per_snr[f"{lo:g}..{min(hi, 6):g} dB"] = {"n": int(sel.sum()), "auroc": auroc(s[ok], s[sel]),
                                                  "detect": float((s[sel] >= threshold).mean())}
    return {"per_tag": per_tag, "per_snr": per_snr}


def stream_measures(models: list[Any], seed: int, smoke: bool) -> dict[str, Any]:
    """False episodes on fault-free streams (steady; starts and stops) and sparse knocking."""
    seconds, n = (20.0, 1) if smoke else (600.0, 5)
    eps, hours = 0, 0.0
    for s in range(seed + 30, seed + 30 + n):
        stream = machine_stream(s, 1.0, fault_rate=0.0)
        heard, fed = run_stream(models, (next(stream) for _ in range(int(seconds))))
        eps, hours = eps + len(closing(heard)), hours + fed / 3600
    ss_eps, ss_hours, transitions = 0, 0.0, 0
    for s in range(seed + 40, seed + 40 + n):
        audio, events = start_stop_audio(s, 30.0 if smoke else 360.0)
        heard, fed = run_stream(models, [audio])
        ss_eps, ss_hours, transitions = ss_eps + len(closing(heard)), ss_hours + fed / 3600, transitions + events
    counts = []
    for i in range(2 if smoke else 10):
        rng = np.random.default_rng([seed, 60, i])
        clip = make_clip(rng, 30.0, label="normal")
        knocks = np.zeros(clip.samples.size)
        knocks[10 * 16000 :] = sparse_knocks(rng, 20 * 16000)
        knocks *= np.sqrt(np.mean(clip.samples.astype(np.float64) ** 2)) * 10 ** (6 / 20) / np.sqrt(np.mean(knocks[knocks != 0] ** 2))
        heard, _ = run_stream(models, [clip.samples + knocks.astype(np.float32)])
        counts.append(len(closing(heard)))
    return {"false_alarms": (eps, hours), "start_stop": (ss_eps, ss_hours, transitions), "sparse_episodes": counts}


def calibrate_and_evaluate(out: Path, model: AcousticModel, seed: int, smoke: bool, evaluate: bool,
                           recipe: dict[str, Any]) -> AcousticModel:
    """Calibrate thresholds, write the manifest entry, then (optionally) evaluate and write the card."""
    threads = 2
    engine = OnnxEngine(out / model.file, max_batch=64, intra_op_threads=threads)
    n_cal, per_class = (16, 4) if smoke else (400, 60)
    model = calibrate(engine, model, seed + 1, n_cal)
    section = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.model_dump().items()}
    update_manifest_section(out, "acoustic", section)
    model = load_manifest(out).classifier("acoustic")  # round-trip through the real loader (verifies sha256)
    assert model is not None
    if not evaluate:
        return model
    t0 = time.time()
    sets = {
        "held-out nuisances, SNR −6…+6 dB": nuisance_set(seed + 70, 4 if smoke else 40, 12 if smoke else 240),
        FRESH: nuisance_set(seed + 75, 4 if smoke else 40, 12 if smoke else 240, FRESH_KINDS),
        "faults by audibility": audibility_set(seed + 80, 6 if smoke else 60),
        "evaluation plant machines, SNR −6…+6 dB": plant_set(seed + 90, 2 if smoke else 24),
        "steady machine, SNR 0…+6 dB": clip_set(seed + 11, per_class, TRAIN_ROTATION_HZ, (0.0, 6.0)),
        "steady machine, SNR −6 dB": clip_set(seed + 12, per_class, TRAIN_ROTATION_HZ, (-6.0, -6.0)),
        "held-out rotation, SNR 0…+6 dB": clip_set(seed + 13, per_class, HELDOUT_ROTATION_HZ, (0.0, 6.0)),
    }
    results = {}
    for name, clips in sets.items():
        r = measure(engine, model, clips)
        r.update(breakdown(r, clips, model.threshold))
        if name == "faults by audibility":
            r["per_level"] = {str(t): {"auroc": auroc(r["scores"][clips.labels == 0], r["scores"][clips.tag == t]),
                                       "detect": float((r["scores"][clips.tag == t] >= model.threshold).mean())}
                              for t in sorted(set(clips.tag) - {""}, key=lambda x: float(x.split()[0]))}
        results[name] = r
        print(f"{name}: AUROC {r['auroc']:.3f} healthy flagged {r['fpr']:.3f} detect {r['detect']:.3f}", flush=True)
    from edge_inspector.inspectors.acoustic_model import LoadedModel
    from edge_inspector.inspectors.heads import head_for

    models = [LoadedModel(model, head_for(model), engine)]
    extra = {"recipe": recipe, "calibration_clips": n_cal, "per_class": per_class, "threads": threads,
             "stream_diff": streaming_check(engine, model, seed + 21), "speed": speed(engine, model),
             "eval_s": 0.0, **stream_measures(models, seed, smoke)}
    extra["eval_s"] = round(time.time() - t0)
    print(json.dumps({k: v for k, v in extra.items() if k != "recipe"}, default=str))
    plots(out, engine, model, results["steady machine, SNR 0…+6 dB"]["confusion"])
    update_readme_section(out, "acoustic", model_card(model, results, extra))
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "engines")
    ap.add_argument("--seed", type=int, default=1234, help="the training seed (evaluation uses seed + k)")
    ap.add_argument("--smoke", action="store_true", help="tiny sets (tests)")
    args = ap.parse_args(argv)
    manifest = load_manifest(args.out)
    if manifest.classifier("acoustic") is None:
        raise SystemExit(f"{args.out}/manifest.toml has no acoustic classifier")
    recipe_file = args.out / RECIPE
    recipe = json.loads(recipe_file.read_text()) if recipe_file.is_file() else {"seed": args.seed}
    calibrate_and_evaluate(args.out, manifest.classifier("acoustic"), args.seed, args.smoke, True, recipe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
