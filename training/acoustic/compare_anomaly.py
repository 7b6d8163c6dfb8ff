"""Compare normal-only model options on the DEVELOPMENT machines: ``python -m training.acoustic.compare_anomaly``.

How the learnt model's options were chosen (the evaluation machines, :data:`~training.acoustic.plant.EVAL_KINDS`,
are never scored here).  Per development unit, each variant (a :class:`~edge_inspector.learn.acoustic.LearnOptions`)
is learnt by :func:`~edge_inspector.learn.acoustic.learn` (threshold included) from the unit's 3-minute learning
recording (:func:`~training.acoustic.machine_sets.learn_audio`) and scored, with the NumPy twin of the streaming
graph and the daemon's level gate and smoothing, on 4 s test clips from another stretch of its life (clip AUROC,
healthy clips flagged, faults detected at the threshold) and on ``--stream`` seconds of its normal life (threshold
crossings more than the episode hold apart: false episodes).
"""

from __future__ import annotations

import argparse
import pickle
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_inspector.features import LogMelParams, logmel
from edge_inspector.inspectors.level_gate import LevelGate
from edge_inspector.learn.acoustic import LearnOptions, learn, moving_average
from edge_inspector.learn.audio import GoodAudio, Segment
from training.acoustic.machine_sets import learn_audio, normal_stream, test_clips
from training.acoustic.plant import DEV_KINDS
from training.common.metrics import auroc_of

PARAMS = LogMelParams()
CACHE = Path("/tmp/compare_anomaly_cache_events")  # the development kinds with their rare normal sounds
HOLD_FRAMES = 300  # the learnt model's hold_s

BASE = LearnOptions()
VARIANTS: dict[str, LearnOptions] = {
    "32d-slow-gate": replace(BASE, components=32, floor=0.05, gate_window_s=1.0, gate_db=3.0, gate_below_running_db=1e3),
    "64d-slow-gate": replace(BASE, gate_window_s=1.0, gate_db=3.0, gate_below_running_db=1e3),
    "64d-no-floor": replace(BASE, gate_below_running_db=1e3),
    "64d": BASE,  # the default
    "64d-0.5s": replace(BASE, window_frames=50),
    "128d": replace(BASE, components=128, floor=0.01),
    "64d-fold2s": replace(BASE, fold_block_s=2.0),  # folds of finer blocks: each fold's model hears every state
    "64d-6folds": replace(BASE, folds=6),  # each fold's model hears five sixths of the recording
    "64d-floor0.1": replace(BASE, floor=0.1),  # rare normal sounds: a coarser whitening
    "64d-smooth0.6": replace(BASE, smoothing_s=0.6),  # ... or a longer moving average
}


def data(kind: str, seed: int, n: int, scale: str, stream_s: float) -> dict[str, Any]:
    path = CACHE / f"{kind}-{seed}-{n}-{scale}-{stream_s:g}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    CACHE.mkdir(exist_ok=True)
    out = {"learn": learn_audio(kind, seed),
           "clips": [(logmel(c.samples, PARAMS), c.fault is not None, c.level_db or 0.0)
                     for c in test_clips(kind, seed, n, scale=scale)],
           "stream": logmel(np.concatenate(list(normal_stream(kind, seed, stream_s, take=5))), PARAMS)}
    path.write_bytes(pickle.dumps(out))
    return out


def gated_smoothed(model: Any, mel: np.ndarray, options: LearnOptions, gate_entry: Any, warm: int = 50) -> np.ndarray:
    gate = LevelGate(gate_entry)
    raw = np.where(gate.push(mel), 0.0, model.score(mel))
    raw[:warm] = 0.0
    return moving_average(raw, int(round(options.smoothing_s * 100)))


def episodes(smoothed: np.ndarray, threshold: float) -> int:
    above = np.nonzero(smoothed >= threshold)[0]
    return 0 if not above.size else 1 + int(np.sum(np.diff(above) > HOLD_FRAMES))


def measure(d: dict[str, Any], options: LearnOptions) -> dict[str, float]:
    model, cal, gate = learn(GoodAudio([Segment(d["learn"], "learn")], ["learn"], ["learn"]), PARAMS, options)
    s = np.array([gated_smoothed(model, m, options, gate).max() for m, _, _ in d["clips"]])
    bad = np.array([f for _, f, _ in d["clips"]])
    lv = np.array([x for _, _, x in d["clips"]])
    quiet = bad & (lv <= np.median(lv[bad]))
    stream = gated_smoothed(model, d["stream"], options, gate)
    return {"auroc": auroc_of(s[~bad], s[bad]), "quiet_auroc": auroc_of(s[~bad], s[quiet]),
            "flagged": float(np.mean(s[~bad] >= cal.threshold)), "detected": float(np.mean(s[bad] >= cal.threshold)),
            "episodes_per_h": episodes(stream, cal.threshold) * 3600.0 / (d["stream"].shape[0] / 100.0),
            "threshold": cal.threshold, "stream_max": float(stream.max()),
            "stream_p99.9": float(np.quantile(stream, 0.999)), "healthy_max": float(s[~bad].max())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--kinds", nargs="+", default=list(DEV_KINDS), choices=DEV_KINDS)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--stream", type=float, default=1200.0, help="seconds of normal life per unit")
    ap.add_argument("--scale", choices=["audibility", "snr"], default="audibility")
    ap.add_argument("--variants", nargs="*", default=None, choices=list(VARIANTS))
    args = ap.parse_args(argv)
    names = args.variants or list(VARIANTS)
    table: dict[str, list[dict[str, float]]] = {v: [] for v in names}
    for kind in args.kinds:
        for seed in args.seeds:
            d = data(kind, seed, args.clips, args.scale, args.stream)
            for v in names:
                t0 = time.perf_counter()
                r = measure(d, VARIANTS[v])
                table[v].append(r)
                print(f"{kind}-{seed} {v}: " + ", ".join(f"{k} {x:.3f}" for k, x in r.items())
                      + f" [{time.perf_counter() - t0:.0f} s]", flush=True)
    print(f"mean over {len(args.kinds)} kinds x {len(args.seeds)} units ({args.scale}):")
    for v in names:
        print(f"  {v}: " + ", ".join(f"{k} {np.mean([r[k] for r in table[v]]):.3f}" for k in table[v][0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
