"""Compare threshold rules of the learnt acoustic model on the DEVELOPMENT machines: ``python -m training.acoustic.compare_thresholds``.

The threshold decides what a user sees: too high and quiet faults pass (the model heard them, its
AUROC says so, but the alarm stays silent), too low and the line hears false alarms.  Per
development unit (the evaluation kinds are never scored here) the model is learnt once with the
default options; its held-out fold scores (what :func:`~edge_inspector.learn.acoustic.calibrate`
sees), its clip maxima and the smoothed scores of ``--stream`` seconds of its normal life are kept,
and each rule of :data:`RULES` sets a threshold from the held-out scores alone.  Printed per rule:
healthy clips flagged, faults detected, false episodes per hour (threshold crossings more than
the episode hold apart) and the margin of the stream's maximum under the threshold.
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

import edge_inspector.learn.acoustic as la
from edge_inspector.learn.audio import GoodAudio, Segment
from training.acoustic.compare_anomaly import BASE, CACHE, PARAMS, data, episodes, gated_smoothed
from training.acoustic.plant import DEV_KINDS

FPS = PARAMS.sample_rate / PARAMS.hop_length
SMOOTH = int(round(BASE.smoothing_s * FPS))


def folds_of(blocks: list[np.ndarray]) -> list[list[np.ndarray]]:
    """The held-out blocks grouped by fold (``learn`` scores fold 0's blocks, then fold 1's, ...; one segment)."""
    n = len(blocks)
    sizes = [len(range(j, n, la.FOLDS)) for j in range(la.FOLDS)]
    out, a = [], 0
    for s in sizes:
        out.append(blocks[a : a + s])
        a += s
    return out


def rule_current(blocks: list[np.ndarray]) -> float:
    return la.calibrate(blocks, FPS, SMOOTH, BASE.max_false_alarms_per_hour).threshold


def rule_fold_median(blocks: list[np.ndarray]) -> float:
    """Each fold calibrated alone, the median of the three thresholds: an event only one fold's
    held-out audio holds (heard once in the recording) sets one fold's threshold, not the rule's."""
    return float(np.median([la.calibrate(f, FPS, SMOOTH, BASE.max_false_alarms_per_hour).threshold
                            for f in folds_of(blocks) if f]))


def _with(spread: tuple[float, float] | None = None, top: float | None = None) -> Callable[[list[np.ndarray]], float]:
    def rule(blocks: list[np.ndarray]) -> float:
        old = la.SPREAD_ABOVE, la.TOP_QUANTILE
        la.SPREAD_ABOVE, la.TOP_QUANTILE = spread or old[0], top or old[1]
        try:
            return rule_current(blocks)
        finally:
            la.SPREAD_ABOVE, la.TOP_QUANTILE = old
    return rule


def _typical_times(factor: float, cap: bool) -> Callable[[list[np.ndarray]], float]:
    """``factor`` times the typical (median) held-out score; with ``cap`` only where the current rule is
    higher: the median is the one statistic that a state or an event heard once does not move."""
    def rule(blocks: list[np.ndarray]) -> float:
        typical = float(np.median(np.concatenate([la.moving_average(b, SMOOTH) for b in blocks if b.size])))
        return min(rule_current(blocks), factor * typical) if cap else factor * typical
    return rule


RULES: dict[str, Callable[[list[np.ndarray]], float]] = {
    "current": rule_current,
    "fold-median": rule_fold_median,
    "spread-0.25-0.5": _with(spread=(0.25, 0.5)),
    "spread-0-0.5": _with(spread=(0.0, 0.5)),
    "top-0.995": _with(top=0.995),
    **{f"typical-x{f:g}": _typical_times(f, False) for f in (1.4, 1.6, 1.8)},
    **{f"capped-typical-x{f:g}": _typical_times(f, True) for f in (1.4, 1.6, 1.8)},
}


def unit(kind: str, seed: int, clips: int, stream_s: float, options: la.LearnOptions = BASE) -> dict[str, Any]:
    path = CACHE / f"thresholds-{kind}-{seed}-{clips}-{stream_s:g}{'' if options == BASE else f'-bank{options.bank}'}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    d = data(kind, seed, clips, "audibility", stream_s)
    seen: dict[str, Any] = {}
    original = la.calibrate

    def spy(held_out: list[np.ndarray], *args: Any) -> Any:
        seen["held_out"] = [np.asarray(h) for h in held_out]
        return original(held_out, *args)

    la.calibrate = spy
    try:
        model, _, gate = la.learn(GoodAudio([Segment(d["learn"], "learn")], ["learn"], ["learn"]), PARAMS, options)
    finally:
        la.calibrate = original
    out = {"held_out": seen["held_out"],
           "clip_max": np.array([gated_smoothed(model, m, options, gate).max() for m, _, _ in d["clips"]]),
           "bad": np.array([f for _, f, _ in d["clips"]]), "level": np.array([lv for _, _, lv in d["clips"]]),
           "stream": gated_smoothed(model, d["stream"], options, gate)}
    path.write_bytes(pickle.dumps(out))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--kinds", nargs="+", default=list(DEV_KINDS), choices=DEV_KINDS)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--stream", type=float, default=2400.0, help="seconds of normal life per unit")
    ap.add_argument("--bank", type=int, default=BASE.bank, help="remembered good contexts (LearnOptions.bank)")
    ap.add_argument("--rules", nargs="*", default=None, choices=list(RULES))
    args = ap.parse_args(argv)
    options = replace(BASE, bank=args.bank)
    units = {f"{k}-{s}": unit(k, s, args.clips, args.stream, options) for k in args.kinds for s in args.seeds}
    for name, rule in RULES.items():
        if args.rules and name not in args.rules:
            continue
        rows = []
        for u, r in units.items():
            thr = rule(r["held_out"])
            ok, bad = ~r["bad"], r["bad"]
            hours = r["stream"].size / FPS / 3600
            row = {"flagged": float(np.mean(r["clip_max"][ok] >= thr)), "detected": float(np.mean(r["clip_max"][bad] >= thr)),
                   "episodes_per_h": episodes(r["stream"], thr) / hours,
                   "margin": float((thr - r["stream"].max()) / max(thr - np.median(r["stream"]), 1e-9))}
            rows.append(row)
            print(f"  {name:16s} {u:12s} thr {thr:7.3f} " + " ".join(f"{k} {v:.3f}" for k, v in row.items()))
        print(f"{name}: " + ", ".join(f"{k} {np.mean([x[k] for x in rows]):.3f}" for k in rows[0])
              + f"; episodes in all {sum(x['episodes_per_h'] for x in rows) * args.stream / 3600:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
