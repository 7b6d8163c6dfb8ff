"""The acoustic classifier's model card: text, tables and pictures from the evaluation's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_inspector.features import LogMelParams, logmel
from edge_inspector.inspectors import acoustic_model as am
from edge_inspector.manifest import AcousticModel
from edge_inspector.synthetic.machines import HELDOUT_ROTATION_HZ, LABELS, TRAIN_ROTATION_HZ, make_clip
from training.acoustic.nuisances import FRESH_KINDS, HELDOUT_KINDS, TRAIN_KINDS


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
    score = np.concatenate([runner.push(clip.samples[a : a + 1600]).scores for a in range(0, clip.samples.size, 1600)])
    t = np.arange(mel.shape[0]) * model.hop_length / model.sample_rate
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.imshow(mel.T, origin="lower", aspect="auto", extent=(0, t[-1], 0, model.n_mels), cmap="magma")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    ax2 = ax.twinx()
    ax2.plot(t, score, color="cyan", lw=1, label="frame score")
    ax2.plot(t, am.smoothed(score, model), color="lime", lw=1.5, label="smoothed")
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
    return (f"| {name} | {r['auroc']:.3f} | {100 * r['fpr']:.1f} % | {100 * r['detect']:.1f} % | {r['accuracy']:.3f} | {pc} |")


def _tag_rows(r: dict[str, Any]) -> str:
    return "\n".join(f"| {k} | {v['n']} | {100 * v['flagged']:.1f} % | {v['auroc']:.3f} |" for k, v in r["per_tag"].items())


def _snr_rows(r: dict[str, Any], key: str = "per_snr") -> str:
    return "\n".join(f"| {k} | {v.get('n', '')} | {v['auroc']:.3f} | {100 * v['detect']:.1f} % |" for k, v in r[key].items())


def _fresh(r: dict[str, Any] | None) -> str:
    if r is None:
        return ""
    return f"""
*Fresh held-out nuisance kinds* ({", ".join(f"`{k}`" for k in FRESH_KINDS)}): a second held-out set, written after this
model was trained and never used to train or choose anything (the first set's kinds have been looked at):

| nuisance kind | healthy clips | flagged | AUROC |
|---|---|---|---|
{_tag_rows(r)}
"""


def model_card(model: AcousticModel, results: dict[str, dict[str, Any]], extra: dict[str, Any]) -> str:
    rec, sp = extra["recipe"], extra["speed"]
    rows = "\n".join(_row(k, v) for k, v in results.items())
    nuis = results["held-out nuisances, SNR −6…+6 dB"]
    fresh = results.get("fresh held-out nuisances, SNR −6…+6 dB")
    aud = results["faults by audibility"]
    plant = results["evaluation plant machines, SNR −6…+6 dB"]
    fa, ss, sparse = extra["false_alarms"], extra["start_stop"], extra["sparse_episodes"]
    return f"""## acoustic_gru — streaming machine-fault classifier

`acoustic_gru.onnx` (opset 17): inputs `mel` [N, T, {model.n_mels}] (normalised log-mel, T dynamic) and
`h_in` [{model.num_layers}, N, {model.hidden_size}]; outputs `probs` [N, T, {len(model.labels)}] (per-frame softmax over
{", ".join(f"`{x}`" for x in model.labels)}) and `h_out`. Per-frame MLP (64→96→{model.hidden_size}) → {model.num_layers}-layer GRU
(hidden {model.hidden_size}) → linear head; no layer looks across frames except the GRU, so streaming only carries `h`.
It names the faults it was trained on; a machine's other faults are the job of the model learnt on the line
(`edge-inspector learn acoustic`, card below), which runs beside it.

**Features** (`edge_inspector/features.py`, shared by training, daemon and `inspect`): {model.sample_rate} Hz mono,
n_fft {model.n_fft}, Hann window {model.win_length}, hop {model.hop_length} (10 ms), {model.n_mels} HTK mel bands
{model.fmin:g}–{model.fmax:g} Hz, `log(mel_power + 1e-6)`, no centre padding; normalised with scalar mean
{model.feature_mean:.4f} / std {model.feature_std:.4f}. WAV input at any rate/channel count is downmixed and resampled.

**Data** (`training/acoustic/data.py`): 4 s clips. Machines: the synthetic machines of
`edge_inspector/synthetic/machines.py` (harmonic hum at 15–40 Hz rotation, gear mesh, mains hum, pink/white noise;
starts, stops, pauses, silence, level changes over a microphone floor; −10…+4 dB gains; random channel responses) and,
for {100 * rec.get('plant', 0):.0f} % of clips, the development plant machines of `training/acoustic/plant.py`
(motor, mixer, conveyor) living their normal life. Faults `bearing`, `knock`, `squeal` over the whole clip or a part,
at −6…+6 dB SNR or, for {100 * rec.get('audible', 0):.0f} % of them, at 0–12 dB *audibility* (`training/acoustic/audibility.py`:
the fault's loudest mel band in its loudest 100 ms against the background there; 0 dB is barely audible).
{100 * rec.get('nuisance_rate', 0):.0f} % of clips, healthy or not, also hear one or two harmless plant sounds, labelled normal:
{", ".join(f"`{k}`" for k in TRAIN_KINDS)} (`training/acoustic/nuisances.py`, −10…+6 dB against the machine).

**Recipe**: `python -m training.acoustic.train --out engines` (seed {rec.get('seed')}, {rec.get('train_clips')} clips,
{rec.get('epochs')} epochs, random {rec.get('crop')}-frame crops from a zero state, per-frame cross-entropy skipping the first
0.3 s, AdamW one-cycle, ±0.5 level jitter): {rec.get('data_s', '?')} s of data generation and {rec.get('fit_s', '?')} s of training
on {rec.get('cpu', '2 shared CPU cores')} ({rec.get('train_s', '?')} s in all). ONNX Runtime vs PyTorch max difference
{float(rec.get('ort_torch_diff', float('nan'))):.1e}. Re-evaluate: `python -m training.acoustic.evaluate --out engines`
({extra['eval_s']} s).

**Scores**: frame score = 1 − p(normal). Clip score (`acoustic_model.clip_score`) = mean of the top decile of
frame scores after the {model.warmup_s:g} s warm-up; the clip label is the fault with the highest mean probability
over those frames when the score ≥ threshold. Thresholds from {extra['calibration_clips']} held-out HEALTHY clips with
training nuisances: `threshold` {model.threshold:.3f} (99th percentile + 0.05); streaming `onset` {model.onset:.3f},
`offset` {model.offset:.3f} on the {model.smoothing_s:g} s-smoothed frame score; dips shorter than {model.hold_s:g} s do not end an
episode; episodes shorter than {model.min_duration_s:g} s are dropped.

**Evaluation** (ONNX Runtime, seeds and kinds never used in training; detect / healthy flagged at `threshold`):

| set | AUROC | healthy flagged | faults detected | accuracy | per-class accuracy ({" / ".join(LABELS)}) |
|---|---|---|---|---|---|
{rows}

*Held-out nuisance kinds* (never in training or calibration: {", ".join(f"`{k}`" for k in HELDOUT_KINDS)}); each healthy
clip hears one, at −10…+6 dB; AUROC of those healthy clips against every fault clip of the set:

| nuisance kind | healthy clips | flagged | AUROC |
|---|---|---|---|
{_tag_rows(nuis)}

Faults of that set by SNR (against all its healthy clips):

| SNR | faults | AUROC | detected |
|---|---|---|---|
{_snr_rows(nuis)}
{_fresh(fresh)}
*Faults by audibility* (no nuisance; healthy clips of the same machines):

| audibility | | AUROC | detected |
|---|---|---|---|
{_snr_rows(aud, "per_level")}

*Evaluation plant machines* (fan, pump, compressor, gearbox: kinds of machine never heard; the faults are this
model's three at −6…+6 dB): healthy clips flagged per machine kind:

| machine | healthy clips | flagged | AUROC |
|---|---|---|---|
{_tag_rows(plant)}

**Streaming** (the daemon's inspector, 0.1 s chunks): fault-free synthetic machines, {fa[1]:.2f} h: {fa[0]} false episode(s);
machines starting and stopping ({ss[2]} starts/stops, {ss[1]:.2f} h): {ss[0]} false episode(s). A knock every 0.5–2 s for 20 s at
+6 dB: episodes per case {sparse} (one fault should be one episode). Streaming vs whole clip: max frame-score
difference {extra['stream_diff']:.1e}. Speed (ONNX Runtime CPU, {extra['threads']} threads): {sp['chunk_ms']:.3f} ms per
{model.chunk_frames}-frame chunk (p95 {sp['chunk_p95_ms']:.3f} ms); features + GRU {sp['per_audio_s_ms']:.2f} ms per second of audio
(real-time factor {sp['rtf']:.4f}).

![confusion](acoustic_confusion.png) ![example](acoustic_example.png)

**Limitations**: trained on synthetic sounds only; the three fault types are idealised. On kinds of machine it
never heard it flags healthy sound (table above): on a real line run it with a model learnt from that machine
(`edge-inspector learn acoustic`), which decides what is normal there, and measure with `replay --labels`. The
held-out nuisance kinds are still synthetic and of the families it was trained on. Harmless sounds that carry a
fault's signature are flagged (fresh held-out table): a leak's whistle is a narrow band at 2.5–6 kHz where the
`squeal` lives, a slam's rattle is a cluster of `knock`s, a fast limiter distorts the machine's hum into harmonics;
a classifier of three idealised faults cannot tell them apart from the sound alone. Where such sounds are part of
the line's normal life, raise the microphone's `onset` (configuration) and rely on the model learnt there, which
hears them in its recording. Machine rotation beyond {TRAIN_ROTATION_HZ[1]:g} Hz was held out
({HELDOUT_ROTATION_HZ[0]:g}–{HELDOUT_ROTATION_HZ[1]:g} Hz row).
"""
