"""Held-out machined and moulded products: knurled metal, a turned face, a grained moulding
(see families_heldout.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from training.anomaly.scene import (
    CANVAS, PAD, SIZE, Nuisance, blob, grid, inside, light_from, metal, mix, shade, smooth_noise, stroke, wander,
)


# ------------------------------------------------------------------------------------ knurl
@dataclass
class _Knurl:
    colour: np.ndarray
    pitch: float
    angle: float
    depth: float
    light: tuple[float, float]


def _knurl_height(d: _Knurl, rng: np.random.Generator, pitch_scale: float = 1.0) -> np.ndarray:
    yy, xx = grid()
    a = math.radians(d.angle)
    p = d.pitch * pitch_scale
    u = (xx * math.cos(a) + yy * math.sin(a)) / p + rng.uniform(0, 1)
    v = (xx * math.cos(-a) + yy * math.sin(-a)) / p + rng.uniform(0, 1)
    tri = lambda t: np.abs((t % 1.0) - 0.5) * 2.0  # noqa: E731 - 1 at the crest, 0 in the groove
    return np.minimum(tri(u), tri(v)).astype(np.float32)


class Knurl:
    name = "knurl"
    defects = ("flattened", "double_track", "dent", "chip", "rust")
    nuisance = Nuisance()

    def design(self, rng: np.random.Generator) -> _Knurl:
        return _Knurl(metal(rng, 120, 190),
                      float(rng.uniform(9, 14)), float(rng.uniform(28, 40)), float(rng.uniform(4, 7)), light_from(rng))

    def _render(self, d: _Knurl, height: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h = height * d.depth + 0.3 * smooth_noise(rng, height.shape, 1.0)
        s = shade(h, d.light, 0.35) * (0.85 + 0.15 * height)
        return d.colour[None, None, :] * s[..., None]

    def part(self, d: _Knurl, rng: np.random.Generator) -> np.ndarray:
        self._height = _knurl_height(d, rng)
        return self._render(d, self._height, rng)

    def flaw(self, kind: str, d: _Knurl, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = inside(rng, 40)
        if kind in ("flattened", "double_track"):
            alpha = blob(rng, c, rng.uniform(10, 20), soft=0.4) if kind == "flattened" else None
            if kind == "flattened":  # the crests are worn flat: less relief, more shine
                height = self._height * (1 - alpha) + (0.85 + 0.05 * self._height) * alpha
            else:  # a second, offset track in a band
                yy, xx = grid()
                a = rng.uniform(0, math.pi)
                dist = np.abs((xx - c[0]) * math.cos(a) + (yy - c[1]) * math.sin(a))
                along = np.abs(-(xx - c[0]) * math.sin(a) + (yy - c[1]) * math.cos(a))
                alpha = (np.clip((rng.uniform(6, 10) - dist) / 3, 0, 1) * np.clip((rng.uniform(25, 45) - along) / 4, 0, 1))
                height = self._height * (1 - alpha) + _knurl_height(d, rng) * alpha
            img[...] = self._render(d, height, rng)
            return alpha.astype(np.float32)
        if kind == "dent":
            yy, xx = grid()
            r = rng.uniform(7, 14)
            bump = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * r * r)).astype(np.float32)
            img *= shade(bump * rng.uniform(12, 24), d.light, 0.35)[..., None]
            return (bump > 0.3).astype(np.float32)
        alpha = blob(rng, c, rng.uniform(4, 9), rough=0.5, soft=0.3)
        mix(img, alpha, d.colour * 1.35 if kind == "chip" else np.float32([30, 70, 130]) * rng.uniform(0.8, 1.2))
        return alpha


# ----------------------------------------------------------------------------------- turned
@dataclass
class _Turned:
    colour: np.ndarray
    radius: float
    bore: float
    pitch: float
    highlight: float
    background: np.ndarray = field(default_factory=lambda: np.float32([45, 45, 50]))


class Turned:
    name = "turned"
    defects = ("chatter", "gouge", "pits", "inclusion", "step")
    nuisance = Nuisance()

    def design(self, rng: np.random.Generator) -> _Turned:
        return _Turned(metal(rng, 140, 200, 0.04),
                       float(rng.uniform(100, 116)), float(rng.uniform(12, 22)), float(rng.uniform(2.2, 4.0)),
                       float(rng.uniform(0, math.pi)))

    def _polar(self) -> tuple[np.ndarray, np.ndarray]:
        yy, xx = grid()
        dx, dy = xx - CANVAS / 2, yy - CANVAS / 2
        return np.sqrt(dx * dx + dy * dy), np.arctan2(dy, dx)

    def part(self, d: _Turned, rng: np.random.Generator, ring_phase: float | None = None,
             pitch: float | None = None) -> np.ndarray:
        r, th = self._polar()
        phase = rng.uniform(0, 2 * math.pi) if ring_phase is None else ring_phase
        p = d.pitch if pitch is None else pitch
        rings = 0.5 * np.sin(2 * math.pi * r / p + phase) + 0.25 * np.sin(2 * math.pi * r / (p * 3.1) + 1.3)
        hl = d.highlight + rng.uniform(-0.15, 0.15)
        face = (0.8 + 0.25 * np.cos(2 * (th - hl))) * (1.0 + 0.08 * rings)
        img = d.colour[None, None, :] * face[..., None].astype(np.float32)
        chamfer = (np.abs(r - d.radius) < 3)
        img[chamfer] *= 1.3
        outside = np.clip((r - d.radius - 2) / 1.5, 0, 1)
        bore = np.clip((d.bore - r) / 1.5, 0, 1)
        for a in (outside, bore):
            mix(img, a.astype(np.float32), d.background * (1.0 if a is outside else 0.5))
        return img

    def flaw(self, kind: str, d: _Turned, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        r, th = self._polar()
        radius = rng.uniform(d.bore + 15, d.radius - 15)
        at = rng.uniform(-math.pi, math.pi)
        c = (CANVAS / 2 + radius * math.cos(at), CANVAS / 2 + radius * math.sin(at))
        sector = np.cos(th - at) > math.cos(rng.uniform(0.25, 0.5))
        if kind == "chatter":  # vibration marks: radial waviness over a sector and a band of radii
            band = np.clip(1 - np.abs(r - radius) / rng.uniform(10, 18), 0, 1) * sector
            wave = np.sin(th * rng.uniform(60, 110))
            img *= (1 + rng.uniform(0.15, 0.25) * wave * band)[..., None]
            return (band > 0.3).astype(np.float32)
        if kind == "step":  # the tool mark pattern jumps: other ring phase in a band
            band = (np.abs(r - radius) < rng.uniform(5, 9)) & sector
            alt = self.part(d, rng, ring_phase=rng.uniform(0, 2 * math.pi), pitch=d.pitch * rng.uniform(1.3, 1.8))
            alt *= rng.uniform(0.9, 0.95)
            img[band] = alt[band]
            return band.astype(np.float32)
        if kind == "gouge":
            path = wander(rng, c, rng.uniform(15, 40), at + rng.uniform(-0.6, 0.6), 0.05, 1.5)
            alpha = stroke(path, int(rng.integers(1, 3)))
            img *= (1 - 0.45 * alpha + 0.25 * np.roll(alpha, 1, axis=1))[..., None]
            return alpha
        if kind == "pits":
            alpha = np.zeros(img.shape[:2], np.float32)
            for _ in range(int(rng.integers(1, 4))):
                p = (c[0] + rng.uniform(-8, 8), c[1] + rng.uniform(-8, 8))
                alpha = np.maximum(alpha, blob(rng, p, rng.uniform(1.5, 3.5), soft=0.5))
            mix(img, alpha, d.colour * 0.25)
            return alpha
        alpha = blob(rng, c, rng.uniform(2.5, 5), soft=0.5)
        mix(img, alpha, np.minimum(d.colour * 1.4, 255))
        return alpha


# ---------------------------------------------------------------------------------- moulded
@dataclass
class _Moulded:
    colour: np.ndarray
    edge: float  # the part's edge (x on the canvas); the conveyor beyond it
    rib: tuple[int, int, int, int]
    grain: float
    light: tuple[float, float]


class Moulded:
    name = "moulded"
    defects = ("sink_mark", "flow_lines", "speck", "splay", "short_shot")
    nuisance = Nuisance()

    def design(self, rng: np.random.Generator) -> _Moulded:
        colour = np.float32([[30, 30, 32], [150, 90, 40], [170, 185, 200], [60, 60, 140]][int(rng.integers(4))])
        colour = colour * rng.uniform(0.9, 1.1)
        rib = (PAD + int(rng.integers(30, 60)), PAD + int(rng.integers(40, 80)), int(rng.integers(80, 120)), int(rng.integers(50, 90)))
        return _Moulded(colour, PAD + SIZE - float(rng.uniform(28, 45)), rib, float(rng.uniform(2.0, 3.5)), light_from(rng))

    def _surface(self, d: _Moulded, rng: np.random.Generator) -> np.ndarray:
        ridges = np.abs(smooth_noise(rng, (CANVAS, CANVAS), d.grain))
        return (1.0 - np.clip(ridges, 0, 2) / 2) * 2.0 + 0.4 * smooth_noise(rng, (CANVAS, CANVAS), 0.8)

    def part(self, d: _Moulded, rng: np.random.Generator, edge_notch: np.ndarray | None = None) -> np.ndarray:
        height = self._surface(d, rng)
        x, y, w, h = d.rib
        rib = np.zeros((CANVAS, CANVAS), np.float32)
        cv2.rectangle(rib, (x, y), (x + w, y + h), 1.0, 4)
        height += 5 * cv2.GaussianBlur(rib, (0, 0), 1.2)
        s = shade(height, d.light, 0.35)
        img = d.colour[None, None, :] * s[..., None] + 12.0
        yy, xx = grid()
        edge = d.edge + 1.5 * np.sin(yy / 40.0)
        beyond = np.clip((xx - edge) / 1.5, 0, 1)
        mix(img, beyond.astype(np.float32), (90, 95, 95))
        return img

    def flaw(self, kind: str, d: _Moulded, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = inside(rng, 40)
        c = (min(c[0], d.edge - 30), c[1])
        if kind == "sink_mark":
            yy, xx = grid()
            r = rng.uniform(10, 20)
            dip = -np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * r * r)).astype(np.float32)
            img *= shade(dip * rng.uniform(25, 45), d.light, 0.35)[..., None]
            return (dip < -0.3).astype(np.float32)
        if kind == "flow_lines":
            alpha = np.zeros(img.shape[:2], np.float32)
            heading = rng.uniform(0, 2 * math.pi)
            for k in range(int(rng.integers(2, 4))):
                start = (c[0] + 5 * k * math.sin(heading), c[1] - 5 * k * math.cos(heading))
                alpha = np.maximum(alpha, stroke(wander(rng, start, rng.uniform(30, 50), heading, 0.06), 2))
            alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0) * rng.uniform(0.35, 0.55)
            mix(img, alpha, np.minimum(d.colour * 1.5 + 40, 255))
            return alpha
        if kind == "speck":
            alpha = blob(rng, c, rng.uniform(2, 4.5), soft=0.3)
            mix(img, alpha, (10, 10, 10) if d.colour.mean() > 60 else (200, 200, 200))
            return alpha
        if kind == "splay":  # silver streaks along the flow
            alpha = np.zeros(img.shape[:2], np.float32)
            heading = rng.uniform(0, 2 * math.pi)
            for _ in range(int(rng.integers(4, 9))):
                p = (c[0] + rng.uniform(-12, 12), c[1] + rng.uniform(-12, 12))
                alpha = np.maximum(alpha, stroke(wander(rng, p, rng.uniform(6, 14), heading, 0.05, 1.0), 1))
            mix(img, alpha * 0.7, (215, 215, 220))
            return alpha
        # short shot: the melt did not fill the edge: a bite out of the part
        yy, xx = grid()
        cy = rng.uniform(PAD + 40, PAD + SIZE - 40)
        r = rng.uniform(10, 20)
        bite = (((xx - d.edge) ** 2 + (yy - cy) ** 2) < r * r).astype(np.float32)
        bite = cv2.GaussianBlur(bite, (0, 0), 1.0)
        mix(img, bite, (90, 95, 95))
        return bite * (xx < d.edge + 2)
