"""Per-position statistics of registered good parts: the aligned layout of the visual anomaly model.

Where every good part shows the same thing at the same place once registered
(:mod:`edge_inspector.inspectors.alignment`), each cell of the code map gets its own Gaussian:
the mean of the good parts' codes there and their covariance (PaDiM's idea on the model's own
patch codes).  A part is scored by the Mahalanobis distance of each cell's code to its cell's
Gaussian, so a familiar patch in the wrong place (a dark well where a pin belongs) is as far off
as a foreign one.  The covariance is shrunk towards ``shrink`` x identity (codes have unit mean
variance), so 200 parts fit 24-dimensional Gaussians without a singular one.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

SHRINK = 0.05


def gauss_fit(codes: np.ndarray, shrink: float = SHRINK) -> tuple[np.ndarray, np.ndarray]:
    """Codes [N, d, G, G] -> per-position means [G*G, d] and Cholesky factors [G*G, d, d] of the
    inverse covariances (``|(y - mean) @ chol|`` is the Mahalanobis distance)."""
    n, d = codes.shape[:2]
    y = codes.reshape(n, d, -1).transpose(2, 0, 1).astype(np.float64)  # [P, N, d]
    mean = y.mean(axis=1)
    centred = y - mean[:, None]
    cov = np.einsum("pni,pnj->pij", centred, centred) / n + shrink * np.eye(d)
    chol = np.linalg.cholesky(np.linalg.inv(cov))
    return mean.astype(np.float32), chol.astype(np.float32)


def gauss_distance(codes: np.ndarray, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each cell's code [N, d, G, G] to its cell's Gaussian -> [N, G, G]
    (float32, as the graph computes it)."""
    n, d, h, w = codes.shape
    y = codes.reshape(n, d, -1).transpose(2, 0, 1) - mean[:, None]  # [P, N, d]
    z = np.matmul(y, chol)
    return np.sqrt((z * z).sum(axis=-1)).T.reshape(n, h, w).astype(np.float32)


# --------------------------------------------------------------------------- the choice
MARGIN = 0.02  # the aligned layout must beat the memory by this much AUROC on painted defects
MARGIN_PX = 24  # painted defects at least this far inside the frame (pixels at 256)


def paint(inputs: np.ndarray, std: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Each good input tensor with one synthetic defect, alternately (a) a soft round spot 6-12 px
    across, 25-50 grey levels darker or brighter -- something new -- and (b) a 12-24 px square of the
    same part copied from elsewhere -- something familiar in the wrong place, which only a
    position-aware model can see."""
    out = inputs.copy()
    _, c, h, w = inputs.shape
    k = w / 256.0  # sizes are stated at 256 x 256
    margin = int(MARGIN_PX * k)
    scale = 255.0 * np.asarray(std, np.float32).reshape(c, 1, 1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(len(out)):
        if i % 2 == 0:
            cx, cy = rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)
            cover = np.clip(rng.uniform(3, 6) * k + 0.5 - np.hypot(xx - cx, yy - cy), 0, 1)
            out[i] += rng.choice([-1.0, 1.0]) * rng.uniform(25, 50) * cover[None] / scale
        else:
            side = max(2, int(rng.integers(12, 25) * k))
            (sy, sx), (dy, dx) = (rng.integers(margin, min(h, w) - margin - side, 2) for _ in range(2))
            out[i, :, dy : dy + side, dx : dx + side] = inputs[i, :, sy : sy + side, sx : sx + side]
    return out


def separation(painted: np.ndarray, clean: np.ndarray) -> float:
    """AUROC of painted against clean image scores (ties count half)."""
    greater = (painted[:, None] > clean[None]).mean()
    return float(greater + 0.5 * (painted[:, None] == clean[None]).mean())


def choose(free: Any, aligned: Any, inputs: np.ndarray, aligner: Any, warps: list[np.ndarray], std: tuple[float, ...],
           codes_of: Callable[[np.ndarray], list[np.ndarray]]) -> tuple[Any, str]:
    """The layout that tells the good parts held out of each fold from the same parts with a
    painted defect (:func:`paint`) better, and the sentence that says so.  The painting has a
    random generator of its own, so the memory a product keeps does not depend on the choice."""
    painted = paint(inputs, std, np.random.default_rng(20240612))
    figures = {}
    for name, held, x in (("memory", free, painted), ("aligned", aligned, aligner.warp(painted, warps))):
        codes = codes_of(x)
        scores = np.empty(len(x), np.float32)
        for f in range(int(held.folds.max()) + 1):
            on = held.folds == f
            scores[on] = held.score([c[on] for c in codes], f)
        figures[name] = separation(scores, held.scores)
    pick = aligned if figures["aligned"] >= figures["memory"] + MARGIN else free
    what = "per-position statistics of registered parts" if pick is aligned else "position-free memory"
    return pick, (f"{what}: painted defects on held-out good parts told apart with AUROC {figures['aligned']:.3f} "
                  f"(per position) against {figures['memory']:.3f} (memory)")
