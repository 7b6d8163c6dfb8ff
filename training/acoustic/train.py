"""Train the streaming acoustic classifier (GRU) and export it to ONNX: ``python -m training.acoustic.train``.

Recipe: 4 s clips (:mod:`training.acoustic.data`): the synthetic machines (rotation 15-40 Hz) with
their starts, stops, silences, level changes and channel responses, and a share of development
plant machines living their normal life; faults ``bearing``/``knock``/``squeal`` over the whole
clip or a part, at -6..+6 dB SNR or down to 0 dB audibility (barely audible); half the clips hear
harmless plant sounds of the training nuisance kinds (hiss, puffs, clatter, speech, beeps, hum,
level and channel changes), labelled normal.  Log-mel features from the SAME
``edge_inspector.features.logmel`` the daemon uses, per-frame cross-entropy (the first frames after
a reset carry no loss), AdamW + one-cycle schedule.  Then :mod:`training.acoustic.evaluate`
calibrates the thresholds on held-out normal clips, evaluates (held-out nuisance kinds, evaluation
plant machines, SNR and audibility) and writes the model card.

    python -m training.acoustic.train --out engines     # the shipped recipe
    python -m training.acoustic.train --smoke           # < 60 s into a temp dir
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edge_inspector.features import LogMelParams
from edge_inspector.manifest import AcousticModel, sha256_of
from edge_inspector.synthetic.machines import LABELS
from training.acoustic.data import Dataset, make_dataset
from training.acoustic.evaluate import RECIPE, calibrate_and_evaluate
from training.acoustic.net import AcousticGRU, export_onnx
from training.acoustic.nuisances import TRAIN_KINDS

ROOT = Path(__file__).resolve().parents[2]
LOSS_SKIP_FRAMES = 30  # first 0.3 s after a reset carry no loss: the GRU has heard too little


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


def cpu_name() -> str:
    """The CPU model and how many cores this process may use (the card says where it took how long)."""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{len(os.sched_getaffinity(0))} cores of {model}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="engines directory (default: engines/)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--train-size", type=int, default=6000)
    ap.add_argument("--plant", type=float, default=0.3, help="share of clips on development plant machines")
    ap.add_argument("--audible", type=float, default=0.5, help="share of faults set by audibility (0..12 dB)")
    ap.add_argument("--nuisance-rate", type=float, default=0.5, help="share of clips with training nuisances")
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

    cache = (args.cache / f"acoustic-train-{args.seed}-{args.train_size}-{args.plant}-{args.audible}-{args.nuisance_rate}.npz"
             if args.cache else None)
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            fields = {k: z[k] for k in Dataset.__dataclass_fields__ if k in z.files}
            data = Dataset(**{"nuisance": np.full(len(fields["labels"]), ""), **fields})  # not cached: only for cards
    else:
        data = make_dataset(args.seed, args.train_size, params, desc="train data", nuisances=TRAIN_KINDS,
                            nuisance_rate=args.nuisance_rate, plant=args.plant, audible=args.audible)
        if cache is not None:
            args.cache.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **{k: v for k, v in data.__dict__.items() if k != "nuisance"})
    mean, std = float(data.mel.mean()), float(data.mel.std())
    data_s = time.time() - t0
    print(f"train data: {args.train_size} clips x {data.mel.shape[1]} frames in {data_s:.0f}s")
    net = AcousticGRU(params.n_mels, args.hidden, args.layers, len(LABELS))
    train(net, data, mean, std, args.epochs, args.batch, args.seed, min(args.crop, data.mel.shape[1]))
    fit_s = time.time() - t0 - data_s
    del data

    onnx_path = out / "acoustic_gru.onnx"
    diff = export_onnx(net, onnx_path, params.n_mels)
    print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB); max |ORT - torch| = {diff:.1e}")
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
    recipe = {"epochs": args.epochs, "train_clips": args.train_size, "seed": args.seed, "plant": args.plant,
              "audible": args.audible, "nuisance_rate": args.nuisance_rate, "crop": args.crop, "ort_torch_diff": diff,
              "data_s": round(data_s), "fit_s": round(fit_s), "train_s": round(time.time() - t0), "cpu": cpu_name()}
    (out / RECIPE).write_text(json.dumps(recipe, indent=1) + "\n")
    calibrate_and_evaluate(out, section, seed=args.seed, smoke=args.smoke, evaluate=not args.no_eval, recipe=recipe)
    print(f"done in {time.time() - t0:.0f}s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
