"""Training data of the visual CNN: synthetic samples, their contrast channels, crops and batches.

Kept apart from training/visual/train.py (the training loop, export and threshold), so the tests
can check what the network is trained on against what the runtime feeds it without the loop.
Everything here is deterministic per sample index, whatever the number of worker processes.
"""

from __future__ import annotations

import contextlib
import multiprocessing

import cv2
import numpy as np
import torch
from tqdm import tqdm

from edge_inspector.synthetic.surfaces import LABELS, compose, make_surface, scene_from_image
from training.visual.net import LocalContrast

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
TRAIN_FAMILIES = ("metal", "painted", "cast", "texture")  # every family the demo camera shows
SPLIT_TRAIN, SPLIT_VAL = 1, 2  # SeedSequence split ids; training/visual/evaluate.py uses 3 and 4
OK_FRACTION = 0.3
CELL = 8  # heatmap cell size in pixels (256 / 32)


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


def crop_batch(images: np.ndarray, contrast: np.ndarray, cells: np.ndarray, idx: np.ndarray, size: int,
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
