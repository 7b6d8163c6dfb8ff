#!/usr/bin/env python3
"""Train the visual defect CNN on synthetic surfaces, export it to ONNX and write its manifest.

    python -m training.visual.train --out engines            # the shipped model: CPU, 13 min on 2 cores with
                                                           # fast bfloat16 (AMX), ~1 h on 2 AVX2 cores
    python -m training.visual.train --arch residual --crops 64:12,96:10 --full-images 2500 --lr 0.006 --out /tmp/vis-quick
                                                           # < 20 min on 2 AVX2 cores, a little less accurate (engines/README.md)
    python -m training.visual.train --holdout-family cast --out /tmp/vis-holdout
                                                           # same recipe without cast (held-out style)
    python -m training.visual.train --smoke                  # < 1 min end-to-end check (temp dir)

Recipe (from scratch, seeded): surfaces of the three families (metal, painted, cast) plus
scikit-image CC0 textures (gravel, brick, grass) with procedurally drawn defects, the hard
striated and grainy families three times as often as the others (``--mix``).  The
held-out style experiment leaves one family out, so training/visual/evaluate.py can report how the
recipe does on a surface style it was not trained on.
The epochs train on crops around the defect (``--crops``, 128 px), then on whole images
(``--full-images``).  The front end's contrast channels are computed once per image while
the data is generated (training/visual/data.py), not at every step.  ``--arch residual`` makes the
stride-1 conv blocks add their input back, which trains in fewer steps (training/visual/net.py).
Loss = cross-entropy on the class (``--class-weight`` weighs some labels' errors more) + BCE on the
32x32 heatmap against the max-pooled defect mask; AdamW with a one-cycle schedule peaking at
``--lr``; with ``--ema`` the exported weights are their moving average over the steps, which
helps short schedules (engines/README.md lists the budget recipes measured).  Convolutions
run under bfloat16 autocast where the CPU has fast bfloat16 (AVX512-BF16/AMX; ``--precision``),
which halves the step time.  Each epoch prints its
wall and process CPU time, so the cost on idle cores can be estimated while the machine is shared.
BatchNorm is folded into the convolutions before export (opset 17, dynamic batch), ONNX
Runtime output is checked against PyTorch, and the decision threshold is set on held-out good
images so that at most ~1 % of good parts are rejected.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from edge_inspector import DEFAULT_ENGINES_DIR
from edge_inspector.manifest import VisualModel, sha256_of
from edge_inspector.synthetic.surfaces import FAMILIES, LABELS
from training.common.modelcard import update_manifest_section
from training.visual.data import (
    CELL, MEAN, SPLIT_TRAIN, SPLIT_VAL, STD, TRAIN_FAMILIES, crop_batch, family_cycle, generate, to_tensor,
    to_training_batch,
)
from training.visual.net import ARCHITECTURES, VisualNet, fold_batchnorm

DEFAULT_MIX = "metal:3,cast:3,painted:1,texture:1"  # the grainy/striated surfaces are the hard ones
DEFAULT_LR = 3e-3  # AdamW peak learning rate of the one-cycle schedule
DEFAULT_EMA = 0.0  # per-step decay of the weight average that is exported (0: the last weights)
DEFAULT_ARCH = "plain"  # conv blocks without (plain) or with (residual) the identity path
DEFAULT_CLASS_WEIGHT = ""  # every label's class loss weighs 1
DEFAULT_CROPS = "128:42"  # crop side:epochs; the 20-minute recipes are in engines/README.md


# ---------------------------------------------------------------------------------- training


def bf16_supported(device: str) -> bool:
    """Whether bfloat16 autocast is fast here: CUDA with bf16, or a CPU with AVX512-BF16/AMX."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def parse_crops(text: str) -> list[tuple[int, int]]:
    """``"64:12,96:10"`` -> [(64, 12), (96, 10)]: crop side and epochs of each phase, in order."""
    phases = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        side, _, epochs = part.partition(":")
        if not (side.strip().isdigit() and epochs.strip().isdigit()):
            raise ValueError(f"{part!r} is not SIDE:EPOCHS (e.g. 96:10)")
        if int(side) % CELL or not CELL <= int(side) <= 256:
            raise ValueError(f"crop side {side} is not a multiple of {CELL} from {CELL} to 256")
        phases.append((int(side), int(epochs)))
    if not phases:
        raise ValueError("no crop phase given")
    return phases


def parse_class_weights(text: str) -> list[float]:
    """``"scratch:2"`` -> the class-loss weight of each label in LABELS order (1 where not named)."""
    weights = dict.fromkeys(LABELS, 1.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = (piece.strip() for piece in part.partition(":"))
        if name not in weights:
            raise ValueError(f"unknown label {name!r}; expected some of {', '.join(LABELS)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"weight of {name!r} must be a number, got {value!r}") from None
        if not 0.0 < weights[name] <= 100.0:
            raise ValueError(f"weight of {name!r} must be in (0, 100], got {value}")
    return list(weights.values())


def train(model: VisualNet, data: tuple[np.ndarray, ...], crops: list[tuple[int, int]], batch: int, seed: int,
          device: str = "cpu", full_images: int = 20000, bf16: bool = False, lr: float = DEFAULT_LR,
          ema: float = DEFAULT_EMA, class_weights: list[float] | None = None) -> VisualNet:
    """Epochs on crops around the defects (``crops``: side, epochs, in order), then ``full_images``
    whole images (several passes when that exceeds the set).

    A crop costs about its share of a whole image's pixels, so crops show the network more
    defects per CPU second; phases of growing crops trade context for samples.  The whole-image
    passes let the class head see defects at their real share of a frame (its inputs include
    global averages).  The convolutions run in channels-last layout (oneDNN's direct kernels for it
    take a float32 step ~1.8x faster on 2 AVX2 cores) and, with ``bf16``, under bfloat16 autocast
    (weights, optimiser and losses stay float32): 2-2.7x faster steps on CPUs with AVX512-BF16,
    while on CPUs without it bfloat16 is emulated and ~17x slower.

    ``class_weights`` (one per label, in LABELS order) weigh the class loss (cross-entropy's
    ``weight``), then the per-sample losses are averaged over the batch; all 1 = unweighted.

    Returns the exponential moving average of the weights and BatchNorm statistics over the
    steps (``ema`` decay per step; 0 returns the last weights): averaging smooths out the noise
    of the last high-learning-rate steps, which a short schedule has no time to anneal away.
    """
    images, labels, cells, contrast = data
    model.to(device)
    layout = torch.channels_last
    model.to(memory_format=layout)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True) if ema else None
    phases = [(side, len(images)) for side, epochs in crops for _ in range(epochs)]
    for start in range(0, full_images, len(images)):  # more whole images than the set: several passes
        phases.append((images.shape[1], min(len(images), full_images - start)))
    steps = sum(math.ceil(n / batch) for _, n in phases)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    pos_weight = torch.tensor([4.0], device=device)
    weighted = class_weights is not None and any(w != 1.0 for w in class_weights)
    weight = torch.tensor(class_weights, device=device) if weighted else None
    for epoch, (size, count) in enumerate(phases):
        model.train()
        order = rng.permutation(len(images))[:count]
        bar = tqdm(range(0, len(order), batch), desc=f"epoch {epoch + 1}/{len(phases)} @{size}px", mininterval=20)
        total = correct = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for start in bar:
            idx = order[start : start + batch]
            x, t = to_training_batch(*crop_batch(images, contrast, cells, idx, size, rng), rng)
            x = x.to(device).contiguous(memory_format=layout)
            t, y = t.to(device), torch.from_numpy(labels[idx]).to(device)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
                logits, heat = model.logits_from_contrast(x)
            logits, heat = logits.float(), heat.float()
            class_loss = F.cross_entropy(logits, y, weight=weight, label_smoothing=0.02, reduction="none").mean()
            loss = class_loss + F.binary_cross_entropy_with_logits(
                heat[:, 0], t, pos_weight=pos_weight
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total += len(idx)
            correct += int((logits.argmax(1) == y).sum())
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / total:.3f}")
        # process CPU seconds / threads estimates the wall time on idle cores when the machine is shared
        print(f"epoch {epoch + 1} @{size}px: {len(bar)} steps, wall {time.perf_counter() - wall:.1f} s, "
              f"cpu {time.process_time() - cpu:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    final = averaged.module if averaged is not None else model
    return final.to("cpu").to(memory_format=torch.contiguous_format)


def export_onnx(model: VisualNet, path: Path, probe: torch.Tensor, metadata: dict[str, object] | None = None) -> float:
    """Export with a dynamic batch axis; return the max |ORT - torch| difference on ``probe``."""
    import onnxruntime as ort

    model = fold_batchnorm(model)
    with torch.no_grad():
        ref = [t.numpy() for t in model(probe)]
    torch.onnx.export(
        model, (probe[:1],), str(path), input_names=["image"], output_names=["probs", "heatmap"],
        dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}, "heatmap": {0: "batch"}},
        opset_version=17, do_constant_folding=True, dynamo=False,
    )
    if metadata:  # the training recipe travels inside the model file (ORT: custom_metadata_map)
        import onnx

        proto = onnx.load(str(path))
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=str(value))
        onnx.save(proto, str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["probs", "heatmap"], {"image": probe.numpy()})
    return float(max(np.abs(a - b).max() for a, b in zip(ref, got)))


def choose_threshold(scores_good: np.ndarray, false_reject: float = 0.01) -> float:
    """Smallest threshold rejecting at most ``false_reject`` of good parts, kept in [0.05, 0.95]."""
    q = float(np.quantile(scores_good, 1.0 - false_reject, method="higher"))
    return float(np.clip(np.nextafter(q, 1.0), 0.05, 0.95))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="engines directory (default: engines/)")
    ap.add_argument("--crops", default=DEFAULT_CROPS,
                    help="crop phases around the defects, SIDE:EPOCHS in order (sides multiples of 8)")
    ap.add_argument("--full-images", type=int, default=20000,
                    help="whole 256x256 images of the final passes, after the crops (0: none)")
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--val-size", type=int, default=2000,
                    help="validation images; the threshold is set on the ~30 %% of them that are good")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--arch", choices=ARCHITECTURES, default=DEFAULT_ARCH,
                    help="residual: the stride-1 conv blocks add their input back (trains in fewer steps)")
    ap.add_argument("--lr", type=float, default=DEFAULT_LR, help="peak learning rate (one-cycle schedule)")
    ap.add_argument("--ema", type=float, default=DEFAULT_EMA,
                    help="export the moving average of the weights with this per-step decay, e.g. 0.998 (0: last weights)")
    ap.add_argument("--class-weight", default=DEFAULT_CLASS_WEIGHT,
                    help="class-loss weights, LABEL:WEIGHT, e.g. scratch:2 (unnamed labels weigh 1)")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--workers", type=int, default=2, help="processes generating data")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    ap.add_argument("--device", default="cpu", help="torch device for training (export is on CPU)")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                    help="bf16 autocast where the processor has fast bfloat16 (auto), or always/never")
    ap.add_argument("--mix", default=DEFAULT_MIX,
                    help="how often each family occurs in training, e.g. metal:3,cast:3,painted:1,texture:1")
    ap.add_argument("--holdout-family", choices=[f for f in TRAIN_FAMILIES if f != "texture"], default=None,
                    help="leave this surface family out of training (held-out style experiment)")
    ap.add_argument("--smoke", action="store_true", help="tiny end-to-end run into a temp dir")
    ap.add_argument("--no-eval", action="store_true", help="skip training/visual/evaluate.py afterwards")
    args = ap.parse_args(argv)
    if args.smoke:
        args.crops, args.full_images, args.train_size, args.val_size, args.workers = "64:1,96:1", 32, 48, 40, 1
        args.out = args.out or Path(tempfile.mkdtemp(prefix="visual-smoke-"))
    out: Path = args.out or DEFAULT_ENGINES_DIR
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.time()

    try:
        families = family_cycle(args.mix, exclude=args.holdout_family)
    except ValueError as exc:
        print(f"error: --mix: {exc}", file=sys.stderr)
        return 2
    try:
        crops = parse_crops(args.crops)
    except ValueError as exc:
        print(f"error: --crops: {exc}", file=sys.stderr)
        return 2
    try:
        class_weights = parse_class_weights(args.class_weight)
    except ValueError as exc:
        print(f"error: --class-weight: {exc}", file=sys.stderr)
        return 2
    if not 0.0 <= args.ema < 1.0:
        print(f"error: --ema: {args.ema} is not a decay in [0, 1) (e.g. 0.998; 0 exports the last weights)", file=sys.stderr)
        return 2
    if not args.lr > 0.0:
        print(f"error: --lr: {args.lr} is not a positive learning rate", file=sys.stderr)
        return 2
    bf16 = args.precision == "bf16" or (args.precision == "auto" and bf16_supported(args.device))
    if args.holdout_family and out.resolve() == DEFAULT_ENGINES_DIR.resolve():
        print("error: --holdout-family trains an experiment model; give --out another directory", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    train_data = generate(args.seed, SPLIT_TRAIN, args.train_size, args.workers, "train data", families, with_contrast=True)
    # the threshold is set on the camera families only (texture is a training aid, never a product)
    val_families = tuple(f for f in FAMILIES if f != args.holdout_family)
    val_images, val_labels, _, _ = generate(args.seed, SPLIT_VAL, args.val_size, args.workers, "val data", val_families)
    model = VisualNet(arch=args.arch)
    model = train(model, train_data, crops, args.batch, args.seed, args.device, args.full_images, bf16, args.lr, args.ema,
                  class_weights)

    onnx_path = out / "visual_cnn.onnx"
    probe = to_tensor(val_images[:8])
    recipe = {
        "arch": args.arch, "crops": args.crops, "epochs": sum(e for _, e in crops), "full_images": args.full_images, "train_size": args.train_size, "val_size": args.val_size,
        "batch": args.batch, "lr": args.lr, "ema": args.ema, "class_weight": args.class_weight, "seed": args.seed, "train_minutes": round((time.time() - t0) / 60, 1),
        "families": "+".join(dict.fromkeys(families)), "mix": args.mix, "precision": "bf16" if bf16 else "fp32", "holdout_family": args.holdout_family or "", "torch": torch.__version__, "device": args.device,
    }
    diff = export_onnx(model, onnx_path, probe, metadata=recipe)
    print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB); max |ORT - torch| = {diff:.2e}")
    if diff > 1e-4:
        print(f"error: ONNX Runtime output differs from PyTorch by {diff:.2e} (> 1e-4)", file=sys.stderr)
        return 1

    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probs = np.concatenate([sess.run(["probs"], {"image": to_tensor(val_images[i : i + 32]).numpy()})[0]
                            for i in range(0, len(val_images), 32)])
    scores = 1.0 - probs[:, 0]
    threshold = choose_threshold(scores[val_labels == 0])
    val_acc = float((probs.argmax(1) == val_labels).mean())
    print(f"validation: accuracy {val_acc:.3f}, threshold {threshold:.4f} "
          f"({int((val_labels == 0).sum())} good images)")

    section = VisualModel(
        file=onnx_path.name, sha256=sha256_of(onnx_path), mean=MEAN, std=STD, labels=LABELS,
        threshold=round(threshold, 6), heatmap_threshold=0.5,
    ).model_dump(mode="json")
    update_manifest_section(out, "visual", section)
    print(f"wrote {out / 'manifest.toml'} [visual]; recipe {recipe}")
    if not args.no_eval:
        from training.visual.evaluate import evaluate

        evaluate(out, smoke=args.smoke)
    print(f"finished in {(time.time() - t0) / 60:.1f} min (data, training, export{'' if args.no_eval else ', evaluation'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
