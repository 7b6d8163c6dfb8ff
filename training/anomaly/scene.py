"""Drawing helpers and line nuisances shared by the anomaly-evaluation product families.

A *product family* (families_dev.py, families_heldout.py) draws one product design (fixed per
``product`` seed: the part a line makes all day) and, per part, its small manufacturing
variation and at most one defect, on a canvas larger than the frame.  :func:`on_the_line` then
does to good and defective parts alike what a camera on a conveyor does: the part arrives a
little shifted and turned, the light drifts (gain, gradient, vignette, gamma, tint), the lens
is a little out of focus, the sensor adds noise, the stream is JPEG-compressed.  The defect's
mask goes through the same geometry, so boxes can be scored against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SIZE = 256  # the frame the camera delivers (the models' input size)
PAD = 24  # canvas margin on each side: shifts and turns never show a border
CANVAS = SIZE + 2 * PAD


@dataclass
class Part:
    """One frame of a product family and its ground truth."""

    image: np.ndarray  # SIZE x SIZE x 3 BGR uint8
    defect: str  # "" for a good part, else the defect kind
    mask: np.ndarray  # SIZE x SIZE uint8, 1 = defect pixel
    family: str

    @property
    def good(self) -> bool:
        return not self.defect

    @property
    def bbox(self) -> list[int] | None:
        ys, xs = np.nonzero(self.mask)
        if len(xs) == 0:
            return None
        return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


@dataclass
class Nuisance:
    """How much a line moves and re-lights its parts (the ranges are symmetric around none)."""

    shift_px: float = 8.0
    turn_deg: float = 3.0
    scale: float = 0.02
    gain: float = 0.15
    gradient: float = 0.15
    vignette: float = 0.2
    gamma: float = 0.12
    tint: float = 0.04
    blur_sigma: float = 1.0
    noise_sigma: tuple[float, float] = (1.0, 4.0)
    jpeg: tuple[int, int] = (60, 95)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std blurred white noise."""
    field = rng.standard_normal(shape).astype(np.float32)
    if sigma > 0:
        field = cv2.GaussianBlur(field, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return (field - field.mean()) / (field.std() + 1e-6)


def shade(height: np.ndarray, light: tuple[float, float], strength: float) -> np.ndarray:
    """Relative shading of a height field lit at a low angle from ``light`` (unit vector)."""
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return 1.0 + strength * (gx * light[0] + gy * light[1])


def light_from(rng: np.random.Generator) -> tuple[float, float]:
    angle = rng.uniform(0, 2 * math.pi)
    return math.cos(angle), math.sin(angle)


def grid(shape: tuple[int, int] = (CANVAS, CANVAS)) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (yy, xx) as float32."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return yy, xx


def blob(rng: np.random.Generator, centre: tuple[float, float], radius: float, rough: float = 0.3,
         soft: float = 0.25, shape: tuple[int, int] = (CANVAS, CANVAS)) -> np.ndarray:
    """Coverage (0..1) of an irregular elliptical blob."""
    yy, xx = grid(shape)
    angle = rng.uniform(0, math.pi)
    ca, sa = math.cos(angle), math.sin(angle)
    ra, rb = radius * rng.uniform(0.7, 1.0), radius * rng.uniform(0.5, 1.0)
    u = ((xx - centre[0]) * ca + (yy - centre[1]) * sa) / ra
    v = (-(xx - centre[0]) * sa + (yy - centre[1]) * ca) / rb
    r = np.sqrt(u * u + v * v) * np.exp(rough * np.clip(smooth_noise(rng, shape, max(1.0, radius / 3)), -2, 2))
    return np.clip((1.0 - r) / soft, 0.0, 1.0)


def stroke(points: np.ndarray, width: int, shape: tuple[int, int] = (CANVAS, CANVAS)) -> np.ndarray:
    """Coverage of an anti-aliased polyline through ``points`` (N x 2, x/y in pixels)."""
    alpha = np.zeros(shape, np.float32)
    fixed = np.round(np.asarray(points) * 16).astype(np.int32)
    cv2.polylines(alpha, [fixed], False, 1.0, max(1, int(width)), cv2.LINE_AA, 4)
    return alpha


def wander(rng: np.random.Generator, start: tuple[float, float], length: float, heading: float,
           bend: float = 0.15, step: float = 2.0) -> np.ndarray:
    """A gently bending path (N x 2) of about ``length`` pixels."""
    pts = [np.asarray(start, np.float64)]
    for _ in range(max(2, int(length / step))):
        heading += rng.normal(0, bend)
        pts.append(pts[-1] + step * np.array([math.cos(heading), math.sin(heading)]))
    return np.asarray(pts)


def mix(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray | tuple[float, float, float]) -> None:
    """Paint ``colour`` (BGR) over ``image`` in place with coverage ``alpha``."""
    a = alpha[..., None].astype(np.float32)
    image *= 1.0 - a
    image += a * np.asarray(colour, np.float32)[None, None, :]


def inside(rng: np.random.Generator, margin: float = 40.0) -> tuple[float, float]:
    """A random point of the canvas at least ``margin`` px inside the frame the camera will see."""
    lo, hi = PAD + margin, PAD + SIZE - margin
    return float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))


def on_the_line(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray, nuisance: Nuisance,
                family: str, defect: str) -> Part:
    """A finished canvas (CANVAS x CANVAS float BGR 0..255) as the camera frames it."""
    n = nuisance
    centre = (CANVAS / 2 + rng.uniform(-n.shift_px, n.shift_px), CANVAS / 2 + rng.uniform(-n.shift_px, n.shift_px))
    m = cv2.getRotationMatrix2D(centre, rng.uniform(-n.turn_deg, n.turn_deg), 1.0 + rng.uniform(-n.scale, n.scale))
    m[:, 2] += np.array([CANVAS / 2, CANVAS / 2]) - np.array(centre)  # the part's centre lands mid-frame
    m[:, 2] -= PAD
    image = cv2.warpAffine(canvas, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(mask.astype(np.float32), m, (SIZE, SIZE), flags=cv2.INTER_LINEAR) > 0.3
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE - 0.5
    angle = rng.uniform(0, 2 * math.pi)
    light = (1.0 + rng.uniform(-n.gain, n.gain)) * (1.0 + rng.uniform(0, n.gradient) * 2 * (xx * math.cos(angle) + yy * math.sin(angle)))
    light *= 1.0 - rng.uniform(0, n.vignette) * 2 * (xx * xx + yy * yy)
    image = image * light[..., None] * (1.0 + rng.uniform(-n.tint, n.tint, 3)).astype(np.float32)
    image = 255.0 * (np.clip(image, 0, 255) / 255.0) ** (1.0 + rng.uniform(-n.gamma, n.gamma))
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, n.blur_sigma))
    image = image + rng.normal(0, rng.uniform(*n.noise_sigma), image.shape).astype(np.float32)
    out = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        _, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*n.jpeg))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return Part(out, defect, mask.astype(np.uint8) if defect else np.zeros((SIZE, SIZE), np.uint8), family)


def text_alpha(text: str, org: tuple[int, int], font: int, scale: float, thickness: int,
               shape: tuple[int, int] = (CANVAS, CANVAS)) -> np.ndarray:
    """Coverage of anti-aliased Hershey text (OpenCV draws text on 8-bit images only)."""
    canvas = np.zeros(shape, np.uint8)
    cv2.putText(canvas, text, org, font, scale, 255, thickness, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def metal(rng: np.random.Generator, lo: float, hi: float, tint: float = 0.05) -> np.ndarray:
    """A near-grey BGR colour of brightness ``lo``..``hi`` with a slight random tint."""
    return np.float32(rng.uniform(lo, hi)) * rng.uniform(1 - tint, 1 + tint, 3).astype(np.float32)
