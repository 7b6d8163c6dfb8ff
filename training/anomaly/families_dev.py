"""Development product families: the anomaly model's choices were tuned on these only.

Four products that share nothing with the held-out ones (families_heldout.py) but the line:

* ``fabric``     -- woven cloth (a periodic texture, any phase part to part);
* ``tile``       -- a glazed tile with a printed geometric decor and glaze speckle;
* ``washer``     -- a stamped washer on a dark belt (one object, aligned up to the line's jitter);
* ``perforated`` -- a perforated sheet: a regular array of punched holes;
* ``gear``, ``connector`` -- aligned parts (dev_structured.py): a stamped gear face, a pin header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from training.anomaly import dev_structured
from training.anomaly.scene import (
    CANVAS, PAD, SIZE, Nuisance, blob, grid, inside, light_from, metal, mix, shade, smooth_noise, stroke, wander,
)


# ----------------------------------------------------------------------------------- fabric
@dataclass
class _Fabric:
    warp: np.ndarray
    weft: np.ndarray
    pitch: float
    angle: float


class Fabric:
    name = "fabric"
    defects = ("broken_yarn", "hole", "stain", "slub")
    nuisance = Nuisance()

    def design(self, rng: np.random.Generator) -> _Fabric:
        base = np.float32(rng.uniform(60, 200, 3))
        return _Fabric(base, base * rng.uniform(0.75, 0.95), float(rng.uniform(5, 8)), float(rng.uniform(-5, 5)))

    def _weave(self, d: _Fabric, rng: np.random.Generator, gap: np.ndarray | None = None) -> np.ndarray:
        yy, xx = grid()
        a = math.radians(d.angle)
        u = (xx * math.cos(a) + yy * math.sin(a)) / d.pitch + rng.uniform(0, 1)
        v = (-xx * math.sin(a) + yy * math.cos(a)) / d.pitch + rng.uniform(0, 1)
        over = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)  # plain weave: which yarn is on top
        across_u = np.abs(np.sin(math.pi * u))  # yarn profiles
        across_v = np.abs(np.sin(math.pi * v))
        warp_on = over * across_u
        weft_on = (1 - over) * across_v
        if gap is not None:
            warp_on *= 1 - gap
        img = d.warp[None, None, :] * (0.55 + 0.45 * warp_on)[..., None] * over[..., None]
        img += d.weft[None, None, :] * (0.55 + 0.45 * weft_on)[..., None] * (1 - over)[..., None]
        return img * (1.0 + 0.04 * smooth_noise(rng, (CANVAS, CANVAS), 3.0))[..., None]

    def part(self, d: _Fabric, rng: np.random.Generator) -> np.ndarray:
        return self._weave(d, rng)

    def flaw(self, kind: str, d: _Fabric, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = inside(rng, 40)
        if kind == "broken_yarn":  # a missing stretch of yarn: the weave shows through, darker
            yy, xx = grid()
            a = math.radians(d.angle) + rng.choice([0, math.pi / 2])
            across = np.abs(-(xx - c[0]) * math.sin(a) + (yy - c[1]) * math.cos(a))
            along = np.abs((xx - c[0]) * math.cos(a) + (yy - c[1]) * math.sin(a))
            alpha = np.clip((d.pitch * 0.6 - across) / 1.5, 0, 1) * np.clip((rng.uniform(15, 40) - along) / 3, 0, 1)
            img *= (1 - 0.55 * alpha)[..., None]
            return alpha.astype(np.float32)
        if kind == "hole":
            alpha = blob(rng, c, rng.uniform(3, 7), soft=0.3)
            mix(img, alpha, (20, 20, 20))
            return alpha
        if kind == "stain":
            alpha = blob(rng, c, rng.uniform(8, 18), soft=0.6) * rng.uniform(0.4, 0.7)
            mix(img, alpha, np.float32(rng.uniform(20, 120, 3)))
            return (alpha > 0.15).astype(np.float32)
        path = wander(rng, c, rng.uniform(20, 40), math.radians(d.angle) + rng.choice([0, math.pi / 2]), 0.02)
        alpha = cv2.GaussianBlur(stroke(path, int(rng.integers(3, 5))), (0, 0), 1.0)
        mix(img, alpha, d.warp * 1.15)
        return alpha


# ------------------------------------------------------------------------------------- tile
@dataclass
class _Tile:
    glaze: np.ndarray
    decor: np.ndarray
    period: int
    motif: np.ndarray  # period x period coverage


class Tile:
    name = "tile"
    defects = ("crack", "glaze_drop", "pinholes", "decor_missing")
    nuisance = Nuisance()

    def design(self, rng: np.random.Generator) -> _Tile:
        period = int(rng.integers(40, 70))
        motif = np.zeros((period, period), np.float32)
        kind = int(rng.integers(3))
        c = period // 2
        if kind == 0:
            cv2.circle(motif, (c, c), int(period * 0.3), 1.0, 3, cv2.LINE_AA)
        elif kind == 1:
            pts = np.array([[c, 4], [period - 4, c], [c, period - 4], [4, c]], np.int32)
            cv2.polylines(motif, [pts], True, 1.0, 3, cv2.LINE_AA)
        else:
            cv2.line(motif, (0, c), (period, c), 1.0, 2, cv2.LINE_AA)
            cv2.line(motif, (c, 0), (c, period), 1.0, 2, cv2.LINE_AA)
            cv2.circle(motif, (c, c), int(period * 0.15), 1.0, -1, cv2.LINE_AA)
        return _Tile(np.float32(rng.uniform(170, 240, 3)), np.float32(rng.uniform(20, 150, 3)), period, motif)

    def _decor(self, d: _Tile) -> np.ndarray:
        reps = CANVAS // d.period + 2
        return np.tile(d.motif, (reps, reps))[:CANVAS, :CANVAS]

    def part(self, d: _Tile, rng: np.random.Generator) -> np.ndarray:
        img = d.glaze[None, None, :] * (1.0 + 0.02 * smooth_noise(rng, (CANVAS, CANVAS), 8.0))[..., None]
        speck = (rng.random((CANVAS, CANVAS)) < 0.004).astype(np.float32)
        mix(img, cv2.GaussianBlur(speck, (0, 0), 0.6) * 0.8, d.glaze * 0.6)
        mix(img, self._decor(d) * rng.uniform(0.85, 1.0), d.decor)
        return img

    def flaw(self, kind: str, d: _Tile, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = inside(rng, 40)
        if kind == "crack":
            path = wander(rng, c, rng.uniform(40, 90), rng.uniform(0, 2 * math.pi), 0.4, 1.5)
            alpha = stroke(path, int(rng.integers(1, 3))) * rng.uniform(0.7, 0.9)
            mix(img, alpha, d.glaze * 0.35)
            return alpha
        if kind == "glaze_drop":
            alpha = blob(rng, c, rng.uniform(6, 12), soft=0.6)
            img *= (1 + 0.3 * alpha - 0.25 * np.roll(alpha, 3, axis=0))[..., None]
            return alpha
        if kind == "pinholes":
            alpha = np.zeros(img.shape[:2], np.float32)
            for _ in range(int(rng.integers(2, 5))):
                alpha = np.maximum(alpha, blob(rng, (c[0] + rng.uniform(-10, 10), c[1] + rng.uniform(-10, 10)),
                                               rng.uniform(2.5, 4.0), soft=0.5))
            mix(img, alpha, d.glaze * 0.2)
            return alpha
        decor = self._decor(d)  # a patch of the decor did not print: centred on printed decor
        ys, xs = np.nonzero(decor[PAD + 40 : PAD + SIZE - 40, PAD + 40 : PAD + SIZE - 40] > 0.5)
        k = int(rng.integers(len(xs)))
        region = blob(rng, (PAD + 40 + float(xs[k]), PAD + 40 + float(ys[k])), rng.uniform(6, 12), soft=0.2)
        alpha = region * decor
        mix(img, alpha, d.glaze)
        return alpha


# ----------------------------------------------------------------------------------- washer
@dataclass
class _Washer:
    metal: np.ndarray
    outer: float
    inner: float
    light: tuple[float, float]
    tab: float  # angle of the locating tab


class Washer:
    name = "washer"
    defects = ("notch", "burr", "scratch", "rust", "bent")
    nuisance = Nuisance()

    def design(self, rng: np.random.Generator) -> _Washer:
        return _Washer(metal(rng, 130, 200),
                       float(rng.uniform(90, 110)), float(rng.uniform(35, 50)), light_from(rng), float(rng.uniform(0, 2 * math.pi)))

    def part(self, d: _Washer, rng: np.random.Generator, squash: float = 1.0) -> np.ndarray:
        yy, xx = grid()
        dx, dy = xx - CANVAS / 2, (yy - CANVAS / 2) / squash
        r = np.sqrt(dx * dx + dy * dy)
        ring = np.clip((d.outer - r) / 1.2, 0, 1) * np.clip((r - d.inner) / 1.2, 0, 1)
        tx, ty = CANVAS / 2 + d.outer * math.cos(d.tab), CANVAS / 2 + d.outer * math.sin(d.tab)
        tab = np.clip((8 - np.sqrt((xx - tx) ** 2 + (yy - ty) ** 2)) / 1.2, 0, 1)
        body = np.maximum(ring, tab)
        height = cv2.GaussianBlur(body, (0, 0), 2.0) * 6
        img = np.full((CANVAS, CANVAS, 3), 35.0, np.float32) * (1 + 0.1 * smooth_noise(rng, (CANVAS, CANVAS), 2.0))[..., None]
        metal = d.metal[None, None, :] * shade(height + 0.5 * smooth_noise(rng, (CANVAS, CANVAS), 1.5), d.light, 0.3)[..., None]
        mix(img, body, (0, 0, 0))
        img += body[..., None] * metal
        self._r = r
        return img

    def flaw(self, kind: str, d: _Washer, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        at = rng.uniform(0, 2 * math.pi)
        radius = rng.uniform(d.inner + 12, d.outer - 12)
        c = (CANVAS / 2 + radius * math.cos(at), CANVAS / 2 + radius * math.sin(at))
        if kind in ("notch", "burr"):
            edge = d.outer if kind == "notch" else d.outer + 4
            p = (CANVAS / 2 + edge * math.cos(at), CANVAS / 2 + edge * math.sin(at))
            alpha = blob(rng, p, rng.uniform(5, 9), soft=0.2)
            mix(img, alpha, (35, 35, 35) if kind == "notch" else d.metal * 0.9)
            return alpha
        if kind == "scratch":
            alpha = stroke(wander(rng, c, rng.uniform(15, 35), rng.uniform(0, 2 * math.pi), 0.03), 1)
            img *= (1 - 0.4 * alpha)[..., None]
            return alpha
        if kind == "rust":
            alpha = blob(rng, c, rng.uniform(5, 10), rough=0.6, soft=0.6) * 0.8
            mix(img, alpha, (30, 60, 120))
            return alpha
        clean = img.copy()
        img[...] = self.part(d, rng, squash=rng.uniform(0.93, 0.96))
        return (np.abs(img - clean).mean(axis=2) > 25).astype(np.float32)


# ------------------------------------------------------------------------------- perforated
@dataclass
class _Perforated:
    metal: np.ndarray
    pitch: float
    radius: float
    stagger: bool
    light: tuple[float, float]


class Perforated:
    name = "perforated"
    defects = ("missing_hole", "partial_hole", "extra_hole", "dent")
    nuisance = Nuisance()

    def design(self, rng: np.random.Generator) -> _Perforated:
        pitch = float(rng.uniform(22, 34))
        return _Perforated(metal(rng, 110, 190),
                           pitch, float(pitch * rng.uniform(0.22, 0.32)), bool(rng.random() < 0.5), light_from(rng))

    def centres(self, d: _Perforated) -> list[tuple[float, float]]:
        out = []
        for j, y in enumerate(np.arange(d.pitch / 2, CANVAS, d.pitch)):
            off = d.pitch / 2 if d.stagger and j % 2 else 0.0
            out += [(float(x + off), float(y)) for x in np.arange(d.pitch / 2, CANVAS, d.pitch)]
        return out

    def part(self, d: _Perforated, rng: np.random.Generator, skip: int = -1, partial: int = -1) -> np.ndarray:
        img = d.metal[None, None, :] * (1 + 0.05 * smooth_noise(rng, (CANVAS, CANVAS), 10.0) + 0.02 * smooth_noise(rng, (CANVAS, CANVAS), 1.0))[..., None]
        holes = np.zeros((CANVAS, CANVAS), np.float32)
        for i, (x, y) in enumerate(self.centres(d)):
            if i == skip:
                continue
            r = d.radius * (0.45 if i == partial else 1.0)
            cv2.circle(holes, (int(x * 16), int(y * 16)), int(r * 16), 1.0, -1, cv2.LINE_AA, 4)
        mix(img, holes, (25, 25, 28))
        return img

    def flaw(self, kind: str, d: _Perforated, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cs = self.centres(d)
        visible = [i for i, (x, y) in enumerate(cs) if PAD + 30 < x < PAD + SIZE - 30 and PAD + 30 < y < PAD + SIZE - 30]
        i = visible[int(rng.integers(len(visible)))]
        x, y = cs[i]
        alpha = np.zeros(img.shape[:2], np.float32)
        if kind in ("missing_hole", "partial_hole"):
            img[...] = self.part(d, rng, skip=i) if kind == "missing_hole" else self.part(d, rng, partial=i)
            cv2.circle(alpha, (int(x), int(y)), int(d.radius) + 1, 1.0, -1)
            return alpha
        if kind == "extra_hole":
            p = (x + d.pitch / 2, y + (0 if d.stagger else d.pitch / 2))
            cv2.circle(alpha, (int(p[0] * 16), int(p[1] * 16)), int(d.radius * rng.uniform(0.4, 0.7) * 16), 1.0, -1, cv2.LINE_AA, 4)
            mix(img, alpha, (25, 25, 28))
            return alpha
        yy, xx = grid()
        c = inside(rng, 40)
        r = rng.uniform(8, 15)
        bump = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * r * r)).astype(np.float32)
        img *= shade(bump * rng.uniform(15, 30), d.light, 0.35)[..., None]
        return (bump > 0.3).astype(np.float32)


FAMILIES: tuple[Any, ...] = (Fabric(), Tile(), Washer(), Perforated(), *dev_structured.FAMILIES)
