#!/usr/bin/env python3
"""Train the visual defect CNN on synthetic surfaces, export it to ONNX and write its manifest.

    python3 tools/train_visual.py --out engines            # the shipped model: CPU, ~1 h on 2 AVX2 cores
    python3 tools/train_visual.py --crops 64:12,96:10 --full-images 2500 --out /tmp/vis-quick
                                                           # 17 min there, less accurate (engines/README.md)
    python3 tools/train_visual.py --holdout-family cast --out /tmp/vis-holdout
                                                           # same recipe without cast (held-out style)
    python3 tools/train_visual.py --smoke                  # < 1 min end-to-end check (temp dir)

Recipe (from scratch, seeded): surfaces of the three families (metal, painted, cast) plus
scikit-image CC0 textures (gravel, brick, grass) with procedurally drawn defects, the hard
striated and grainy families three times as often as the others (``--mix``).  The
held-out style experiment leaves one family out, so tools/eval_visual.py can report how the
recipe does on a surface style it was not trained on.
The epochs train on crops around the defect (``--crops``, 128 px), then on whole images
(``--full-images``).  The front end's contrast channels are computed once per image while
the data is generated, not at every step.  Loss = cross-entropy on the class + BCE on the
32x32 heatmap against the max-pooled defect mask.  Convolutions run under bfloat16 autocast where the CPU has fast
bfloat16 (AVX512-BF16/AMX; ``--precision``), which halves the step time.  Each epoch prints its
wall and process CPU time, so the cost on idle cores can be estimated while the machine is shared.
BatchNorm is folded into the convolutions before export (opset 17, dynamic batch), ONNX
Runtime output is checked against PyTorch, and the decision threshold is set on held-out good
images so that at most ~1 % of good parts are rejected.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edge_inspector.manifest import VisualModel, sha256_of  # noqa: E402
from edge_inspector.synthetic.surfaces import FAMILIES, LABELS, compose, make_surface, scene_from_image  # noqa: E402
from _visual_net import LocalContrast, VisualNet, fold_batchnorm  # noqa: E402

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
TRAIN_FAMILIES = ("metal", "painted", "cast", "texture")  # every family the demo camera shows
SPLIT_TRAIN, SPLIT_VAL = 1, 2  # SeedSequence split ids; tools/eval_visual.py uses 3 and 4
OK_FRACTION = 0.3
DEFAULT_MIX = "metal:3,cast:3,painted:1,texture:1"  # the grainy/striated surfaces are the hard ones
DEFAULT_CROPS = "128:42"  # crop side:epochs; 64:12,96:10 with --full-images 2500 is the 17-minute recipe
CELL = 8  # heatmap cell size in pixels (256 / 32)


# -------------------------------------------------------------------------------------- data

_BANK: list[np.ndarray] = []


def _texture_bank() -> list[np.ndarray]:
    """scikit-image's CC0 grey textures (training only: never needed at runtime)."""
    if not _BANK:
        from skimage import data

        _BANK.extend(getattr(data, name)() for name in ("gravel", "brick", "grass"))
    return _BANK


def _texture_scene(rng: np.random.Generator):
    """A random crop of a scikit-image texture, rotated, contrast-scaled and tinted."""
    tex = _texture_bank()[int(rng.integers(len(_texture_bank())))].astype(np.float32)
    side = int(rng.integers(160, 512))
    y, x = rng.integers(0, 512 - side + 1, 2)
    crop = np.rot90(tex[y : y + side, x : x + side], int(rng.integers(4)))
    crop = (crop - crop.mean()) * rng.uniform(0.2, 0.8) + rng.uniform(80, 180)
    tint = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return scene_from_image(rng, np.clip(crop[..., None] * tint, 0, 255))


def family_cycle(mix: str, exclude: str | None = None) -> tuple[str, ...]:
    """``"metal:3,cast:1"`` -> ("metal", "metal", "metal", "cast"): sample ``i`` takes entry ``i % len``."""
    cycle: list[str] = []
    for part in filter(None, (p.strip() for p in mix.split(","))):
        name, _, weight = part.partition(":")
        if name not in TRAIN_FAMILIES:
            raise ValueError(f"unknown family {name!r}; expected some of {', '.join(TRAIN_FAMILIES)}")
        if not weight.strip().isdigit():
            raise ValueError(f"weight of {name!r} must be a whole number, got {weight!r}")
        if name != exclude:
            cycle += [name] * int(weight)
    if not cycle:
        raise ValueError(f"no family left to train on in {mix!r}")
    return tuple(cycle)


def _lookup_tables() -> np.ndarray:
    """(3, 256) float32: uint8 value -> normalised value of the R, G and B input channels."""
    values = np.arange(256, dtype=np.float32) / 255.0
    return np.stack([(values - m) / s for m, s in zip(MEAN, STD)]).astype(np.float32)


_LUT = _lookup_tables()


def _rgb_into(out: np.ndarray, images_bgr: np.ndarray) -> np.ndarray:
    """Write the normalised RGB of BGR uint8 pixels (any strides, ...xHxWx3) into the first three
    channels of the float32 ``out`` (...xHxWxC): one table look-up per channel; returns ``out``."""
    for c in range(3):  # RGB input channel c comes from BGR channel 2 - c
        np.take(_LUT[c], images_bgr[..., 2 - c], out=out[..., c])
    return out


def _box_mean(plane: np.ndarray, size: int) -> np.ndarray:
    """Mean over the part of a ``size`` x ``size`` box inside the image (2-D float32)."""
    kw = dict(ksize=(size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return cv2.boxFilter(plane, -1, **kw) / cv2.boxFilter(np.ones_like(plane), -1, **kw)


def contrast_of(image_bgr: np.ndarray, front: LocalContrast = LocalContrast()) -> np.ndarray:
    """The front end's contrast channels of one whole image, HxWx3 float16, computed with OpenCV.

    Computed once per image while the data is generated, instead of once per step (the front
    end has no weights to learn; 2 ms here vs ~6 ms in PyTorch), and on the whole frame, as at run
    time, so a crop holds exactly what the daemon's network sees there.  Same definition as
    :class:`LocalContrast` (tests compare the two): 2x2 means, a box mean over the part
    inside the image, bilinear upsampling (OpenCV's and PyTorch's agree on the half-pixel grid).
    """
    h, w = image_bgr.shape[:2]
    x = _rgb_into(np.empty(image_bgr.shape, np.float32), image_bgr)
    half, full, k = (w // 2, h // 2), (w, h), front.window
    small = cv2.resize(x, half, interpolation=cv2.INTER_AREA)
    mean = np.dstack([_box_mean(small[..., c], k) for c in range(3)])
    centred = x - cv2.resize(mean, full, interpolation=cv2.INTER_LINEAR)
    energy = cv2.resize(centred * centred, half, interpolation=cv2.INTER_AREA).mean(axis=2)
    scale = cv2.resize(1.0 / np.sqrt(_box_mean(energy, k) + front.floor**2), full, interpolation=cv2.INTER_LINEAR)
    return (centred * scale[..., None]).astype(np.float16)


def generate_one(args: tuple[int, int, int, tuple[str, ...], bool]) -> tuple[np.ndarray, int, np.ndarray, np.ndarray | None]:
    """Sample ``index`` of split ``split``: (image BGR uint8, label index, 32x32 cell mask, and
    the front end's contrast channels when ``with_contrast``)."""
    seed, split, index, families, with_contrast = args
    rng = np.random.default_rng([seed, split, index])
    label = "ok" if rng.random() < OK_FRACTION else str(rng.choice(LABELS[1:]))
    family = families[index % len(families)]
    if family == "texture":
        sample = compose(rng, _texture_scene(rng), label, family)
    else:
        sample = make_surface(rng, family, label)
    cells = sample.mask.reshape(32, CELL, 32, CELL).max(axis=(1, 3))
    return sample.image, LABELS.index(label), cells, contrast_of(sample.image) if with_contrast else None


def generate(seed: int, split: int, n: int, workers: int, desc: str,
             families: tuple[str, ...] = TRAIN_FAMILIES, with_contrast: bool = False) -> tuple[np.ndarray, ...]:
    """Generate ``n`` samples of ``families`` in turn (deterministic per index, any worker count):
    images, labels, cells and (``with_contrast``) contrast channels, else an empty array."""
    jobs = [(seed, split, i, families, with_contrast) for i in range(n)]
    images = np.empty((n, 256, 256, 3), np.uint8)
    contrast = np.empty((n, 256, 256, 3) if with_contrast else (0,), np.float16)
    labels = np.empty(n, np.int64)
    cells = np.empty((n, 32, 32), np.float32)
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            results = pool.imap(generate_one, jobs, chunksize=32)
        else:
            results = map(generate_one, jobs)
        for i, (image, label, cell, con) in enumerate(tqdm(results, total=n, desc=desc, mininterval=5)):
            images[i], labels[i], cells[i] = image, label, cell
            if with_contrast:
                contrast[i] = con
    return images, labels, cells, contrast


def to_tensor(images_bgr: np.ndarray) -> torch.Tensor:
    """BGR uint8 NHWC -> normalised RGB NCHW float32 (contiguous), exactly as the runtime preprocesses."""
    return _normalised(images_bgr).contiguous()


def _crop(images: np.ndarray, contrast: np.ndarray, cells: np.ndarray, idx: np.ndarray, size: int,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell-aligned ``size`` x ``size`` crops of samples ``idx`` (image, contrast channels, cells)
    that keep part of the defect in view.

    Most of a 256x256 image is defect-free background; training mostly on small crops around
    the defect shows the network many more defects per CPU second.  The network is fully
    convolutional up to global pooling, so the same weights then run at 256x256.
    """
    full = images.shape[1]
    if size >= full:
        return images[idx], contrast[idx], cells[idx]
    c, g = size // CELL, full // CELL
    out_img = np.empty((len(idx), size, size, 3), np.uint8)
    out_con = np.empty((len(idx), size, size, 3), contrast.dtype)
    out_cells = np.empty((len(idx), c, c), np.float32)
    for j, i in enumerate(idx):
        hot = np.argwhere(cells[i] > 0)
        if len(hot):
            cy, cx = hot[rng.integers(len(hot))]
            y0 = int(rng.integers(max(0, cy - c + 1), min(cy, g - c) + 1))
            x0 = int(rng.integers(max(0, cx - c + 1), min(cx, g - c) + 1))
        else:
            y0, x0 = (int(v) for v in rng.integers(0, g - c + 1, 2))
        ys, xs = slice(y0 * CELL, (y0 + c) * CELL), slice(x0 * CELL, (x0 + c) * CELL)
        out_img[j], out_con[j] = images[i, ys, xs], contrast[i, ys, xs]
        out_cells[j] = cells[i, y0 : y0 + c, x0 : x0 + c]
    return out_img, out_con, out_cells


def _normalised(images_bgr: np.ndarray) -> torch.Tensor:
    """BGR uint8 NHWC (any strides) -> normalised RGB NCHW float32 in channels-last memory.

    One table look-up per channel on the uint8 pixels: NHWC memory is also the channels-last
    layout the convolutions want, so no float tensor is permuted or copied afterwards.
    """
    x = _rgb_into(np.empty(images_bgr.shape, np.float32), images_bgr)
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def to_training_batch(images_bgr: np.ndarray, contrast: np.ndarray, cells: np.ndarray,
                      rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly turned/flipped batch (defects have no orientation) as the network's 6 input channels.

    The crops are turned as views (the box statistics of the contrast channels turn with the
    image) and written once into NHWC float32, the channels-last layout the convolutions want.
    """
    k = int(rng.integers(4))
    images_bgr, contrast, cells = (np.rot90(a, k, axes=(1, 2)) for a in (images_bgr, contrast, cells))
    if rng.random() < 0.5:
        images_bgr, contrast, cells = images_bgr[:, :, ::-1], contrast[:, :, ::-1], cells[:, :, ::-1]
    x = _rgb_into(np.empty(images_bgr.shape[:3] + (6,), np.float32), images_bgr)
    x[..., 3:] = contrast
    return torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(np.ascontiguousarray(cells))


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


def train(model: VisualNet, data: tuple[np.ndarray, ...], crops: list[tuple[int, int]], batch: int, seed: int,
          device: str = "cpu", full_images: int = 20000, bf16: bool = False) -> None:
    """Epochs on crops around the defects (``crops``: side, epochs, in order), then ``full_images``
    whole images (several passes when that exceeds the set).

    A crop costs about its share of a whole image's pixels, so crops show the network more
    defects per CPU second; phases of growing crops trade context for samples.  The whole-image
    passes let the class head see defects at their real share of a frame (its inputs include
    global averages).  The convolutions run in channels-last layout (oneDNN's direct kernels for it
    take a float32 step ~1.8x faster on 2 AVX2 cores) and, with ``bf16``, under bfloat16 autocast
    (weights, optimiser and losses stay float32): 2-2.7x faster steps on CPUs with AVX512-BF16,
    while on CPUs without it bfloat16 is emulated and ~17x slower.
    """
    images, labels, cells, contrast = data
    model.to(device)
    layout = torch.channels_last
    model.to(memory_format=layout)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    phases = [(side, len(images)) for side, epochs in crops for _ in range(epochs)]
    for start in range(0, full_images, len(images)):  # more whole images than the set: several passes
        phases.append((images.shape[1], min(len(images), full_images - start)))
    steps = sum(math.ceil(n / batch) for _, n in phases)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    pos_weight = torch.tensor([4.0], device=device)
    for epoch, (size, count) in enumerate(phases):
        model.train()
        order = rng.permutation(len(images))[:count]
        bar = tqdm(range(0, len(order), batch), desc=f"epoch {epoch + 1}/{len(phases)} @{size}px", mininterval=20)
        total = correct = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for start in bar:
            idx = order[start : start + batch]
            x, t = to_training_batch(*_crop(images, contrast, cells, idx, size, rng), rng)
            x = x.to(device).contiguous(memory_format=layout)
            t, y = t.to(device), torch.from_numpy(labels[idx]).to(device)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
                logits, heat = model.logits_from_contrast(x)
            logits, heat = logits.float(), heat.float()
            loss = F.cross_entropy(logits, y, label_smoothing=0.02) + F.binary_cross_entropy_with_logits(
                heat[:, 0], t, pos_weight=pos_weight
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += len(idx)
            correct += int((logits.argmax(1) == y).sum())
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / total:.3f}")
        # process CPU seconds / threads estimates the wall time on idle cores when the machine is shared
        print(f"epoch {epoch + 1} @{size}px: {len(bar)} steps, wall {time.perf_counter() - wall:.1f} s, "
              f"cpu {time.process_time() - cpu:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
    model.to("cpu").to(memory_format=torch.contiguous_format)


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
    ap.add_argument("--no-eval", action="store_true", help="skip tools/eval_visual.py afterwards")
    args = ap.parse_args(argv)
    if args.smoke:
        args.crops, args.full_images, args.train_size, args.val_size, args.workers = "64:1,96:1", 32, 48, 40, 1
        args.out = args.out or Path(tempfile.mkdtemp(prefix="visual-smoke-"))
    out: Path = args.out or ROOT / "engines"
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
    bf16 = args.precision == "bf16" or (args.precision == "auto" and bf16_supported(args.device))
    if args.holdout_family and out.resolve() == (ROOT / "engines").resolve():
        print("error: --holdout-family trains an experiment model; give --out another directory", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    train_data = generate(args.seed, SPLIT_TRAIN, args.train_size, args.workers, "train data", families, with_contrast=True)
    # the threshold is set on the camera families only (texture is a training aid, never a product)
    val_families = tuple(f for f in FAMILIES if f != args.holdout_family)
    val_images, val_labels, _, _ = generate(args.seed, SPLIT_VAL, args.val_size, args.workers, "val data", val_families)
    model = VisualNet()
    train(model, train_data, crops, args.batch, args.seed, args.device, args.full_images, bf16)

    onnx_path = out / "visual_cnn.onnx"
    probe = to_tensor(val_images[:8])
    recipe = {
        "crops": args.crops, "epochs": sum(e for _, e in crops), "full_images": args.full_images, "train_size": args.train_size, "val_size": args.val_size,
        "batch": args.batch, "seed": args.seed, "train_minutes": round((time.time() - t0) / 60, 1),
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

    from _modelcard import update_manifest_section

    section = VisualModel(
        file=onnx_path.name, sha256=sha256_of(onnx_path), mean=MEAN, std=STD, labels=LABELS,
        threshold=round(threshold, 6), heatmap_threshold=0.5,
    ).model_dump(mode="json")
    update_manifest_section(out, "visual", section)
    print(f"wrote {out / 'manifest.toml'} [visual]; recipe {recipe}")
    if not args.no_eval:
        from eval_visual import evaluate

        evaluate(out, smoke=args.smoke)
    print(f"finished in {(time.time() - t0) / 60:.1f} min (data, training, export{'' if args.no_eval else ', evaluation'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
