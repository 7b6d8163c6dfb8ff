#!/usr/bin/env python3
"""Train the streaming acoustic anomaly GRU on synthetic machine sounds and export it to ONNX.

Recipe: 4 s clips from ``edge_inspector.synthetic.machines`` (rotation 15-40 Hz; faults at
-6..+6 dB SNR, over the whole clip or a random sub-interval; machine start/stop, breaks, silence
and level changes over a noise floor, all labelled normal; random low-/high-pass channel responses), log-mel features from the SAME
``edge_inspector.features.logmel`` the daemon uses, per-frame cross-entropy (frame label = the
fault class inside the fault interval, else ``normal``; the first frames after a reset are not
scored), AdamW + cosine schedule.  The network is per-frame layers (no temporal context) then a
GRU, so a stream can be processed in chunks with only the GRU state carried.

Outputs in ``--out``: ``acoustic_gru.onnx`` (opset 17, dynamic batch and time), the ``[acoustic]``
section of ``manifest.toml``; then ``tools/eval_acoustic.py`` evaluates through ONNX Runtime on
unseen seeds, writes the PNGs and the model card section of ``README.md``.

    python3 tools/train_acoustic.py --out engines            # full run (~5 min on a shared CPU)
    python3 tools/train_acoustic.py --smoke                   # < 60 s into a temp dir
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.signal import butter, sosfilt
from torch import nn
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from edge_inspector.features import LogMelParams, logmel  # noqa: E402
from edge_inspector.manifest import AcousticModel, sha256_of  # noqa: E402
from edge_inspector.synthetic.machines import ENVELOPES, LABELS, TRAIN_ROTATION_HZ, make_clip  # noqa: E402

CLIP_S = 4.0
LOSS_SKIP_FRAMES = 30  # first 0.3 s after a reset carry no loss: the GRU has heard too little


@dataclass
class Dataset:
    mel: np.ndarray  # [N, T, n_mels] raw log-mel
    frame_labels: np.ndarray  # [N, T] int64
    labels: np.ndarray  # [N] clip label index
    snr: np.ndarray  # [N] (nan for normal)
    rotation: np.ndarray  # [N]


def frame_labels_for(label: int, start_s: float, end_s: float, t: int, params: LogMelParams) -> np.ndarray:
    """Frame k is labelled with the fault when its window centre lies in [start, end)."""
    centres = (np.arange(t) * params.hop_length + params.win_length / 2) / params.sample_rate
    out = np.zeros(t, dtype=np.int64)
    if label:
        out[(centres >= start_s) & (centres < end_s)] = label
    return out


def channel_response(rng: np.random.Generator, samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """A random microphone/ADC/resampler response for half the clips: a low-pass (Butterworth,
    order 2-8, 4.5-7.8 kHz: every resampler and anti-alias filter rolls off the top mel bands)
    and, a third of the time, a high-pass at 30-150 Hz.  Without it, a sound server's resampler
    alone moves the top bands by several nats and the model hears a fault in a normal machine."""
    if rng.random() >= 0.5:
        return samples
    x = sosfilt(butter(int(rng.integers(2, 9)), rng.uniform(4500.0, 7800.0), fs=sample_rate, output="sos"), samples)
    if rng.random() < 1 / 3:
        x = sosfilt(butter(2, rng.uniform(30.0, 150.0), btype="highpass", fs=sample_rate, output="sos"), x)
    return x.astype(np.float32)


def make_dataset(
    seed: int,
    n: int,
    params: LogMelParams,
    rotation: tuple[float, float] = TRAIN_ROTATION_HZ,
    snr: tuple[float, float] | None = None,
    partial: float = 0.5,
    labels: tuple[str, ...] = LABELS,
    desc: str = "data",
    envelopes: bool = True,
) -> Dataset:
    """``n`` clips, labels cycling through ``labels``; ``partial`` of faults cover a sub-interval.

    With ``envelopes``, the line's life is in the data: 70 % of normal clips have the machine
    starting, stopping, pausing, silent or changing level over a microphone noise floor, 30 % of
    fault clips start/stop/change level around the fault, half of all clips get a
    -10..+4 dB gain and half a random :func:`channel_response`."""
    rng = np.random.default_rng(seed)
    t = params.n_frames(int(CLIP_S * params.sample_rate))
    mel = np.zeros((n, t, params.n_mels), dtype=np.float32)
    fl = np.zeros((n, t), dtype=np.int64)
    lab = np.zeros(n, dtype=np.int64)
    snrs = np.full(n, np.nan)
    rots = np.zeros(n)
    for i in tqdm(range(n), desc=desc, leave=False, mininterval=2.0):
        label = labels[i % len(labels)]
        start, end = 0.0, None
        if label != "normal" and rng.random() < partial:
            start = float(rng.uniform(0.0, CLIP_S - 0.8))
            end = float(min(CLIP_S, start + rng.uniform(0.8, 3.5)))
        kind, gain = None, 0.0
        if envelopes:
            if label == "normal" and rng.random() < 0.7:
                kind = str(rng.choice(ENVELOPES[1:]))
            elif label != "normal" and rng.random() < 0.3:
                kind = str(rng.choice(["start", "stop", "level"]))
            gain = float(rng.uniform(-10.0, 4.0)) if rng.random() < 0.5 else 0.0
        clip = make_clip(
            rng,
            CLIP_S,
            label=label,
            snr_db=None if snr is None else float(rng.uniform(*snr)),
            rotation_hz=float(rng.uniform(*rotation)),
            fault_start_s=start,
            fault_end_s=end,
            envelope_kind=kind,
            gain_db=gain,
        )
        samples = channel_response(rng, clip.samples, params.sample_rate) if envelopes else clip.samples
        mel[i] = logmel(samples, params)
        lab[i] = LABELS.index(label)
        fl[i] = frame_labels_for(lab[i], clip.fault_start_s, clip.fault_end_s, t, params)
        snrs[i] = np.nan if clip.snr_db is None else clip.snr_db
        rots[i] = clip.rotation_hz
    return Dataset(mel, fl, lab, snrs, rots)


class AcousticGRU(nn.Module):
    """Per-frame MLP front-end (no temporal context), GRU, per-frame linear head."""

    def __init__(self, n_mels: int, hidden: int, layers: int, n_classes: int) -> None:
        super().__init__()
        self.front = nn.Sequential(nn.Linear(n_mels, 96), nn.ReLU(), nn.Linear(96, hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, mel: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, h_out = self.gru(self.front(mel), h)
        return self.head(y), h_out


class Exported(nn.Module):
    """What ships: softmax probabilities and the carried state."""

    def __init__(self, net: AcousticGRU) -> None:
        super().__init__()
        self.net = net

    def forward(self, mel: torch.Tensor, h_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, h_out = self.net(mel, h_in)
        return torch.softmax(logits, dim=-1), h_out


def train(net: AcousticGRU, data: Dataset, mean: float, std: float, epochs: int, batch: int, seed: int, crop: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy((data.mel - mean) / std)
    y_all = torch.from_numpy(data.frame_labels)
    n, t = data.frame_labels.shape
    steps = epochs * math.ceil(n / batch)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    loss_fn = nn.CrossEntropyLoss()
    h0 = torch.zeros(net.gru.num_layers, batch, net.gru.hidden_size)
    bar = tqdm(total=steps, desc="train", mininterval=5.0)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(n, generator=g)
        total, count, correct, frames = 0.0, 0, 0, 0
        for b in range(0, n, batch):
            idx = order[b : b + batch]
            # Random crops: state resets at arbitrary points relative to fault on/offsets.
            s = int(torch.randint(0, t - crop + 1, (1,), generator=g))
            x, y = x_all[idx, s : s + crop], y_all[idx, s : s + crop]
            gain = torch.randn(len(idx), 1, 1, generator=g) * (0.5 / std)  # +-0.5 nat level jitter
            logits, _ = net(x + gain, h0[:, : len(idx)])
            lg, yy = logits[:, LOSS_SKIP_FRAMES:], y[:, LOSS_SKIP_FRAMES:]
            loss = loss_fn(lg.reshape(-1, lg.shape[-1]), yy.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            count += len(idx)
            correct += int((lg.argmax(-1) == yy).sum())
            frames += yy.numel()
            bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.3f}", frame_acc=f"{correct / frames:.3f}")
        tqdm.write(f"epoch {epoch + 1}/{epochs}: loss {total / count:.4f} frame accuracy {correct / frames:.4f}")
    bar.close()


def export_onnx(net: AcousticGRU, path: Path, n_mels: int) -> float:
    """Export the chunk model (opset 17, dynamic N and T); return max |ORT - torch|."""
    import onnxruntime as ort

    net.eval()
    model = Exported(net).eval()
    layers, hidden = net.gru.num_layers, net.gru.hidden_size
    mel = torch.randn(2, 50, n_mels)
    h = torch.zeros(layers, 2, hidden)
    torch.onnx.export(
        model,
        (mel, h),
        str(path),
        input_names=["mel", "h_in"],
        output_names=["probs", "h_out"],
        dynamic_axes={"mel": {0: "N", 1: "T"}, "h_in": {1: "N"}, "probs": {0: "N", 1: "T"}, "h_out": {1: "N"}},
        opset_version=17,
        dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    rng = np.random.default_rng(0)
    for n, t in ((1, 50), (3, 123), (2, 7)):
        m = rng.standard_normal((n, t, n_mels)).astype(np.float32)
        hh = (0.5 * rng.standard_normal((layers, n, hidden))).astype(np.float32)
        with torch.no_grad():
            p_t, h_t = model(torch.from_numpy(m), torch.from_numpy(hh))
        p_o, h_o = sess.run(["probs", "h_out"], {"mel": m, "h_in": hh})
        worst = max(worst, float(np.abs(p_o - p_t.numpy()).max()), float(np.abs(h_o - h_t.numpy()).max()))
    if worst > 1e-4:
        raise SystemExit(f"ONNX Runtime differs from torch by {worst:.2e} (> 1e-4)")
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="engines directory (default: engines/)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--train-size", type=int, default=3200)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--crop", type=int, default=250, help="training sequence length in frames")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared machine)")
    ap.add_argument("--cache", type=Path, default=None, help="directory to keep/reuse generated training features")
    ap.add_argument("--smoke", action="store_true", help="tiny end-to-end run into a temp dir")
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluation afterwards")
    args = ap.parse_args(argv)
    if args.smoke:
        args.epochs, args.train_size, args.crop = 1, 48, 200
        if args.out is None:
            args.out = Path(tempfile.mkdtemp(prefix="acoustic-smoke-"))
    out = Path(args.out or ROOT / "engines")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # decaying GRU gradients otherwise hit slow denormal arithmetic
    params = LogMelParams()
    t0 = time.time()

    cache = args.cache / f"acoustic-train-{args.seed}-{args.train_size}.npz" if args.cache else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            data = Dataset(**{k: z[k] for k in Dataset.__dataclass_fields__})
    else:
        data = make_dataset(args.seed, args.train_size, params, desc="train data")
        if cache is not None:
            args.cache.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **data.__dict__)
    mean, std = float(data.mel.mean()), float(data.mel.std())
    print(f"train data: {args.train_size} clips x {data.mel.shape[1]} frames in {time.time() - t0:.0f}s")
    net = AcousticGRU(params.n_mels, args.hidden, args.layers, len(LABELS))
    train(net, data, mean, std, args.epochs, args.batch, args.seed, min(args.crop, data.mel.shape[1]))
    del data

    onnx_path = out / "acoustic_gru.onnx"
    diff = export_onnx(net, onnx_path, params.n_mels)
    print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB); max |ORT - torch| = {diff:.1e}")
    from eval_acoustic import calibrate_and_evaluate  # tools/eval_acoustic.py

    section = AcousticModel(
        file=onnx_path.name,
        sha256=sha256_of(onnx_path),
        **{k: getattr(params, k) for k in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "fmin", "fmax")},
        feature_mean=round(mean, 6),
        feature_std=round(std, 6),
        hidden_size=args.hidden,
        num_layers=args.layers,
        chunk_frames=50,
        labels=LABELS,
        threshold=0.5,
        onset=0.5,
        offset=0.3,
    )
    calibrate_and_evaluate(
        out, section, seed=args.seed, smoke=args.smoke, evaluate=not args.no_eval,
        recipe={"epochs": args.epochs, "train_clips": args.train_size, "seed": args.seed,
                "crop": args.crop, "ort_torch_diff": diff, "train_s": round(time.time() - t0)},
    )
    print(f"done in {time.time() - t0:.0f}s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
