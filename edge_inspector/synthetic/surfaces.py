"""Procedural inspection surfaces with labelled defects (demo camera, training, tests).

Every sample is a 256x256 BGR image of one of three surface families -- brushed/ground
``metal``, ``painted``/coated, ``cast``/textured -- carrying at most one defect:
``scratch``, ``crack``, ``spot`` or ``dent``.  Each sample also carries the defect's pixel
mask and bounding box, so a model can be trained to localise as well as classify.

Why so much randomness: a model trained here must work on defects drawn by someone else, so
shapes, widths, contrasts, positions and polarity are sampled generously, and every image,
good or bad, gets the nuisances a real line produces (illumination gradients, gamma, noise,
blur, JPEG, small shifts, colour tint).  Everything is deterministic given the generator.

Only numpy and OpenCV are used, so the daemon's ``synthetic://surface`` camera runs anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

LABELS: tuple[str, ...] = ("ok", "scratch", "crack", "spot", "dent")
FAMILIES: tuple[str, ...] = ("metal", "painted", "cast")
# A labelled defect must be visible: its mean change on the defect pixels is at least this many
# times the std of the surface's fine texture around it (see visibility()).  Below ~1 a line on
# the grainy cast surface cannot be told from the grain even when one knows where it is, and a
# label nobody could have given only teaches a model noise; fainter defects are strengthened to
# this floor (their shape, place and polarity stay as drawn).
MIN_VISIBILITY = 1.2


@dataclass
class Sample:
    """One generated surface: the image, its ground truth and where the defect is."""

    image: np.ndarray  # H x W x 3 BGR uint8
    label: str
    mask: np.ndarray  # H x W uint8, 1 = defect pixel
    bbox: list[int] | None  # [x, y, w, h] of the mask, None when ok
    family: str
    visibility: float = 0.0  # defect contrast over the surface's texture (see visibility()); 0 when ok


@dataclass
class Scene:
    """A clean surface before defects: float BGR albedo*shading and the light direction."""

    image: np.ndarray  # H x W x 3 float32, 0..255
    light: tuple[float, float]  # unit vector of the light's in-plane direction


# ----------------------------------------------------------------------------- base surfaces


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-blurred white noise (a cheap band-limited field)."""
    field = rng.standard_normal((size, size)).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return (field - field.mean()) / (field.std() + 1e-6)


def _shade(height: np.ndarray, light: tuple[float, float], strength: float) -> np.ndarray:
    """Lambert-like relative shading of a height field lit from ``light`` at a low angle."""
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return 1.0 + strength * (gx * light[0] + gy * light[1])


def _base_colour(rng: np.random.Generator, saturated: bool) -> np.ndarray:
    """A BGR colour: near-grey for metal/cast, any hue for paint."""
    if saturated and rng.random() < 0.8:
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(60, 230), rng.integers(70, 220)]]])
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    level = rng.uniform(70, 200)
    return np.float32(level) * rng.uniform(0.96, 1.04, 3).astype(np.float32)


def _metal(rng: np.random.Generator, size: int, light: tuple[float, float]) -> np.ndarray:
    """Brushed or ground metal: striations along one (sometimes two) directions."""
    big = int(size * 1.5)
    layers = 1 if rng.random() < 0.75 else 2
    tex = np.zeros((size, size), np.float32)
    for _ in range(layers):
        noise = rng.standard_normal((big, big)).astype(np.float32)
        along, across = rng.uniform(6, 40), rng.uniform(0.3, 1.2)
        noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=along, sigmaY=across)
        noise /= noise.std() + 1e-6
        angle = rng.uniform(0, 180)
        rot = cv2.getRotationMatrix2D((big / 2, big / 2), angle, 1.0)
        noise = cv2.warpAffine(noise, rot, (big, big), borderMode=cv2.BORDER_REFLECT)
        off = (big - size) // 2
        tex += noise[off : off + size, off : off + size]
    tex /= math.sqrt(layers)
    colour = _base_colour(rng, saturated=False)
    amplitude = rng.uniform(0.03, 0.12)
    sheen = 1.0 + 0.08 * _smooth_noise(rng, size, size / 6)
    return colour[None, None, :] * ((1.0 + amplitude * tex) * sheen)[..., None]


def _painted(rng: np.random.Generator, size: int, light: tuple[float, float]) -> np.ndarray:
    """Painted or powder-coated: a flat colour, faint orange peel, very low noise."""
    colour = _base_colour(rng, saturated=True)
    peel = _smooth_noise(rng, size, rng.uniform(1.5, 4.0)) * rng.uniform(0.3, 1.5)
    shading = _shade(peel, light, rng.uniform(0.01, 0.08))
    mottling = 1.0 + 0.03 * _smooth_noise(rng, size, size / 5)
    return colour[None, None, :] * (shading * mottling)[..., None]


def _cast(rng: np.random.Generator, size: int, light: tuple[float, float]) -> np.ndarray:
    """Cast or sand-blasted: a granular height field seen under the scene's light."""
    height = np.zeros((size, size), np.float32)
    for sigma, weight in ((0.8, 1.0), (2.0, 1.4), (5.0, 1.0)):
        height += weight * rng.uniform(0.5, 1.5) * _smooth_noise(rng, size, sigma)
    shading = _shade(height, light, rng.uniform(0.15, 0.4))
    albedo = 1.0 + rng.uniform(0.02, 0.08) * _smooth_noise(rng, size, rng.uniform(1.0, 3.0))
    colour = _base_colour(rng, saturated=rng.random() < 0.2)
    return colour[None, None, :] * (shading * albedo)[..., None]


_PAD = 6  # scenes are drawn this much larger on each side so a shift never shows a border
_FAMILY_MAKERS = {"metal": _metal, "painted": _painted, "cast": _cast}


def _scene(rng: np.random.Generator, family: str, size: int) -> Scene:
    angle = rng.uniform(0, 2 * math.pi)
    light = (math.cos(angle), math.sin(angle))
    return Scene(_FAMILY_MAKERS[family](rng, size, light).astype(np.float32), light)


def scene_from_image(rng: np.random.Generator, image: np.ndarray, size: int = 256) -> Scene:
    """Wrap an existing square BGR texture as a clean scene to put defects on (training)."""
    angle = rng.uniform(0, 2 * math.pi)
    canvas = cv2.resize(image, (size + 2 * _PAD, size + 2 * _PAD), interpolation=cv2.INTER_AREA)
    return Scene(canvas.astype(np.float32), (math.cos(angle), math.sin(angle)))


# ----------------------------------------------------------------------------------- defects


def _blend(img: np.ndarray, alpha: np.ndarray, delta: np.ndarray) -> None:
    """Add ``delta`` (per channel, grey levels) weighted by coverage ``alpha`` in place."""
    img += alpha[..., None] * delta[None, None, :]


def _polarity_delta(rng: np.random.Generator, lo: float, hi: float, dark_bias: float) -> np.ndarray:
    """A grey-level change: dark (negative) with probability ``dark_bias``, slightly tinted."""
    magnitude = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    sign = -1.0 if rng.random() < dark_bias else 1.0
    return np.float32(sign * magnitude) * rng.uniform(0.85, 1.15, 3).astype(np.float32)


def _scratch(rng: np.random.Generator, scene: Scene, size: int) -> np.ndarray:
    """A thin anti-aliased straight line or gentle curve, bright or dark, sometimes broken."""
    margin = 14
    length = rng.uniform(0.12, 0.7) * size
    cx, cy = rng.uniform(margin + length / 3, size - margin - length / 3, 2)
    theta = rng.uniform(0, math.pi)
    d = np.array([math.cos(theta), math.sin(theta)]) * length / 2
    p0, p2 = np.array([cx, cy]) - d, np.array([cx, cy]) + d
    normal = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-6)
    p1 = np.array([cx, cy]) + normal * rng.uniform(-0.25, 0.25) * length
    t = np.linspace(0, 1, 48)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    pts = np.clip(pts, margin, size - 1 - margin)
    width = int(rng.choice([1, 1, 2, 2, 3]))
    alpha = np.zeros((size, size), np.float32)
    shift = 4  # sub-pixel vertex precision for cv2's anti-aliased drawing
    fixed = np.round(pts * (1 << shift)).astype(np.int32)
    if rng.random() < 0.25:  # interrupted scratch: drop a few runs of segments
        keep = rng.random(len(fixed) - 1) > 0.25
        for i in np.flatnonzero(keep):
            cv2.line(alpha, tuple(fixed[i]), tuple(fixed[i + 1]), 1.0, width, cv2.LINE_AA, shift)
    else:
        cv2.polylines(alpha, [fixed], False, 1.0, width, cv2.LINE_AA, shift)
    fade = rng.uniform(0.5, 1.0) + rng.uniform(0.0, 0.5) * _smooth_noise(rng, size, 12) * 0.5
    alpha *= np.clip(fade, 0.3, 1.0)
    lo = 26.0 if width == 1 else 18.0
    _blend(scene.image, alpha, _polarity_delta(rng, lo, 90.0, dark_bias=0.5))
    return (alpha > 0.25).astype(np.uint8)


def _crack(rng: np.random.Generator, scene: Scene, size: int) -> np.ndarray:
    """A dark, jagged, tapering random walk that branches."""
    margin = 14
    alpha = np.zeros((size, size), np.float32)
    start = rng.uniform(margin + 30, size - margin - 30, 2)
    total = rng.uniform(0.15, 0.55) * size
    wiggle = rng.uniform(0.3, 0.8)  # per-step jaggedness around a slowly drifting course
    walks = [(start, rng.uniform(0, 2 * math.pi), total, rng.uniform(2.0, 3.5))]
    walks.append((start, walks[0][1] + math.pi + rng.normal(0, 0.3), total * rng.uniform(0.3, 0.8),
                  walks[0][3] * 0.8))
    branches = 0
    while walks:
        pos, heading, remaining, width = walks.pop()
        pos = np.array(pos, np.float64)
        travelled = 0.0
        while travelled < remaining:
            step = rng.uniform(2.0, 4.0)
            heading += rng.normal(0, 0.12)
            jag = heading + rng.normal(0, wiggle)
            nxt = pos + step * np.array([math.cos(jag), math.sin(jag)])
            if not (margin <= nxt[0] < size - margin and margin <= nxt[1] < size - margin):
                break
            w = max(1, int(round(width * (1 - travelled / remaining) + 0.6)))
            cv2.line(alpha, (int(pos[0] * 16), int(pos[1] * 16)), (int(nxt[0] * 16), int(nxt[1] * 16)),
                     1.0, w, cv2.LINE_AA, 4)
            pos, travelled = nxt, travelled + step
            if branches < 4 and rng.random() < 0.03:
                branches += 1
                walks.append((pos.copy(), heading + rng.choice([-1, 1]) * rng.uniform(0.4, 1.1),
                              (remaining - travelled) * rng.uniform(0.3, 0.7), max(1.0, width * 0.6)))
    delta = _polarity_delta(rng, 30.0, 110.0, dark_bias=1.0)
    _blend(scene.image, np.clip(alpha, 0, 1) * rng.uniform(0.7, 1.0), delta)
    return (alpha > 0.25).astype(np.uint8)


def _spot(rng: np.random.Generator, scene: Scene, size: int) -> np.ndarray:
    """A stain or contamination blob with a soft, irregular edge, dark or bright, maybe tinted."""
    radius = rng.uniform(4, 28) * size / 256
    margin = 14 + radius * 1.3
    cx, cy = rng.uniform(margin, size - margin, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    ca, sa = math.cos(angle), math.sin(angle)
    u = ((xx - cx) * ca + (yy - cy) * sa) / (radius * rng.uniform(0.6, 1.0))
    v = (-(xx - cx) * sa + (yy - cy) * ca) / (radius * rng.uniform(0.6, 1.0))
    rr = np.sqrt(u * u + v * v)  # irregular edge: perturb radially, so the centre stays inside
    r = rr * (1.0 + rng.uniform(0.0, 0.35) * np.clip(_smooth_noise(rng, size, max(1.5, radius / 3)), -2, 2))
    softness = rng.uniform(0.08, 0.45)
    alpha = np.clip((1.0 - r) / softness, 0.0, 1.0)
    alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.5, 2.0))
    delta = _polarity_delta(rng, 22.0, 100.0, dark_bias=0.7)
    if rng.random() < 0.4:  # oily/rusty contamination: a coloured stain
        delta = delta * rng.uniform(0.4, 1.6, 3).astype(np.float32)
    _blend(scene.image, alpha, delta)
    return (alpha > 0.3).astype(np.uint8)


def _dent(rng: np.random.Generator, scene: Scene, size: int) -> np.ndarray:
    """A smooth height bump or dip, visible only as shading under the scene's light."""
    sigma = rng.uniform(6, 22) * size / 256
    margin = 14 + sigma * 2
    cx, cy = rng.uniform(margin, size - margin, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ratio = rng.uniform(0.6, 1.0)
    angle = rng.uniform(0, math.pi)
    ca, sa = math.cos(angle), math.sin(angle)
    u = ((xx - cx) * ca + (yy - cy) * sa) / sigma
    v = (-(xx - cx) * sa + (yy - cy) * ca) / (sigma * ratio)
    bump = np.exp(-0.5 * (u * u + v * v)).astype(np.float32)
    gx = cv2.Sobel(bump, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(bump, cv2.CV_32F, 0, 1, ksize=3)
    lit = gx * scene.light[0] + gy * scene.light[1]
    lit /= np.abs(lit).max() + 1e-6
    strength = rng.uniform(0.18, 0.45) * (1 if rng.random() < 0.5 else -1)
    scene.image *= (1.0 + strength * lit)[..., None]
    return (bump > 0.3).astype(np.uint8)


_DEFECT_MAKERS = {"scratch": _scratch, "crack": _crack, "spot": _spot, "dent": _dent}


# --------------------------------------------------------------------------------- nuisances


def _nuisance(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What every real frame suffers, good or bad: light, tint, gamma, shift, blur, noise, JPEG.

    ``img`` is the padded canvas; the output is ``2 * _PAD`` smaller in each dimension.
    """
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    angle = rng.uniform(0, 2 * math.pi)
    gradient = 1.0 + rng.uniform(0, 0.5) * (xx * math.cos(angle) + yy * math.sin(angle))
    vignette = 1.0 - rng.uniform(0, 0.35) * (xx * xx + yy * yy) * 2
    img = img * (gradient * vignette)[..., None] * rng.uniform(0.75, 1.2)
    img *= rng.uniform(0.94, 1.06, 3).astype(np.float32)[None, None, :]
    img = np.clip(img, 0, 255)
    img = 255.0 * (img / 255.0) ** rng.uniform(0.75, 1.35)
    ox, oy = rng.integers(0, 2 * _PAD + 1, 2)  # small shift: crop the padded canvas off-centre
    size -= 2 * _PAD
    img = np.ascontiguousarray(img[oy : oy + size, ox : ox + size])
    mask = np.ascontiguousarray(mask[oy : oy + size, ox : ox + size])
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.1))
    img = img + rng.normal(0, rng.uniform(0.8, 5.0), img.shape).astype(np.float32)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(45, 96))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out, mask


def visibility(clean: np.ndarray, drawn: np.ndarray, mask: np.ndarray) -> float:
    """How far a defect stands out of its surface: mean |grey change| on the defect pixels over
    the std of the surface's fine texture (detail finer than ~3 px) within 15 px of them."""
    grey_clean = clean.mean(axis=2)
    change = np.abs(drawn.mean(axis=2) - grey_clean)
    on = mask > 0
    signal = float(change[on].mean()) if on.any() else 0.0
    texture = grey_clean - cv2.GaussianBlur(grey_clean, (0, 0), 3.0)
    around = cv2.dilate(mask, np.ones((31, 31), np.uint8)) > 0
    return signal / (float(texture[around].std()) + 1.0)


def bbox_of(mask: np.ndarray) -> list[int] | None:
    """[x, y, w, h] of the nonzero pixels of ``mask``, or None when it is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


# -------------------------------------------------------------------------------- public API


def compose(rng: np.random.Generator, scene: Scene, label: str, family: str) -> Sample:
    """Put a ``label`` defect on a clean scene, add the nuisances and return the sample."""
    if label not in LABELS:
        raise ValueError(f"unknown defect label {label!r}; expected one of {LABELS}")
    size = scene.image.shape[0]  # the padded canvas
    mask = np.zeros((size, size), np.uint8)
    seen = 0.0
    if label != "ok":
        clean = scene.image.copy()
        mask = _DEFECT_MAKERS[label](rng, scene, size)
        seen = visibility(clean, scene.image, mask)
        if 0.0 < seen < MIN_VISIBILITY:  # too faint to label: no inspector could see it either
            scene.image[...] = clean + (scene.image - clean) * np.float32(MIN_VISIBILITY / seen)
    image, mask = _nuisance(rng, scene.image, mask)
    bbox = bbox_of(mask) if label != "ok" else None
    if label != "ok" and bbox is None:  # defensive: a defect always has pixels
        raise RuntimeError(f"generated {label} has an empty mask")
    return Sample(image=image, label=label, mask=mask, bbox=bbox, family=family,
                  visibility=max(seen, MIN_VISIBILITY) if label != "ok" else 0.0)


def make_surface(
    rng: np.random.Generator, family: str | None = None, label: str | None = None, size: int = 256
) -> Sample:
    """One surface of ``family`` (random if None) with a ``label`` defect (random if None)."""
    family = family if family is not None else str(rng.choice(FAMILIES))
    label = label if label is not None else str(rng.choice(LABELS))
    if family not in FAMILIES:
        raise ValueError(f"unknown surface family {family!r}; expected one of {FAMILIES}")
    return compose(rng, _scene(rng, family, size + 2 * _PAD), label, family)


def sample_stream(seed: int, defect_rate: float = 0.2, size: int = 256) -> Iterator[Sample]:
    """An endless, reproducible stream of parts: ``defect_rate`` of them carry a defect."""
    rng = np.random.default_rng(seed)
    while True:
        label = "ok" if rng.random() >= defect_rate else str(rng.choice(LABELS[1:]))
        yield make_surface(rng, label=label, size=size)
