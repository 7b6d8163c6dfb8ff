"""Learn a product's good look: fit the visual anomaly model and set its threshold, NumPy only.

The model (:mod:`edge_inspector.learn.visual_graph`): light-normalised patches at three scales,
coded by the principal components of the good parts' own patches, each scored by the distance
to the nearest remembered good code, in units of the held-out spread at its position.  The
codes are learnt from the line's good parts themselves, so the model needs no downloaded
weights and fits a product nobody has seen; the nearest-neighbour memory fits a part whose
regions look nothing alike (print and paper, pads and solder mask).  ``training/anomaly`` has
the comparison with the alternatives measured (the shipped CNN's early layers, random filters,
PCA reconstruction error) on development products.

Two layouts of the same codes, chosen per product from its good parts (``LearnOptions.layout``):
the position-free memory above, for textures and parts that do not line up, and per-position
statistics of frames registered to the good parts' reference view
(:mod:`edge_inspector.learn.visual_aligned`, :mod:`edge_inspector.inspectors.alignment`), for
printed, assembled and machined parts that arrive the same way up, where a familiar patch in the
wrong place is the defect.  ``auto`` fits both on the same folds and keeps the one that better
tells held-out good parts from the same parts with a painted defect.

Every figure that sets the threshold comes from good images the model did not see: the images
are dealt round-robin into :data:`FOLDS` folds, each scored by a model fitted on the others.
Those held-out scores give the per-position spread (step 4 of the graph) and, through a Gumbel
law fitted to the image scores (each the maximum of a map: the law of maxima) by their median
and 90th percentile, the threshold for the asked false-reject rate: 200 images cannot show a
1 % quantile directly, and one odd image must not stretch it.  The final model uses every image.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edge_inspector.learn.visual_graph import PatchKnn, ScaleCodes, write_graph

FOLDS = 5
MIN_IMAGES = 20  # fewer cannot give a spread per position, let alone a threshold


@dataclass
class LearnOptions:
    components: int = 24  # patch code dimensions per scale
    bank: int = 1024  # remembered good codes per scale
    offset: float = 0.1  # light normalisation
    grid: int = 32  # cells per side of the score map
    smooth: int = 3  # mean over this many cells of the final map (1: none)
    scales: tuple[tuple[int, int, int], ...] = ((1, 8, 8), (2, 8, 4), (4, 8, 2))  # (down, patch, stride)
    patches: int = 40000  # patches sampled per scale for the principal components
    candidates: int = 20000  # codes the memory is chosen from (greedy k-centre)
    residual: float = 0.0  # weight of the unexplained-energy code (0: left out)
    whiten: float = 0.5  # each code direction divided by its spread ** this (1: all alike, 0: plain PCA)
    layout: str = "auto"  # "free" memory, "aligned" per-position statistics, or "auto": decided per product
    shrink: float = 0.05  # aligned: covariance shrinkage towards this x identity
    max_false_reject: float = 0.01
    threads: int = 0  # ONNX Runtime threads while learning (0: all cores)


@dataclass
class Calibrated:
    """The threshold and what it was set on."""

    threshold: float  # raw image score above which a part is rejected
    score_scale: float
    map_threshold: float  # raw cell score for the box
    held_out: np.ndarray  # held-out good image scores (the card's histogram)
    typical: float  # their median
    rate_at_threshold: float  # the fitted law's false-reject rate at the threshold
    rate_observed: float  # share of held-out images at or above it
    warning: str = ""  # when the images are too few for the asked rate


@dataclass
class Learnt:
    model: PatchKnn
    calibrated: Calibrated
    held_out_maps: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    reference: np.ndarray | None = None  # aligned layout: the mean registered good input tensor [C, H, W]
    choice: str = ""  # which layout, and why (for the card and the manifest's method)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run(model: PatchKnn, stage: str, inputs: np.ndarray, shape: tuple[int, int, int], threads: int,
         batch: int = 16) -> list[np.ndarray]:
    """Run the graph up to ``stage`` on the input tensors (what the daemon computes, exactly)."""
    with tempfile.TemporaryDirectory(prefix="edge-learn-") as tmp:
        path = Path(tmp) / f"{stage}.onnx"
        write_graph(model, path, shape, stage=stage)
        sess = _session(path, threads)
        names = [o.name for o in sess.get_outputs()]
        parts = [sess.run(names, {"image": inputs[a : a + batch]}) for a in range(0, len(inputs), batch)]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(names))]


def _principal_codes(light: np.ndarray, down: int, patch: int, stride: int, d: int, n: int,
                     rng: np.random.Generator, residual: float = 0.0, whiten: float = 1.0) -> ScaleCodes:
    """Principal components of ``n`` random patches of the light-normalised images, each divided
    by its spread ** ``whiten``.  Full whitening (1) lets the faintest kept direction, mostly sensor
    noise and JPEG blocks, count as much as the part's main structure; halfway (0.5) keeps the
    small directions audible without drowning the large ones (development products: image
    AUROC +0.02-0.04 on the tile and washer, the same on fabric and perforated sheet)."""
    views = light if down == 1 else light.reshape(*light.shape[:2], light.shape[2] // down, down,
                                                  light.shape[3] // down, down).mean(axis=(3, 5))
    N, C, H, W = views.shape
    idx = rng.integers(0, N, n)
    ys, xs = rng.integers(0, H - patch + 1, n), rng.integers(0, W - patch + 1, n)
    X = np.stack([views[i, :, y : y + patch, x : x + patch].reshape(-1) for i, y, x in zip(idx, ys, xs)]).astype(np.float64)
    mu = X.mean(axis=0)
    ev, evec = np.linalg.eigh(np.cov((X - mu).T))
    ev, evec = ev[::-1], evec[:, ::-1]
    d = min(d, X.shape[1])
    noise = float(ev[d:].mean()) if d < len(ev) else 1e-6
    spread = ev[:d] + max(noise, 1e-9)
    gain = spread ** (-0.5 * whiten)
    gain /= np.sqrt(np.mean(spread * gain**2))  # codes of unit mean variance, whatever ``whiten``
    w = evec[:, :d] * gain[None]
    weight = w.T.reshape(d, C, patch, patch).astype(np.float32)
    # ``variance``: what one unit of each code is worth in patch energy (the residual code's arithmetic)
    return ScaleCodes(down, patch, stride, weight, (-(mu @ w)).astype(np.float32), residual, mu.astype(np.float32),
                      (1.0 / gain**2).astype(np.float32), max(noise, 1e-9))


def coreset(x: np.ndarray, k: int, rng: np.random.Generator, candidates: int) -> np.ndarray:
    """``k`` rows of ``x`` spread over it (greedy k-centre on a random subset of ``candidates``):
    the memory covers rare good patches as well as frequent ones."""
    if len(x) > candidates:
        x = x[rng.choice(len(x), candidates, replace=False)]
    if len(x) <= k:
        return np.ascontiguousarray(x, np.float32)
    x = x.astype(np.float32)
    chosen = [int(rng.integers(len(x)))]
    dist = np.sum((x - x[chosen[0]]) ** 2, axis=1)
    for _ in range(k - 1):
        i = int(np.argmax(dist))
        chosen.append(i)
        np.minimum(dist, np.sum((x - x[i]) ** 2, axis=1), out=dist)
    return np.ascontiguousarray(x[chosen])


def nearest(codes: np.ndarray, bank: np.ndarray, block: int = 8192) -> np.ndarray:
    """Distance of each row of ``codes`` to its nearest ``bank`` row (float32, as the graph)."""
    b2 = np.sum(bank * bank, axis=1)
    out = np.empty(len(codes), np.float32)
    for a in range(0, len(codes), block):
        y = codes[a : a + block]
        d2 = np.sum(y * y, axis=1)[:, None] - 2.0 * (y @ bank.T) + b2[None]
        out[a : a + block] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def _flat(codes: np.ndarray) -> np.ndarray:
    """[N, d, G, G] -> [N*G*G, d]"""
    return np.ascontiguousarray(codes.transpose(0, 2, 3, 1).reshape(-1, codes.shape[1]))


def combine(zmaps: list[np.ndarray], grid: int, smooth: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of the graph's step 5: finer maps max-pooled to the grid, per-cell maximum over
    scales, 3x3 mean -> (maps, scores)."""
    pooled = []
    for z in zmaps:
        side = z.shape[-1]
        if side > grid:
            k = side // grid
            z = z.reshape(len(z), grid, k, grid, k).max(axis=(2, 4))
        elif side < grid:
            k = grid // side
            z = np.repeat(np.repeat(z, k, axis=1), k, axis=2)
        pooled.append(z)
    top = np.max(pooled, axis=0).astype(np.float32)
    if smooth > 1:
        kw = dict(ksize=(smooth, smooth), normalize=False, borderType=cv2.BORDER_CONSTANT)
        count = cv2.boxFilter(np.ones(top.shape[1:], np.float32), -1, **kw)
        top = np.stack([cv2.boxFilter(m, -1, **kw) / count for m in top])
    return top, top.reshape(len(top), -1).max(axis=1)


def gumbel_quantile(scores: np.ndarray, p: float) -> tuple[float, float, float]:
    """Quantile ``p`` of a Gumbel law fitted to ``scores`` by their median and 90th percentile,
    and the law's (mu, beta)."""
    q50, q90 = (float(v) for v in np.quantile(scores, [0.5, 0.9]))
    beta = max((q90 - q50) / (math.log(-math.log(0.5)) - math.log(-math.log(0.9))), 1e-6)
    mu = q50 + beta * math.log(-math.log(0.5))
    return mu - beta * math.log(-math.log(p)), mu, beta


def calibrate(scores: np.ndarray, rate: float) -> Calibrated:
    """Threshold, scale and box threshold from held-out good image scores (module docstring)."""
    threshold, mu, beta = gumbel_quantile(scores, 1.0 - rate)
    typical = float(np.median(scores))
    if len(scores) * rate < 1.0:  # not one reject expected among them: stay above every one
        threshold = max(threshold, float(np.nextafter(np.max(scores), np.inf)))
    law_rate = 1.0 - math.exp(-math.exp(-(threshold - mu) / beta))
    warning = ""
    if len(scores) * rate < 2.0:
        warning = (f"only {len(scores)} good images held out: a false-reject rate of {rate:.2%} is estimated from a "
                   f"law fitted to their scores, not observed (about {math.ceil(2.0 / rate)} images would show it); "
                   "check it with `edge-inspector calibrate` on more good parts")
    scale = max((threshold - typical) / 3.0, 1e-6)  # a typical good part lands at sigmoid(-3) ~ 0.05
    # cells that make the box: clearly above what good parts reach, a little below the image threshold
    map_threshold = typical + 0.75 * (threshold - typical)
    return Calibrated(threshold, scale, map_threshold, scores, typical, law_rate,
                      float(np.mean(scores >= threshold)), warning)


def learn(inputs: np.ndarray, contract: Any, options: LearnOptions,
          progress: Callable[[str], None] = lambda _m: None) -> Learnt:
    """Fit on ``inputs`` (the input tensors of the good images, [N, 3, H, W]) and calibrate on
    held-out folds; the final model uses every image."""
    from edge_inspector.errors import UserError

    n = len(inputs)
    if n < MIN_IMAGES:
        raise UserError(f"only {n} good image(s); learning needs at least {MIN_IMAGES} (200 or more recommended)")
    shape = tuple(int(v) for v in inputs.shape[1:])
    if shape[1] % (8 * max(s[0] for s in options.scales)) or shape[1] != shape[2]:
        raise UserError(f"input shape {shape}: learn needs a square input whose side is a multiple of 32")
    rng = np.random.default_rng(20240611)
    model = PatchKnn(tuple(contract.mean), tuple(contract.std), options.offset, options.grid, [], options.smooth)
    progress(f"light-normalising {n} images")
    light = _run(model, "light", inputs, shape, options.threads)[0]
    for down, patch, stride in options.scales:
        model.scales.append(_principal_codes(light, down, patch, stride, options.components, options.patches, rng,
                                             options.residual, options.whiten))
    del light
    progress(f"patch codes at {len(model.scales)} scales")
    codes = _run(model, "codes", inputs, shape, options.threads)
    folds = np.arange(n) % FOLDS
    memory = _layout_free(options, rng)
    free = held_out(codes, folds, memory, "memory", progress, options.grid, options.smooth)
    chosen, reference, choice = free, None, "position-free memory (asked)"
    if options.layout != "free":
        from edge_inspector.inspectors.alignment import Aligner, learn_reference
        from edge_inspector.learn.visual_aligned import choose, gauss_distance, gauss_fit

        progress("registering the good parts to their reference view")
        reference = learn_reference(inputs)
        aligner = Aligner(reference)
        registered, warps = aligner.register(inputs)
        aligned = held_out(_run(model, "codes", registered, shape, options.threads), folds,
                           Layout(lambda c: gauss_fit(c, options.shrink), lambda c, st: gauss_distance(c, *st)),
                           "per-position statistics", progress, options.grid,
                           options.smooth)
        if options.layout == "aligned":
            chosen, choice = aligned, "per-position statistics of registered parts (asked)"
        else:
            progress("choosing: painted defects on held-out good parts")
            chosen, choice = choose(free, aligned, inputs, aligner, warps, tuple(contract.std),
                                    lambda x: _run(model, "codes", x, shape, options.threads))
        if chosen is free:
            reference = None
        else:  # the card draws the held-out maps over the frames as they came
            chosen.maps = Aligner.unwarp_maps(chosen.maps[:, None], warps)[:, 0]
    progress("threshold")
    calibrated = calibrate(chosen.scores, options.max_false_reject)
    progress("final model from every image")
    for s, c in enumerate(chosen.codes):
        scale = model.scales[s]
        scale.mean, scale.inv_std = chosen.spreads[s]
        if chosen is free:
            scale.bank = coreset(_flat(c), options.bank, rng, options.candidates)
        else:
            scale.centres, scale.chol = chosen.layout.fit(c)
    return Learnt(model, calibrated, chosen.maps, reference, choice)


@dataclass
class Layout:
    """How one scale's good codes are remembered (``fit``) and a code map is scored (``distance``)."""

    fit: Callable[[np.ndarray], Any]  # codes [N, d, G, G] -> state
    distance: Callable[[np.ndarray, Any], np.ndarray]  # codes, state -> [N, G, G]


@dataclass
class HeldOut:
    """One layout's held-out figures: every good image scored by a model fitted on the other folds."""

    layout: Layout
    codes: list[np.ndarray]  # per scale, every image's codes
    folds: np.ndarray
    states: list[list[Any]]  # [fold][scale]
    fold_spreads: list[list[tuple[np.ndarray, np.ndarray]]]  # [fold][scale]: the other folds' spread
    spreads: list[tuple[np.ndarray, np.ndarray]]  # per scale, over every image
    maps: np.ndarray
    scores: np.ndarray
    smooth: int = 3
    grid: int = 32

    def score(self, codes: list[np.ndarray], fold: int) -> np.ndarray:
        """Image scores of ``codes`` by the model of ``fold`` (a model that did not see that fold)."""
        z = [(self.layout.distance(c, st) - m) * inv
             for c, st, (m, inv) in zip(codes, self.states[fold], self.fold_spreads[fold])]
        return combine(z, self.grid, self.smooth)[1]


def _layout_free(options: LearnOptions, rng: np.random.Generator) -> Layout:
    return Layout(lambda c: coreset(_flat(c), options.bank, rng, options.candidates),
                  lambda c, bank: nearest(_flat(c), bank).reshape(-1, *c.shape[2:]))


def held_out(codes: list[np.ndarray], folds: np.ndarray, layout: Layout, what: str,
             progress: Callable[[str], None], grid: int = 32, smooth: int = 3) -> HeldOut:
    """Score each fold with ``layout`` fitted on the others; a fold's positions are normalised by
    the other folds' spread, as new parts are."""
    n = len(folds)
    held = [np.empty((n, *c.shape[2:]), np.float32) for c in codes]
    states: list[list[Any]] = []
    for f in range(FOLDS):
        progress(f"{what}: held-out fold {f + 1}/{FOLDS}")
        states.append([layout.fit(c[folds != f]) for c in codes])
        for s, c in enumerate(codes):
            held[s][folds == f] = layout.distance(c[folds == f], states[f][s])
    fold_spreads = [[_spread(h[folds != f]) for h in held] for f in range(FOLDS)]
    zmaps = [np.empty_like(h) for h in held]
    for s, h in enumerate(held):
        for f in range(FOLDS):
            mean, inv = fold_spreads[f][s]
            zmaps[s][folds == f] = (h[folds == f] - mean) * inv
    maps, scores = combine(zmaps, grid, smooth)
    return HeldOut(layout, codes, folds, states, fold_spreads, [_spread(h) for h in held], maps, scores, smooth, grid)


def _spread(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-position mean and inverse spread of held-out good distances (the spread floored at a
    tenth of its median, so a position where every good part looks alike cannot explode)."""
    spread = distances.std(axis=0)
    inv = 1.0 / (spread + 0.1 * float(np.median(spread)) + 1e-6)
    return distances.mean(axis=0).astype(np.float32), inv.astype(np.float32)


def numpy_scores(model: PatchKnn, codes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """What the final graph computes from the codes (a check of the written graph)."""
    from edge_inspector.learn.visual_aligned import gauss_distance

    zmaps = [((gauss_distance(c, s.centres, s.chol) if s.chol.size else nearest(_flat(c), s.bank).reshape(-1, *c.shape[2:]))
              - s.mean) * s.inv_std for s, c in zip(model.scales, codes)]
    return combine(zmaps, model.grid, model.smooth)
