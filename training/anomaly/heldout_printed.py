"""Held-out printed products: a label and a populated circuit board (see families_heldout.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from training.anomaly.scene import (
    CANVAS, PAD, SIZE, Nuisance, blob, inside, mix, smooth_noise, stroke, text_alpha, wander,
)

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def _text(rng: np.random.Generator, n: int) -> str:
    return "".join(LETTERS[int(i)] for i in rng.integers(0, len(LETTERS), n))


# ------------------------------------------------------------------------------------ label
@dataclass
class _Label:
    paper: np.ndarray
    ink: np.ndarray
    band: np.ndarray
    lines: list[tuple[str, int, int, float]]  # text, x, y, scale
    header: str
    bars: np.ndarray  # bar widths (alternating black/white)
    bar_box: tuple[int, int, int]  # x, y, height
    logo: tuple[int, int, int]  # x, y, radius


class Label:
    name = "label"
    defects = ("missing_print", "smear", "blot", "void", "crease")
    nuisance = Nuisance()

    def design(self, rng: np.random.Generator) -> _Label:
        paper = np.float32(rng.uniform(215, 245)) * rng.uniform(0.96, 1.0, 3).astype(np.float32)
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(120, 230), rng.integers(80, 190)]]])
        band = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
        lines = []
        y = PAD + 92
        while y < PAD + 200:
            scale = float(rng.uniform(0.45, 0.7))
            lines.append((_text(rng, int(rng.integers(6, 12))), PAD + int(rng.integers(12, 30)), y, scale))
            y += int(30 * scale + rng.integers(12, 20))
        bars = rng.integers(1, 5, int(rng.integers(26, 36))).astype(np.int32)
        return _Label(paper, np.float32([25, 25, 30]), band, lines, _text(rng, int(rng.integers(4, 8))), bars,
                      (PAD + int(rng.integers(20, 60)), PAD + 212, int(rng.integers(26, 34))),
                      (PAD + 220, PAD + 40, int(rng.integers(12, 18))))

    def part(self, d: _Label, rng: np.random.Generator) -> np.ndarray:
        fibre = 1.0 + 0.02 * smooth_noise(rng, (CANVAS, CANVAS), 1.0) + 0.015 * smooth_noise(rng, (CANVAS, CANVAS), 6.0)
        img = d.paper[None, None, :] * fibre[..., None]
        jx, jy = (int(v) for v in rng.integers(-1, 2, 2))  # print registration, per part
        cv2.rectangle(img, (PAD + 6 + jx, PAD + 8 + jy), (PAD + SIZE - 6 + jx, PAD + 62 + jy), d.band.tolist(), -1)
        mix(img, text_alpha(d.header, (PAD + 16 + jx, PAD + 48 + jy), cv2.FONT_HERSHEY_DUPLEX, 1.1, 2), d.paper)
        cv2.circle(img, (d.logo[0] + jx, d.logo[1] + jy), d.logo[2], d.paper.tolist(), -1, cv2.LINE_AA)
        cv2.circle(img, (d.logo[0] + jx, d.logo[1] + jy), d.logo[2] // 2, d.band.tolist(), -1, cv2.LINE_AA)
        density = rng.uniform(0.88, 1.0)
        ink = d.paper * (1 - density) + d.ink * density
        for text, x, y, scale in d.lines:
            mix(img, text_alpha(text, (x + jx, y + jy), cv2.FONT_HERSHEY_SIMPLEX, scale, 1), ink)
        x, y, h = d.bar_box
        for i, w in enumerate(d.bars):
            if i % 2 == 0:
                cv2.rectangle(img, (x + jx, y + jy), (x + jx + int(w) - 1, y + jy + h), ink.tolist(), -1)
            x += int(w) + 1
        cv2.rectangle(img, (PAD + 2, PAD + 2), (PAD + SIZE - 3, PAD + SIZE - 3), (ink * 0.5 + d.paper * 0.5).tolist(), 1)
        return img

    def flaw(self, kind: str, d: _Label, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        alpha = np.zeros(img.shape[:2], np.float32)
        if kind == "missing_print":  # a run of characters did not print
            text, x, y, scale = d.lines[int(rng.integers(len(d.lines)))]
            w = int(rng.uniform(14, 40))
            x0 = x + int(rng.integers(0, max(1, int(len(text) * 20 * scale) - w)))
            cv2.rectangle(alpha, (x0, y - int(24 * scale) - 2), (x0 + w, y + 3), 1.0, -1)
            mix(img, alpha, d.paper)
        elif kind == "smear":  # wet ink dragged across the print
            path = wander(rng, inside(rng, 50), rng.uniform(25, 60), rng.uniform(0, 2 * math.pi), 0.05)
            alpha = cv2.GaussianBlur(stroke(path, int(rng.integers(4, 9))), (0, 0), 1.5) * rng.uniform(0.35, 0.6)
            mix(img, alpha, d.ink)
        elif kind == "blot":
            alpha = blob(rng, inside(rng, 30), rng.uniform(3, 8), soft=0.2)
            mix(img, alpha, d.ink * rng.uniform(1.0, 2.0))
        elif kind == "void":  # unprinted spots in the header band
            c = (rng.uniform(PAD + 20, PAD + SIZE - 20), rng.uniform(PAD + 14, PAD + 56))
            alpha = blob(rng, c, rng.uniform(3, 7), rough=0.5)
            mix(img, alpha, d.paper)
        else:  # crease: a fold line, dark on one side, light on the other
            c = inside(rng, 60)
            heading = rng.uniform(0, math.pi)
            path = wander(rng, c, rng.uniform(60, 140), heading, 0.01)
            dark = cv2.GaussianBlur(stroke(path, 2), (0, 0), 1.0)
            light = np.roll(dark, 2, axis=0)
            img *= (1.0 - 0.22 * dark + 0.08 * light)[..., None]
            alpha = np.maximum(dark, light)
        return alpha


# -------------------------------------------------------------------------------------- pcb
@dataclass
class _Board:
    mask: np.ndarray
    copper: np.ndarray
    traces: list[np.ndarray]
    chips: list[tuple[int, int, int, int, np.ndarray]]  # x, y, w, h, body colour
    ics: list[tuple[int, int, int, int, int]]  # x, y, w, h, pins per side
    vias: list[tuple[int, int]]
    silk: list[tuple[str, int, int]]


class Pcb:
    name = "pcb"
    defects = ("missing_component", "solder_bridge", "broken_trace", "particle", "burn", "misplaced")
    nuisance = Nuisance()

    def design(self, rng: np.random.Generator) -> _Board:
        hue = {0: (60, 110, 40), 1: (120, 60, 20), 2: (35, 35, 140), 3: (40, 40, 40)}[int(rng.choice(4, p=[.6, .2, .1, .1]))]
        mask = np.float32(hue) * rng.uniform(0.85, 1.15)
        traces = []
        for _ in range(int(rng.integers(7, 12))):
            x, y = rng.uniform(PAD, PAD + SIZE, 2)
            pts = [(x, y)]
            for _ in range(int(rng.integers(2, 5))):
                step = rng.uniform(30, 90)
                ang = rng.choice([0, 45, 90, 135, 180, 225, 270, 315]) * math.pi / 180
                x, y = x + step * math.cos(ang), y + step * math.sin(ang)
                pts.append((x, y))
            traces.append(np.asarray(pts))
        ics = [(PAD + int(rng.integers(30, 90)), PAD + int(rng.integers(30, 90)), int(rng.integers(50, 70)),
                int(rng.integers(30, 46)), int(rng.integers(5, 9)))]
        chips = []
        while len(chips) < int(rng.integers(5, 9)):
            w, h = (int(v) for v in (rng.integers(10, 18), rng.integers(5, 9)))
            if rng.random() < 0.5:
                w, h = h, w
            x, y = (int(v) for v in rng.integers(PAD + 20, PAD + SIZE - 30, 2))
            boxes = [(c[0], c[1], c[2], c[3]) for c in chips] + [(i[0] - 8, i[1] - 8, i[2] + 16, i[3] + 16) for i in ics]
            if all(x + w + 6 < bx or bx + bw + 6 < x or y + h + 6 < by or by + bh + 6 < y for bx, by, bw, bh in boxes):
                body = np.float32([40, 40, 40]) if rng.random() < 0.5 else np.float32([140, 170, 190])
                chips.append((x, y, w, h, body))
        vias = [tuple(int(v) for v in rng.integers(PAD + 10, PAD + SIZE - 10, 2)) for _ in range(int(rng.integers(6, 14)))]
        silk = [(_text(rng, 3), PAD + int(rng.integers(10, 200)), PAD + int(rng.integers(20, 240))) for _ in range(3)]
        return _Board(mask, np.float32([60, 150, 200]) * 0.7 + mask * 0.3, traces, chips, ics, vias, silk)

    def _chip(self, img: np.ndarray, c: tuple, rng: np.random.Generator, offset=(0.0, 0.0), turn=0.0) -> None:
        x, y, w, h, body = c
        cx, cy = x + w / 2 + offset[0], y + h / 2 + offset[1]
        for end in (-1, 1):  # solder joints at the two ends, along the long side
            ex, ey = (cx + end * (w / 2 - 1), cy) if w >= h else (cx, cy + end * (h / 2 - 1))
            cv2.circle(img, (int(ex), int(ey)), int(min(w, h) // 2 + 1), (185, 190, 195), -1, cv2.LINE_AA)
        box = cv2.boxPoints(((cx, cy), (w * 0.75 if w >= h else w, h if w >= h else h * 0.75), turn))
        cv2.fillPoly(img, [np.round(box * 16).astype(np.int32)], body.tolist(), cv2.LINE_AA, 4)

    def _pads(self, img: np.ndarray, d: _Board) -> None:
        for x, y, w, h, _ in d.chips:
            for end in (-1, 1):
                ex, ey = (x + w / 2 + end * (w / 2 - 1), y + h / 2) if w >= h else (x + w / 2, y + h / 2 + end * (h / 2 - 1))
                cv2.circle(img, (int(ex), int(ey)), int(min(w, h) // 2 + 1), (150, 165, 175), -1, cv2.LINE_AA)

    def _ic_pins(self, ic: tuple[int, int, int, int, int]) -> list[tuple[int, int, int, int]]:
        x, y, w, h, n = ic
        pitch = (w - 8) / n
        pins = []
        for i in range(n):
            px = int(x + 4 + i * pitch + pitch / 2)
            pins += [(px - 2, y - 6, 4, 8), (px - 2, y + h - 2, 4, 8)]
        return pins

    def part(self, d: _Board, rng: np.random.Generator) -> np.ndarray:
        tex = 1.0 + 0.03 * smooth_noise(rng, (CANVAS, CANVAS), 2.0)
        img = d.mask[None, None, :] * tex[..., None]
        for t in d.traces:
            cv2.polylines(img, [np.round(t * 16).astype(np.int32)], False, d.copper.tolist(), 4, cv2.LINE_AA, 4)
        for vx, vy in d.vias:
            cv2.circle(img, (vx, vy), 4, (90, 170, 200), -1, cv2.LINE_AA)
            cv2.circle(img, (vx, vy), 2, (20, 20, 20), -1, cv2.LINE_AA)
        for text, x, y in d.silk:
            mix(img, text_alpha(text, (x, y), cv2.FONT_HERSHEY_PLAIN, 0.9, 1), (235, 235, 235))
        self._pads(img, d)
        for c in d.chips:
            self._chip(img, c, rng, tuple(rng.uniform(-0.7, 0.7, 2)), rng.uniform(-2, 2))
        for ic in d.ics:
            for px, py, pw, ph in self._ic_pins(ic):
                cv2.rectangle(img, (px, py), (px + pw, py + ph), (180, 185, 190), -1)
            x, y, w, h, _ = ic
            cv2.rectangle(img, (x, y), (x + w, y + h), (30, 30, 32), -1)
            cv2.circle(img, (x + 6, y + 6), 2, (70, 70, 70), -1)
        return img

    def flaw(self, kind: str, d: _Board, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        alpha = np.zeros(img.shape[:2], np.float32)
        if kind in ("missing_component", "misplaced"):
            c = d.chips[int(rng.integers(len(d.chips)))]
            x, y, w, h, _ = c
            region = (slice(y - 6, y + h + 6), slice(x - 6, x + w + 6))
            clean = self.part_background(d, rng)
            img[region] = clean[region]
            if kind == "misplaced":
                self._chip(img, c, rng, tuple(rng.choice([-1, 1], 2) * rng.uniform(3, 6, 2)), rng.uniform(12, 30))
            alpha[region] = 1.0
        elif kind == "solder_bridge":
            pins = self._ic_pins(d.ics[0])
            i = int(rng.integers(0, len(pins) // 2 - 1)) * 2 + int(rng.integers(2))
            (ax, ay, aw, ah), (bx, by, bw, bh) = pins[i], pins[i + 2]
            cv2.rectangle(alpha, (ax + aw // 2, ay + 1), (bx + bw // 2, by + bh - 1), 1.0, -1)
            alpha = cv2.GaussianBlur(alpha, (0, 0), 0.7)
            mix(img, alpha, (190, 195, 200))
        elif kind == "broken_trace":  # a point on a trace, well inside the frame
            on = [a + (b - a) * f for t in d.traces for a, b in zip(t[:-1], t[1:]) for f in np.linspace(0, 1, 20)]
            on = [q for q in on if PAD + 20 < q[0] < PAD + SIZE - 20 and PAD + 20 < q[1] < PAD + SIZE - 20]
            p = on[int(rng.integers(len(on)))]
            cv2.circle(alpha, (int(p[0]), int(p[1])), int(rng.integers(4, 7)), 1.0, -1, cv2.LINE_AA)
            mix(img, alpha, d.mask * 0.9)
        elif kind == "particle":
            path = wander(rng, inside(rng, 30), rng.uniform(5, 16), rng.uniform(0, 2 * math.pi), 0.5, 1.0)
            alpha = stroke(path, int(rng.integers(1, 3)))
            mix(img, alpha, (230, 230, 225) if rng.random() < 0.5 else (15, 15, 15))
        elif kind == "burn":
            alpha = blob(rng, inside(rng, 30), rng.uniform(6, 14), soft=0.6) * rng.uniform(0.7, 1.0)
            mix(img, alpha, (20, 40, 60))
        return alpha

    def part_background(self, d: _Board, rng: np.random.Generator) -> np.ndarray:
        """The board with the chip positions bare (pads only), for a missing or moved chip."""
        tex = 1.0 + 0.03 * smooth_noise(rng, (CANVAS, CANVAS), 2.0)
        img = d.mask[None, None, :] * tex[..., None]
        for t in d.traces:
            cv2.polylines(img, [np.round(t * 16).astype(np.int32)], False, d.copper.tolist(), 4, cv2.LINE_AA, 4)
        self._pads(img, d)
        return img
