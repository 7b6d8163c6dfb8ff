#!/usr/bin/env python3
"""Calibrate thresholds and evaluate the shipped acoustic GRU through ONNX Runtime.

Everything runs through ``edge_inspector.inspectors.acoustic_model`` (the runtime code), on
clips generated from seeds never used in training.  Thresholds are chosen on held-out NORMAL
clips only; metrics: clip AUROC (normal vs fault) at SNR >= 0 dB and at -6 dB, per-class
accuracy, the same on the held-out machine (rotation 45-60 Hz), a streaming-equivalence check,
and speed.  Writes ``acoustic_confusion.png``, ``acoustic_example.png``, the ``[acoustic]``
manifest section and the model card section of ``README.md``.

    python3 tools/eval_acoustic.py --out engines     # re-evaluate the shipped model
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from training.common.metrics import auroc_of as auroc  # noqa: E402
from training.common.modelcard import update_manifest_section, update_readme_section  # noqa: E402

from edge_inspector.features import LogMelParams, logmel  # noqa: E402
from edge_inspector.inspectors import acoustic_model as am  # noqa: E402
from edge_inspector.manifest import AcousticModel, load_manifest  # noqa: E402
from edge_inspector.runtime.onnx import OnnxEngine  # noqa: E402
from edge_inspector.synthetic.machines import (  # noqa: E402
    HELDOUT_ROTATION_HZ,
    LABELS,
    TRAIN_ROTATION_HZ,
    machine_stream,
    make_clip,
    noise_floor,
)


def frame_probs(engine: OnnxEngine, model: AcousticModel, mel: np.ndarray, batch: int = 32) -> np.ndarray:
    out = [am.run_frames(engine, model, am.normalise(mel[i : i + batch], model))[0] for i in range(0, len(mel), batch)]
    return np.concatenate(out)


def smoothed(scores: np.ndarray, model: AcousticModel) -> np.ndarray:
    """Causal moving average over ``smoothing_s`` (what the streaming inspector applies)."""
    k = max(1, int(round(model.smoothing_s * model.sample_rate / model.hop_length)))
    c = np.cumsum(np.concatenate([np.zeros(1), scores]))
    idx = np.arange(1, scores.size + 1)
    return (c[idx] - c[np.maximum(0, idx - k)]) / np.minimum(idx, k)



def clip_set(seed: int, per_class: int, rotation: tuple[float, float], snr: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Whole-clip faults (4 s), ``per_class`` clips of every label: (mel, labels)."""
    from train_acoustic import make_dataset

    data = make_dataset(seed, per_class * len(LABELS), LogMelParams(), rotation=rotation, snr=snr, partial=0.0, desc="eval data",
                        envelopes=False)
    return data.mel, data.labels


def evaluate_set(engine: OnnxEngine, model: AcousticModel, mel: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    probs = frame_probs(engine, model, mel)
    scored = [am.clip_score(p, model) for p in probs]
    scores = np.array([s for s, _ in scored])
    pred = np.array([LABELS.index(lab) for _, lab in scored])
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    for t, p in zip(labels, pred):
        confusion[t, p] += 1
    per_class = {LABELS[c]: float((pred[labels == c] == c).mean()) for c in range(len(LABELS))}
    return {
        "auroc": auroc(scores[labels == 0], scores[labels != 0]),
        "accuracy": float((pred == labels).mean()),
        "per_class": per_class,
        "fpr": float((scores[labels == 0] >= model.threshold).mean()),
        "detect": float((scores[labels != 0] >= model.threshold).mean()),
        "confusion": confusion,
    }


def calibrate(engine: OnnxEngine, model: AcousticModel, seed: int, n: int) -> AcousticModel:
    """Thresholds from held-out NORMAL clips only (both machine ranges are *not* used: train range)."""
    from train_acoustic import make_dataset

    data = make_dataset(seed, n, LogMelParams(), labels=("normal",), desc="calibration data")
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
        parts = [runner.push(clip.samples[a : a + 1600])[0] for a in range(0, clip.samples.size, 1600)]
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


def stream_false_alarms(engine: OnnxEngine, model: AcousticModel, seeds: range, seconds: float) -> tuple[int, float]:
    """Episodes the streaming inspector reports on fault-free ``machine_stream`` audio:
    ``(episodes, hours of audio)`` -- the false-alarm rate a line would see."""
    from edge_inspector.inspectors.acoustic import AcousticInspector
    from edge_inspector.sources.base import BoundedQueue, Chunk

    episodes = 0
    for seed in seeds:
        found: list[Any] = []
        inspector = AcousticInspector(engine, model, {"m": BoundedQueue(1, "block")}, found.append)
        stream = machine_stream(seed, 0.1, fault_rate=0.0)
        for i in range(int(seconds * 10)):
            inspector.process(Chunk("m", i * 0.1, 0.0, 0.0, next(stream), model.sample_rate))
        inspector.finish()
        episodes += len(found)
    return episodes, len(seeds) * seconds / 3600.0


def start_stop_audio(seed: int, seconds: float, sample_rate: int = 16000) -> tuple[np.ndarray, int]:
    """Fault-free line audio with the machine starting and stopping: it runs 10-60 s, stops for
    2-20 s (a noise floor or digital silence, see ``machines.noise_floor``), starts again; each
    start/stop is abrupt or a fade of up to 1.5 s (half each).  Returns (audio, starts + stops)."""
    rng = np.random.default_rng(seed)
    stream = machine_stream(seed, 0.1, fault_rate=0.0, sample_rate=sample_rate)
    n = int(seconds * sample_rate)
    machine = np.concatenate([next(stream) for _ in range(int(np.ceil(seconds * 10)))])[:n].astype(np.float64)
    knots_t, knots_g = [0.0], [0.0]  # starts with the machine off
    t, on = float(rng.uniform(1.0, 5.0)), True
    while t < seconds:
        width = 0.0 if rng.random() < 0.5 else float(rng.uniform(0.01, 1.5))
        knots_t += [t, t + width + 1e-4]
        knots_g += [knots_g[-1], 1.0 if on else 0.0]
        t += width + (rng.uniform(10.0, 60.0) if on else rng.uniform(2.0, 20.0))
        on = not on
    env = np.interp(np.arange(n) / sample_rate, knots_t, knots_g)
    audio = np.clip(machine * env + noise_floor(rng, n), -1.0, 1.0).astype(np.float32)
    return audio, sum(1 for x in knots_t[1::2] if x < seconds)


def stream_episodes(engine: OnnxEngine, model: AcousticModel, audio: np.ndarray, chunk_s: float = 0.1) -> list[Any]:
    """Closing episode verdicts of the streaming inspector on ``audio`` fed in ``chunk_s`` chunks."""
    from edge_inspector.inspectors.acoustic import AcousticInspector
    from edge_inspector.sources.base import BoundedQueue, Chunk

    found: list[Any] = []
    inspector = AcousticInspector(engine, model, {"m": BoundedQueue(1, "block")}, found.append)
    step = int(chunk_s * model.sample_rate)
    for i, a in enumerate(range(0, audio.size, step)):
        inspector.process(Chunk("m", i * chunk_s, 0.0, 0.0, audio[a : a + step], model.sample_rate))
    inspector.finish()
    return [v for v in found if not v.extra.get("ongoing")]


def start_stop_false_alarms(engine: OnnxEngine, model: AcousticModel, seeds: range, seconds: float) -> tuple[int, float, int]:
    """``(episodes, hours, machine starts+stops)`` on fault-free :func:`start_stop_audio`."""
    episodes = events = 0
    for seed in seeds:
        audio, transitions = start_stop_audio(seed, seconds, model.sample_rate)
        episodes += len(stream_episodes(engine, model, audio))
        events += transitions
    return episodes, len(seeds) * seconds / 3600.0, events


def plots(out: Path, engine: OnnxEngine, model: AcousticModel, confusion: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4))
    norm = confusion / np.maximum(1, confusion.sum(1, keepdims=True))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(LABELS)):
        for j in range(len(LABELS)):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(LABELS)), LABELS)
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("clips, SNR 0..+6 dB, train machine range")
    fig.tight_layout()
    fig.savefig(out / "acoustic_confusion.png", dpi=100)
    plt.close(fig)

    clip = make_clip(np.random.default_rng(7), 8.0, label="bearing", snr_db=0.0, fault_start_s=3.0, fault_end_s=5.5)
    mel = logmel(clip.samples, LogMelParams.from_model(model))
    runner = am.AcousticStreamRunner(engine, model)
    score = np.concatenate([runner.push(clip.samples[a : a + 1600])[0] for a in range(0, clip.samples.size, 1600)])
    t = np.arange(mel.shape[0]) * model.hop_length / model.sample_rate
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.imshow(mel.T, origin="lower", aspect="auto", extent=(0, t[-1], 0, model.n_mels), cmap="magma")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    ax2 = ax.twinx()
    ax2.plot(t, score, color="cyan", lw=1, label="frame score")
    ax2.plot(t, smoothed(score, model), color="lime", lw=1.5, label="smoothed")
    ax2.axhline(model.onset, color="red", ls="--", lw=1, label="onset")
    ax2.axhline(model.offset, color="orange", ls=":", lw=1, label="offset")
    ax2.axvspan(clip.fault_start_s, clip.fault_end_s, color="white", alpha=0.12)
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("anomaly score")
    ax2.legend(loc="upper left", fontsize=7)
    ax.set_title("bearing fault 3.0-5.5 s at 0 dB SNR (shaded); streamed in 0.1 s pushes")
    fig.tight_layout()
    fig.savefig(out / "acoustic_example.png", dpi=80)
    plt.close(fig)


def _row(name: str, r: dict[str, Any]) -> str:
    pc = " / ".join(f"{r['per_class'][lab]:.2f}" for lab in LABELS)
    return f"| {name} | {r['auroc']:.3f} | {r['accuracy']:.3f} | {pc} | {r['detect']:.3f} | {r['fpr']:.3f} |"


def model_card(model: AcousticModel, results: dict[str, dict[str, Any]], extra: dict[str, Any]) -> str:
    rows = "\n".join(_row(k, v) for k, v in results.items())
    sp = extra["speed"]
    return f"""## acoustic_gru — streaming machine-sound anomaly model

`acoustic_gru.onnx` (opset 17): inputs `mel` [N, T, {model.n_mels}] (normalised log-mel, T dynamic) and
`h_in` [{model.num_layers}, N, {model.hidden_size}]; outputs `probs` [N, T, {len(model.labels)}] (per-frame softmax over
{", ".join(f"`{x}`" for x in model.labels)}) and `h_out`. Per-frame MLP (64→96→{model.hidden_size}) → {model.num_layers}-layer GRU
(hidden {model.hidden_size}) → linear head; no layer looks across frames except the GRU, so streaming only carries `h`.

**Features** (`edge_inspector/features.py`, shared by training, daemon and `inspect`): {model.sample_rate} Hz mono,
n_fft {model.n_fft}, Hann window {model.win_length}, hop {model.hop_length} (10 ms), {model.n_mels} HTK mel bands
{model.fmin:g}–{model.fmax:g} Hz, `log(mel_power + 1e-6)`, no centre padding; normalised with scalar mean
{model.feature_mean:.4f} / std {model.feature_std:.4f}. WAV input at any rate/channel count is downmixed and resampled.

**Data**: `edge_inspector/synthetic/machines.py` — harmonic hum at the rotation frequency (jitter, slow AM),
often a gear-mesh tone locked to the shaft (15–60 teeth), 50/60 Hz mains hum, pink noise with a random share of
white noise; faults `bearing` (impulse train at 3–5.5× rotation ringing a 2–6 kHz resonance),
`knock` (sparse broadband transients), `squeal` (drifting 1–4 kHz tone) at −6…+6 dB SNR. Training: rotation
{TRAIN_ROTATION_HZ[0]:g}–{TRAIN_ROTATION_HZ[1]:g} Hz, {extra['recipe']['train_clips']} clips of 4 s, half the faults over a random sub-interval.
The line's life is in the normal class: 70 % of normal clips have the machine starting, stopping, pausing, silent
or changing level (abrupt or faded over up to 1.5 s) over a microphone floor (digital silence or −90…−50 dBFS
noise); 30 % of fault clips start/stop/change level around the fault; half of all clips get a −10…+4 dB gain and
half a random channel response (low-pass 4.5–7.8 kHz, order 2–8, sometimes a 30–150 Hz high-pass) — a sound
server's resampler alone moves the top mel bands by several nats. Evaluation clips below are steady machines.
**Held-out machine**: rotation {HELDOUT_ROTATION_HZ[0]:g}–{HELDOUT_ROTATION_HZ[1]:g} Hz, never seen in training.

**Recipe**: `python3 tools/train_acoustic.py --out engines` (seed {extra['recipe']['seed']}, {extra['recipe']['epochs']} epochs,
random {extra['recipe']['crop']}-frame crops from a zero state, per-frame cross-entropy skipping the first 0.3 s, AdamW
one-cycle, ±0.5 level jitter; {extra['recipe']['train_s']} s on 2 shared CPU cores for data generation, training and export).
ONNX Runtime vs PyTorch max difference {extra['recipe']['ort_torch_diff']:.1e}. Re-evaluate: `python3 tools/eval_acoustic.py --out engines`.

**Scores**: frame score = 1 − p(normal). Clip score (`acoustic_model.clip_score`) = mean of the top decile of
frame scores after the {model.warmup_s:g} s warm-up; the clip label is the defect with the highest mean probability
over those frames when the score ≥ threshold. Thresholds, chosen on {extra['calibration_clips']} held-out NORMAL clips:
`threshold` {model.threshold:.3f} (99th percentile of normal clip scores + 0.05, at least 0.3); streaming
`onset` {model.onset:.3f} (99.9th percentile of {model.smoothing_s:g} s-smoothed normal frame scores + 0.1, at least 0.5),
`offset` {model.offset:.3f}; episodes shorter than {model.min_duration_s:g} s are dropped. Each episode is one closing
event (`extra.ongoing` false); an episode still open {model.report_after_s:g} s (`report_after_s`) after its onset is
also reported once while it lasts (`extra.ongoing` true, same `extra.episode` id), so a persistent fault is heard early.

**Evaluation** (ONNX Runtime, seeds never used in training, {extra['per_class']} whole-clip 4 s clips per class and set;
per-class accuracy is {" / ".join(model.labels)}; detect / FPR at `threshold`):

| set | AUROC | accuracy | per-class accuracy | detect | FPR |
|---|---|---|---|---|---|
{rows}

Streaming (0.1 s pushes, state carried) vs whole clip: max frame-score difference {extra['stream_diff']:.1e}.
Streaming inspector on fault-free `machine_stream` audio ({extra['false_alarms'][1]:.2f} h, train machine range):
{extra['false_alarms'][0]} false episode(s), i.e. {extra['false_alarms'][0] / extra['false_alarms'][1]:.1f} per hour.
**Silence and start/stop**: fault-free line audio where the machine runs 10–60 s and stops for 2–20 s (digital
silence or a −90…−50 dBFS floor; abrupt or faded starts/stops; `eval_acoustic.start_stop_audio`,
{extra['start_stop'][1]:.2f} h, {extra['start_stop'][2]} starts/stops): {extra['start_stop'][0]} false episode(s), i.e.
{extra['start_stop'][0] / extra['start_stop'][1]:.1f} per hour (the previous model, trained without silence, start/stop and channel
responses: 18 per hour on a shorter run of the same kind, and three spurious episodes around one clip played through PulseAudio).
Speed (ONNX Runtime CPU, {extra['threads']} threads, this build machine): {sp['chunk_ms']:.3f} ms per {model.chunk_frames}-frame chunk (p95
{sp['chunk_p95_ms']:.3f} ms); features + GRU {sp['per_audio_s_ms']:.2f} ms per second of audio (real-time factor {sp['rtf']:.4f}).

![confusion](acoustic_confusion.png) ![example](acoustic_example.png)

**Limitations**: SNR is broadband (fault RMS over its interval vs background RMS); the synthetic background
puts most of its energy below 1 kHz, so the 2–6 kHz bearing ringing and the squeal tone stand out more than a
"−6 dB" suggests, and these figures are an upper bound for real recordings. Trained only on synthetic sounds — the three fault types are idealised and a real line needs
recordings of its own machines (at least normal ones, to re-choose the thresholds). Level changes of more than a
few dB beyond the training range, strong non-stationary background (speech, forklifts, other machines) and faults
other than these three are untested. A sparse `knock` (a transient every second or more) can be reported as
two or three shorter episodes when the smoothed score falls below `offset` between transients. A fault present from the very first second has no "normal" reference, which
is fine for this model (it classifies sounds, it does not learn the machine) but the warm-up frames are not scored.
"""


def calibrate_and_evaluate(out: Path, model: AcousticModel, seed: int, smoke: bool, evaluate: bool, recipe: dict[str, Any]) -> AcousticModel:
    """Calibrate thresholds, write the manifest section, then (optionally) evaluate and write the card."""
    threads = 2
    engine = OnnxEngine(out / model.file, max_batch=64, intra_op_threads=threads)
    n_cal, per_class = (16, 4) if smoke else (300, 100)
    model = calibrate(engine, model, seed + 1, n_cal)
    section = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.model_dump().items()}
    update_manifest_section(out, "acoustic", section)
    model = load_manifest(out).classifier("acoustic")  # round-trip through the real loader (verifies sha256)
    assert model is not None
    if not evaluate:
        return model
    sets = {
        "train machine, SNR 0..+6 dB": (seed + 11, TRAIN_ROTATION_HZ, (0.0, 6.0)),
        "train machine, SNR −6 dB": (seed + 12, TRAIN_ROTATION_HZ, (-6.0, -6.0)),
        "held-out machine, SNR 0..+6 dB": (seed + 13, HELDOUT_ROTATION_HZ, (0.0, 6.0)),
        "held-out machine, SNR −6 dB": (seed + 14, HELDOUT_ROTATION_HZ, (-6.0, -6.0)),
    }
    results = {}
    for name, (s, rot, snr) in sets.items():
        mel, labels = clip_set(s, per_class, rot, snr)
        results[name] = evaluate_set(engine, model, mel, labels)
        print(_row(name, results[name]))
    extra = {"recipe": recipe, "calibration_clips": n_cal, "per_class": per_class, "threads": threads,
             "stream_diff": streaming_check(engine, model, seed + 21), "speed": speed(engine, model),
             "false_alarms": stream_false_alarms(engine, model, range(seed + 30, seed + (31 if smoke else 36)), 20.0 if smoke else 600.0),
             "start_stop": start_stop_false_alarms(engine, model, range(seed + 40, seed + (41 if smoke else 46)), 30.0 if smoke else 360.0)}
    print(f"streaming max diff {extra['stream_diff']:.2e}; speed {extra['speed']}; false alarms steady "
          f"{extra['false_alarms']}, start/stop {extra['start_stop']}")
    plots(out, engine, model, results["train machine, SNR 0..+6 dB"]["confusion"])
    update_readme_section(out, "acoustic", model_card(model, results, extra))
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "engines")
    ap.add_argument("--seed", type=int, default=1234, help="the training seed (evaluation uses seed + k)")
    args = ap.parse_args(argv)
    manifest = load_manifest(args.out)
    if manifest.classifier("acoustic") is None:
        raise SystemExit(f"{args.out}/manifest.toml has no [acoustic] section")
    calibrate_and_evaluate(args.out, manifest.classifier("acoustic"), args.seed, False, True,
                           recipe={"epochs": "?", "train_clips": "?", "seed": args.seed, "crop": "?", "ort_torch_diff": float("nan"), "train_s": "?"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
