"""Evaluate ``edge-inspector learn acoustic`` as a user meets it: ``python -m training.acoustic.evaluate_anomaly``.

Per machine unit (:mod:`training.acoustic.plant`; ``--machines eval`` are kinds never used to
choose features, hyper-parameters or the threshold rule, ``dev`` the kinds that were):

1. write 3 minutes of its normal life to a WAV and run the real ``edge-inspector learn acoustic``
   on it, with the classifier of ``--engines`` copied in (timed);
2. 100 test clips of 4 s from another stretch of its life, half with a fault at an audibility of
   0 (barely audible), 3, 6 or 10 dB (:mod:`training.acoustic.machine_sets`): clip AUROC of the
   anomaly score, healthy clips flagged, faults detected, per level and per fault kind, and what
   the classifier and the learnt model together say (``inspect``'s decision);
3. an hour (``--hour``) of its normal life streamed through the daemon's inspector: false episodes;
4. episodes (the learnt model alone: the classifier's own false alarms on a machine it never heard
   are counted in 2. and 3.): a knock every 0.5-2 s for 20 s must be ONE episode; a fault fading in
   over 3 s must be reported (first event published) within 0.5 s of becoming audible (0 dB).

Prints one table per measure and writes ``--json``; with ``--card`` the tables go into the
``acoustic_anomaly`` section of the engines directory's model card.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io.wavfile

from edge_inspector import cli
from edge_inspector.inspectors import acoustic_model as am
from edge_inspector.inspectors.factory import engine_opener, open_acoustic
from edge_inspector.manifest import load_manifest
from training.acoustic.audibility import audible_from
from training.acoustic.faults import sparse_knocks
from training.acoustic.machine_sets import LEVELS_DB, SCALES, fault_in_stream, learn_audio, normal_stream, test_clips
from training.acoustic.plant import DEV_KINDS, EVAL_KINDS, FRESH_KINDS, SR, NormalLife, PlantMachine
from training.acoustic.streams import closing, first_report_s, run_stream
from training.common.metrics import auroc_of

ROOT = Path(__file__).resolve().parents[2]
FADE_S = 3.0


def learn_dir(kind: str, seed: int, base: Path, work: Path) -> tuple[Path, float]:
    wav = work / f"{kind}-{seed}-learn.wav"
    scipy.io.wavfile.write(wav, SR, (np.clip(learn_audio(kind, seed), -1, 1) * 32767).astype(np.int16))
    out = work / f"{kind}-{seed}-learnt"
    t0 = time.perf_counter()
    if cli.main(["learn", "acoustic", str(wav), "--out", str(out), "--engines", str(base)]) != 0:
        raise SystemExit(f"learn failed for {kind} {seed}")
    return out, time.perf_counter() - t0


def clip_measures(models: list[Any], kind: str, seed: int, n: int, scale: str = "audibility") -> dict[str, Any]:
    anomaly_only = [m for m in models if m.head.kind == "anomaly"]
    alone, both = am.AcousticStreamRunner(anomaly_only), am.AcousticStreamRunner(models)
    rows = []
    for c in test_clips(kind, seed, n, scale=scale):
        alone.reset()
        d1 = am.clip_decision(alone, alone.push(c.samples))
        both.reset()
        d2 = am.clip_decision(both, both.push(c.samples))
        rows.append((c.fault or "", c.level_db, d1.anomaly_score, d1.defect, d2.defect, d2.label, c.snr_db))
    fault = np.array([r[0] for r in rows])
    level = np.array([np.nan if r[1] is None else r[1] for r in rows])
    score = np.array([r[2] for r in rows])
    flag1, flag2 = np.array([r[3] for r in rows]), np.array([r[4] for r in rows])
    ok = fault == ""
    per_level = {f"{lv:g}": {"auroc": auroc_of(score[ok], score[level == lv]), "detected": float(flag1[level == lv].mean())}
                 for lv in SCALES[scale]}
    per_fault = {k: auroc_of(score[ok], score[fault == k]) for k in sorted(set(fault) - {""})}
    known = [(r[0], r[5]) for r in rows if r[0] in ("bearing", "knock", "squeal") and r[4]]
    return {"clips": len(rows), "auroc": auroc_of(score[ok], score[~ok]), "flagged": float(flag1[ok].mean()),
            "detected": float(flag1[~ok].mean()), "per_level": per_level, "per_fault": per_fault,
            "both_flagged": float(flag2[ok].mean()), "both_detected": float(flag2[~ok].mean()),
            "known_named": (sum(a == b for a, b in known), len(known)),
            "snr_range": [float(np.nanmin([r[6] for r in rows if r[6] is not None])),
                          float(np.nanmax([r[6] for r in rows if r[6] is not None]))]}


def sparse_and_fade(models: list[Any], kind: str, seed: int, cases: int) -> dict[str, Any]:
    """Episodes per sparse knocking fault, and report delays of faults fading in."""
    counts, delays = [], []
    for i in range(cases):
        rng = np.random.default_rng([seed, i, 5])
        machine = PlantMachine(kind, seed, take=100 + i)
        life = NormalLife(kind, seed * 1000 + 100 + i, stops=False, steady=True, unit=seed)
        audio = machine.render(life.next(40.0))
        knocks = np.zeros(audio.size)
        knocks[20 * SR :] = sparse_knocks(rng, 20 * SR)
        from training.acoustic.audibility import scale_to_audibility

        knocks = scale_to_audibility(knocks, audio, 10.0)
        heard, _ = run_stream(models, [audio + knocks.astype(np.float32)])
        counts.append(len([v for v in closing(heard) if v.offset_s >= 15.0]))
        fault = ("rattle", "bearing", "squeal", "blade_rub")[i % 4]
        faded, start, alone = fault_in_stream(kind, seed, fault, 10.0, 15.0, 10.0, fade_s=FADE_S, take=200 + i)
        audible = audible_from(alone[int(start * SR) :], faded[int(start * SR) :] - alone[int(start * SR) :])
        heard, _ = run_stream(models, [faded])
        reported = first_report_s(heard, start)
        if audible is not None:
            delays.append(None if reported is None else reported - (start + audible))
    ok = [d for d in delays if d is not None]
    return {"sparse_episodes": counts, "one_episode": float(np.mean([c == 1 for c in counts])),
            "fade_delays_s": delays, "within_0.5s": float(np.mean([d is not None and d <= 0.5 for d in delays])),
            "median_delay_s": float(np.median(ok)) if ok else None}


def evaluate_machine(kind: str, seed: int, base: Path, work: Path, n: int, hour_s: float, cases: int,
                     snr_clips: int = 0) -> dict[str, Any]:
    directory, learn_s = learn_dir(kind, seed, base, work)
    manifest = load_manifest(directory)
    models = open_acoustic(manifest, engine_opener("onnxruntime", intra_op_threads=1))
    entry = manifest.anomaly("acoustic")
    result: dict[str, Any] = {"kind": kind, "seed": seed, "learn_s": learn_s, "threshold": entry.threshold,
                              "estimated_false_alarms_per_hour": entry.false_alarms_per_hour}
    result.update(clip_measures(models, kind, seed, n))
    if snr_clips:
        result["snr"] = clip_measures(models, kind, seed, snr_clips, scale="snr")
    anomaly_only = [m for m in models if m.head.kind == "anomaly"]
    t0 = time.perf_counter()
    heard, seconds = run_stream(anomaly_only, normal_stream(kind, seed, hour_s))
    result["stream_s"], result["stream_compute_s"] = seconds, time.perf_counter() - t0
    result["false_episodes"] = len(closing(heard))
    heard, _ = run_stream(models, normal_stream(kind, seed, min(hour_s, 600.0), take=5))
    result["both_false_episodes_10min"] = len(closing(heard))
    result.update(sparse_and_fade(anomaly_only, kind, seed, cases))
    return result


def tables(results: list[dict[str, Any]]) -> str:
    levels = " | ".join(f"{lv:g} dB" for lv in LEVELS_DB)
    head = (f"| machine | clip AUROC | AUROC at {levels} | healthy flagged | faults detected | false episodes / h "
            "| learn time |\n|---|---|" + "---|" * len(LEVELS_DB) + "---|---|---|---|")
    rows = []
    for r in results:
        lv = " | ".join(f"{r['per_level'][f'{x:g}']['auroc']:.3f}" for x in LEVELS_DB)
        rows.append(f"| {r['kind']} (unit {r['seed']}) | {r['auroc']:.3f} | {lv} | {100 * r['flagged']:.0f} % | "
                    f"{100 * r['detected']:.0f} % | {r['false_episodes'] / (r['stream_s'] / 3600):.1f} "
                    f"({r['false_episodes']} in {r['stream_s'] / 3600:.2f} h) | {r['learn_s']:.0f} s |")
    det = " | ".join(f"{lv:g} dB" for lv in LEVELS_DB)
    rows2 = [f"| {r['kind']} | " + " | ".join(f"{100 * r['per_level'][f'{x:g}']['detected']:.0f} %" for x in LEVELS_DB)
             + f" | {', '.join(f'{k} {v:.2f}' for k, v in r['per_fault'].items())} |" for r in results]
    rows3 = [f"| {r['kind']} | {100 * r['both_flagged']:.0f} % | {100 * r['both_detected']:.0f} % | "
             f"{r['known_named'][0]}/{r['known_named'][1]} | {r['both_false_episodes_10min']} | "
             f"{100 * r['one_episode']:.0f} % | {100 * r['within_0.5s']:.0f} % (median {r['median_delay_s'] or float('nan'):.2f} s) |"
             for r in results]
    return "\n".join([head, *rows, "", f"| machine | detected at {det} | AUROC per fault kind |",
                      "|---|" + "---|" * len(LEVELS_DB) + "---|", *rows2, "",
                      "| machine | healthy flagged (with classifier) | faults detected (with classifier) | known faults named "
                      "right | false episodes in 10 min (with classifier) | sparse knocking = one episode | fade-in reported "
                      "≤ 0.5 s after audible |", "|---|---|---|---|---|---|---|", *rows3, *snr_table(results)])


def snr_table(results: list[dict[str, Any]]) -> list[str]:
    """Clips with faults at a broadband SNR of -6..+6 dB (the classifier's scale), if measured."""
    with_snr = [r for r in results if "snr" in r]
    if not with_snr:
        return []
    levels = SCALES["snr"]
    rows = [f"| {r['kind']} | {r['snr']['clips']} | {r['snr']['auroc']:.3f} | "
            + " | ".join(f"{r['snr']['per_level'][f'{x:g}']['auroc']:.3f}" for x in levels)
            + f" | {100 * r['snr']['flagged']:.0f} % | {100 * r['snr']['detected']:.0f} % | "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["snr"]["per_fault"].items()) + " |" for r in with_snr]
    return ["", "| machine | clips (SNR scale) | clip AUROC | " + " | ".join(f"{x:+g} dB" for x in levels)
            + " | healthy flagged | faults detected | AUROC per fault kind |",
            "|---|---|---|" + "---|" * len(levels) + "---|---|---|", *rows]


def card(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The ``acoustic_anomaly`` section of the engines directory's model card."""
    fe = sum(r["false_episodes"] for r in results)
    hours = sum(r["stream_s"] for r in results) / 3600
    delays = [d for r in results for d in r["fade_delays_s"] if d is not None]
    return f"""<a id="acoustic-anomaly"></a>
## acoustic anomaly — what `edge-inspector learn acoustic` learns on a line

Not a shipped file: each line learns its own (`edge-inspector learn acoustic`, README: *Learn your machine's
sound*). Method (`edge_inspector/learn/acoustic.py`): per mel band, the mean log power and the log of the mean power
over the last 0.25 s, standardised, PCA-whitened to 64 dimensions (gains floored at 2 % of the largest), scored by
the distance to the nearest of 4000 remembered healthy contexts; smoothed over 0.3 s; threshold from held-out thirds
of the recording for 1 false episode per hour. Not scored while the machine starts or stops: the level gate follows
the median-over-bands level (its running median over 0.3 s, so a fault in its own bands or a knock does not move
it) and suspends scoring for 1.5 s after it moves by 1.5 dB, and while it is 8 dB or more under the running
machine's level (stopped, or still slow in a start). Chosen on the development machines (motor, mixer, conveyor;
`python -m training.acoustic.compare_anomaly`) against the previous 32 dimensions with a mean-level gate over 1 s
(clip AUROC 0.94 and 0.92 on a motor and a mixer unit, 21 and 18 false episodes per hour, mostly at the end of
starts and stops the gate let through) and 128 dimensions (no better); the median-over-bands gate raised the
AUROC on those units to 0.985-0.994 (loud faults setting in were gated by a mean-level gate) and the floor removed
the false episodes of slow starts.
Threshold rules compared on the same development machines (`python -m training.acoustic.compare_thresholds`: six
units, 64 test clips and 40 minutes of normal life each): the rule above detects 57 % of the test faults with 2 false
episodes in those 4 hours; a lower spread bound (0.25–0.5), the 99.5th percentile as the top, or the median of the
three folds' own thresholds detect 62–74 % but give 9–26 false episodes, because the margin between the threshold and
a unit's highest normal score varies from unit to unit more than any common shift can follow; on two of the units, a memory of 12000
contexts instead of 4000 moved neither scores nor thresholds. The rule was kept. (These comparisons were made before
the development kinds had rare normal sounds of their own.)
**Rare normal sounds** (why the compressor and the fan detect little, the gearbox alarms): the evaluation kinds make
sounds of their cycle (blow-off, clutch) that three minutes hold once or a few times; the development kinds now do
too (a mixer's charge of ingredients after loading up, a product bumping a conveyor's rail: `training/acoustic/plant.py`).
On them (`python -m training.acoustic.compare_thresholds --stream 1200`: six units, 64 clips and 20 minutes of normal
life each) the rule above detects 39 % of the test faults with 12 false episodes in the 2 hours, 10 of them on the
mixer whose charges (each in another band, heard a few times while recording) reach 33 against a threshold of 5.8;
no threshold rule helps: 1.6 or 1.8 times the typical held-out score, or the lower of that and the rule above
(the median is the one statistic a sound heard once does not move), detect 46–59 % with 15–21 false episodes;
the median of the folds' thresholds 54 % with 25, the 99.5th percentile as the top 59 % with 26. The model's
options, each learnt as shipped otherwise (`python -m training.acoustic.compare_anomaly --variants 64d-6folds 64d-smooth0.6 --stream 1200`): six folds
instead of three (each fold's model hears five sixths of the recording) detect 33 % with the same 12 false episodes; a
moving average over 0.6 s instead of 0.3 s raises the clip AUROC from 0.961 to 0.963 and detection to 45 % with 9
false episodes (the mixer's charges still 24 per hour), for 0.15 s more lag before an episode is reported (not
adopted: its cost in onset is not measured yet).
Also tried and not kept (exploratory, on three or four of these units): a whitening floor of 10 % (mixer: 21 false
episodes per hour as before), the median or 25th percentile of each band over 1 s, alone or beside the 0.25 s
context (clip AUROC 0.83–0.96 against 0.93–0.97), the per-band spread or frame-to-frame flux added to the context
(AUROC 0.90 and 0.92 against 0.97 on a mixer unit), a score held for 0.3–0.6 s before it counts, the mean of the 4 nearest contexts, and a
memory half chosen to cover rare contexts (greedy coreset): none lowered the charges' false episodes.

**Evaluation machines** (`training/acoustic/plant.py`: {", ".join(EVAL_KINDS)}, no feature, parameter or rule
was chosen on them; {", ".join(FRESH_KINDS)}, a kind added after every option and rule was fixed): each unit lives a normal life (idle and loaded spells, load ramps, speed set points and
drift, slip, starts and stops, its valves: a compressor's unloader blowing off, a pump's check valve, a gearbox's
clutch). Per machine: `learn acoustic` on 3 minutes of it (each speed set point loaded and idle, a stop and a start, in a
random order and for random spells, as users are told to record; the loads of the test life differ from the
recorded ones); {args.clips} test clips of 4 s from another stretch, half with a fault over the whole clip or a part
(faults the classifier has no label for: blade rub, cavitation, valve flutter, broken tooth, rattle; and its own
bearing, knock, squeal) at an *audibility* of 0 dB (barely audible: the fault's loudest mel band in its loudest
100 ms as loud as the background there), 3, 6 or 10 dB — a broadband SNR of about −40 to −10 dB; then
{args.hour / 3600:g} h of its normal life streamed through the daemon's inspector. Reproduce:
`python -m training.acoustic.evaluate_anomaly --kinds {" ".join(r["kind"] for r in results)} --clips {args.clips} --hour {args.hour:g} --cases {args.cases} --snr-clips {args.snr_clips}`.

{tables(results)}

False episodes over all machines: {fe} in {hours:.1f} h ({fe / max(hours, 1e-9):.1f} per hour). Fade-in: a fault rising
30 dB in {FADE_S:g} s, reported a median {np.median(delays) if delays else float('nan'):.2f} s after it became audible (first
event published; audible = the first 100 ms at 0 dB audibility). Sparse fault: a knock every 0.5–2 s for 20 s at
10 dB audibility. "With classifier" columns: the learnt model and the shipped classifier together, as the daemon
runs them (the classifier flags sounds of machine kinds it never heard: see its card).

**Limits**: the threshold comes from three minutes, in which the machine's own rare sounds (a compressor's
blow-off, a gearbox's clutch at a load change, each different) are heard once or twice: where held-out blocks
holding them score high, the threshold lands far above the typical score and quiet faults are missed although
they rank well (compressor: clip AUROC above 0.9, nothing detected at the threshold; fan: 10 %); where they
are not in the recording often enough, they are flagged (gearbox: most likely the clutch clunk at each load
change, a short, loud, different sound each time, which the level gate no longer suspends since a knock must stay
scored; the previous gate, a 1 s mean level, gave 5 false episodes in that hour and an AUROC of 0.876). A
fault setting in abruptly at +6 dB broadband SNR moves the level like a start and is not scored for the gate's
hold (the SNR tables' +6 dB column). A normal state missing from the recording (a load or speed never run while
recording) is flagged. Synthetic machines and faults: measure on your own line with `replay --labels`.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--machines", choices=["eval", "fresh", "dev"], default="eval")
    ap.add_argument("--kinds", nargs="*", default=None, help="only these kinds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--engines", type=Path, default=ROOT / "engines", help="the classifier to run beside the learnt model")
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--hour", type=float, default=3600.0, help="seconds of normal streaming per machine")
    ap.add_argument("--cases", type=int, default=8, help="sparse-knock and fade-in cases per machine")
    ap.add_argument("--snr-clips", type=int, default=0, help="also this many clips with faults at -6..+6 dB broadband SNR")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--card", type=Path, default=None, help="engines directory whose README.md gets the tables")
    args = ap.parse_args(argv)
    kinds = args.kinds or {"eval": EVAL_KINDS, "fresh": FRESH_KINDS, "dev": DEV_KINDS}[args.machines]
    results = []
    with tempfile.TemporaryDirectory(prefix="acoustic-anomaly-eval-") as tmp:
        for kind in kinds:
            for seed in args.seeds:
                r = evaluate_machine(kind, seed, args.engines, Path(tmp), args.clips, args.hour, args.cases, args.snr_clips)
                print(json.dumps({k: v for k, v in r.items() if k not in ("fade_delays_s",)}, default=float), flush=True)
                results.append(r)
    print(tables(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    if args.card:
        from training.common.modelcard import update_readme_section

        update_readme_section(args.card, "acoustic_anomaly", card(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
