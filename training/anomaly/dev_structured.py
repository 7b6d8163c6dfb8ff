"""Development products that are *aligned*: every part puts the same feature at the same place.

The first four development families (families_dev.py) are mostly textures; a model choice that
compares parts position by position has to be developed on products like the ones it is meant
for, and those must not be the held-out printed, assembled or machined families.  Two more:

* ``gear``      -- the face of a stamped spur gear on a dark belt: teeth, hub with a keyway,
  lightening holes and a stamped code;
* ``connector`` -- a moulded pin header seen from above: a dark housing, two rows of gold pins,
  a latch window and a printed pin-1 mark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from training.anomaly.scene import (
    CANVAS, Nuisance, blob, grid, light_from, metal, mix, shade, smooth_noise, stroke, text_alpha, wander,
)

MID = CANVAS / 2


# -------------------------------------------------------------------------------------- gear
@dataclass
class _Gear:
    metal: np.ndarray
    teeth: int
    root: float  # radius at the tooth roots
    depth: float  # tooth height
    bore: float
    holes: int
    hole_r: float
    hole_at: float  # radius of the lightening holes' centres
    code: str
    light: tuple[float, float]


class Gear:
    name = "gear"
    defects = ("broken_tooth", "blocked_hole", "dent", "code_missing", "chip")
    nuisance = Nuisance()

    def design(self, rng: np.random.Generator) -> _Gear:
        root = float(rng.uniform(92, 104))
        bore = float(rng.uniform(16, 24))
        return _Gear(metal(rng, 140, 210), int(rng.integers(18, 32)), root, float(rng.uniform(10, 14)), bore,
                     int(rng.integers(4, 7)), float(rng.uniform(11, 16)), float(rng.uniform(0.52, 0.6)) * root,
                     "".join(rng.choice(list("0123456789ABCDEFKMRT"), 5)), light_from(rng))

    def body(self, d: _Gear, skip_tooth: int = -1, block_hole: int = -1) -> np.ndarray:
        """Coverage of the gear's metal (0..1)."""
        yy, xx = grid()
        dx, dy = xx - MID, yy - MID
        r, a = np.sqrt(dx * dx + dy * dy), np.arctan2(dy, dx)
        phase = (a / (2 * math.pi) * d.teeth) % 1.0  # 0..1 along one tooth pitch
        profile = np.clip(1.0 - np.abs(phase - 0.5) * 4.0 + 0.6, 0, 1)  # flat top, sloped flanks
        if skip_tooth >= 0:
            which = np.floor((a / (2 * math.pi) * d.teeth) % d.teeth)
            profile = np.where(which == skip_tooth, 0.0, profile)
        outer = d.root + d.depth * profile
        cover = np.clip((outer - r) / 1.2, 0, 1) * np.clip((r - d.bore) / 1.2, 0, 1)
        key = (np.abs(dy) < d.bore * 0.3) & (dx > 0) & (r < d.bore + 5)  # keyway
        cover = np.where(key, 0.0, cover)
        for i in range(d.holes):
            if i == block_hole:
                continue
            t = 2 * math.pi * (i + 0.5) / d.holes
            hx, hy = MID + d.hole_at * math.cos(t), MID + d.hole_at * math.sin(t)
            cover *= np.clip((np.sqrt((xx - hx) ** 2 + (yy - hy) ** 2) - d.hole_r) / 1.2, 0, 1)
        return cover.astype(np.float32)

    def part(self, d: _Gear, rng: np.random.Generator, **changes: int) -> np.ndarray:
        cover = self.body(d, **changes)
        height = cv2.GaussianBlur(cover, (0, 0), 1.5) * 5 + 0.3 * smooth_noise(rng, (CANVAS, CANVAS), 1.2)
        img = np.full((CANVAS, CANVAS, 3), 30.0, np.float32) * (1 + 0.08 * smooth_noise(rng, (CANVAS, CANVAS), 3.0))[..., None]
        face = d.metal[None, None, :] * shade(height, d.light, 0.35)[..., None]
        mix(img, cover, (0, 0, 0))
        img += cover[..., None] * face
        code = self.code(d)
        img *= (1 - 0.45 * code * cover)[..., None]
        return img

    def code(self, d: _Gear) -> np.ndarray:
        org = (int(MID - d.bore - 8 - 9 * len(d.code) * 0.5), int(MID + d.bore + 22))
        return text_alpha(d.code, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)

    def flaw(self, kind: str, d: _Gear, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if kind == "broken_tooth":  # the tooth's metal gone: the belt shows
            gone = np.clip(self.body(d) - self.body(d, skip_tooth=int(rng.integers(d.teeth))), 0, 1)
            mix(img, gone, (30, 30, 30))
            return gone
        if kind == "blocked_hole":  # a lightening hole not punched: bare metal where the belt showed
            kept = np.clip(self.body(d, block_hole=int(rng.integers(d.holes))) - self.body(d), 0, 1)
            mix(img, kept, d.metal * 0.95)
            return kept
        if kind == "code_missing":  # part of the stamp did not take
            code = self.code(d)
            ys, xs = np.nonzero(code > 0.5)
            k = int(rng.integers(len(xs)))
            region = blob(rng, (float(xs[k]), float(ys[k])), rng.uniform(6, 10), soft=0.2) * code
            img /= (1 - 0.45 * region)[..., None]
            return (region > 0.3).astype(np.float32)
        cover = self.body(d)
        at = rng.uniform(0, 2 * math.pi)
        rad = rng.uniform(d.bore + 14, d.root - 10)
        c = (MID + rad * math.cos(at), MID + rad * math.sin(at))
        if kind == "dent":
            yy, xx = grid()
            r = rng.uniform(5, 9)
            bump = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * r * r)).astype(np.float32) * cover
            img *= shade(bump * rng.uniform(25, 40), d.light, 0.4)[..., None]
            return (bump > 0.3).astype(np.float32)
        alpha = blob(rng, c, rng.uniform(4, 8), rough=0.5, soft=0.3) * cover  # chip: bright bare metal
        mix(img, alpha, np.minimum(d.metal * 1.35, 255))
        return alpha


# --------------------------------------------------------------------------------- connector
@dataclass
class _Connector:
    housing: np.ndarray
    gold: np.ndarray
    pins: int  # per row
    pitch: float
    pin: float  # pin half-side
    width: float  # housing half-width
    mark: str


class Connector:
    name = "connector"
    defects = ("missing_pin", "bent_pin", "flash", "mark_smudge", "crack")
    nuisance = Nuisance()

    def design(self, rng: np.random.Generator) -> _Connector:
        pins = int(rng.integers(5, 9))
        pitch = float(rng.uniform(20, 26))
        return _Connector(np.float32(rng.uniform(25, 60, 3)), np.float32([60, 170, 215]) * rng.uniform(0.85, 1.05),
                          pins, pitch, float(pitch * rng.uniform(0.17, 0.22)), pins * pitch / 2 + 12,
                          "".join(rng.choice(list("JPX0123456789"), 3)))

    def centres(self, d: _Connector) -> list[tuple[float, float]]:
        x0 = MID - (d.pins - 1) * d.pitch / 2
        return [(x0 + i * d.pitch, MID + (j - 0.5) * d.pitch) for j in range(2) for i in range(d.pins)]

    def _square(self, centre: tuple[float, float], half: float) -> np.ndarray:
        """Coverage of an axis-aligned square (1 px soft edge), computed on its neighbourhood only."""
        out = np.zeros((CANVAS, CANVAS), np.float32)
        x0, x1 = max(0, int(centre[0] - half - 2)), min(CANVAS, int(centre[0] + half + 3))
        y0, y1 = max(0, int(centre[1] - half - 2)), min(CANVAS, int(centre[1] + half + 3))
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = (np.clip(half - np.abs(xx - centre[0]) + 0.5, 0, 1)
                             * np.clip(half - np.abs(yy - centre[1]) + 0.5, 0, 1))
        return out

    def part(self, d: _Connector, rng: np.random.Generator, skip: int = -1) -> np.ndarray:
        img = np.full((CANVAS, CANVAS, 3), 185.0, np.float32) * (1 + 0.03 * smooth_noise(rng, (CANVAS, CANVAS), 6.0))[..., None]
        yy, xx = grid()
        half_h = d.pitch + 14
        box = (np.clip(d.width - np.abs(xx - MID), 0, 1) * np.clip(half_h - np.abs(yy - MID), 0, 1)).astype(np.float32)
        mix(img, box, d.housing * (1 + 0.05 * rng.standard_normal()))
        img *= (1 + 0.05 * box * smooth_noise(rng, (CANVAS, CANVAS), 1.0))[..., None]  # moulded grain
        latch = self._square((MID, MID - half_h + 4), 9) * 0.8
        mix(img, latch, d.housing * 0.45)
        for i, (x, y) in enumerate(self.centres(d)):
            mix(img, self._square((x, y), d.pin + 3), d.housing * 0.5)  # the pin's well
            if i == skip:
                continue
            mix(img, self._square((x, y), d.pin), d.gold * (1 + 0.04 * rng.standard_normal()))
            mix(img, self._square((x - d.pin / 3, y - d.pin / 3), d.pin / 3) * 0.5, (200, 235, 250))  # glint
        mark = text_alpha(d.mark, (int(MID - d.width + 6), int(MID + half_h - 4)), cv2.FONT_HERSHEY_PLAIN, 0.8, 1)
        mix(img, mark * 0.9, (225, 225, 225))
        x0, y0 = self.centres(d)[0]
        mix(img, blob(np.random.default_rng(0), (x0 - d.pitch / 2 - 1, y0 - d.pitch / 2 + 1), 2.5, rough=0, soft=0.3),
            (225, 225, 225))  # pin-1 dot
        return img

    def flaw(self, kind: str, d: _Connector, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cs = self.centres(d)
        i = int(rng.integers(len(cs)))
        x, y = cs[i]
        if kind == "missing_pin":  # the empty well
            alpha = self._square((x, y), d.pin + 0.5)
            mix(img, alpha, d.housing * 0.5)
            return alpha
        if kind == "bent_pin":  # the pin's tip leans over: a gold stroke off its place
            angle = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(0.4, 0.6) * d.pitch
            tip = (x + length * math.cos(angle), y + length * math.sin(angle))
            alpha = stroke(np.array([(x, y), tip]), max(2, int(d.pin)))
            mix(img, alpha, d.gold)
            return alpha
        if kind == "flash":  # excess plastic over a well
            alpha = blob(rng, (x + rng.uniform(-4, 4), y + rng.uniform(-4, 4)), rng.uniform(5, 8), rough=0.5, soft=0.3)
            mix(img, alpha, d.housing * 1.3)
            return alpha
        if kind == "mark_smudge":
            half_h = d.pitch + 14
            c = (MID - d.width + 6 + rng.uniform(0, 20), MID + half_h - 8)
            alpha = blob(rng, c, rng.uniform(5, 9), soft=0.6) * 0.8
            mix(img, alpha, (170, 170, 170))
            return (alpha > 0.15).astype(np.float32)
        start = (MID + rng.uniform(-d.width + 12, d.width - 12), MID + rng.uniform(-20, 20))  # crack in the housing
        path = wander(rng, start, rng.uniform(20, 40), rng.uniform(0, 2 * math.pi), 0.3, 1.5)
        alpha = stroke(path, 1) * 0.9
        mix(img, alpha, (200, 200, 200))
        return alpha


FAMILIES = (Gear(), Connector())
