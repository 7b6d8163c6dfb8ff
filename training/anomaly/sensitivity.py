"""How small and how faint a defect the learnt visual model sees: ``python -m training.anomaly.sensitivity``.

The family defects of ``training.anomaly.evaluate`` mix size, contrast and kind.  Here one thing
varies at a time: per development product (``--families``, default the four the method was
chosen on), a model is learnt from 200 good parts with the real ``edge-inspector learn visual``,
then good parts it never saw get one round spot each -- ``--diameters`` pixels across at
256 x 256, darker or brighter (alternately) by ``--contrasts`` grey levels, soft-edged, anywhere
at least 24 px inside the frame -- painted on the frame as the camera delivers it.  The share
found at the threshold ``learn`` set is printed per diameter and contrast; ``--png`` draws it.
The same clean parts give the false-reject reference.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_inspector import DEFAULT_ENGINES_DIR
from training.anomaly.evaluate import N_LEARN, infer, learn_dir
from training.anomaly.families import DEVELOPMENT, SPLIT_TEST, good_parts

MARGIN = 24


def spotted(image: np.ndarray, diameter: float, contrast: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` with one soft round spot ``diameter`` px across, ``contrast`` grey levels off."""
    h, w = image.shape[:2]
    cx, cy = rng.uniform(MARGIN, w - MARGIN), rng.uniform(MARGIN, h - MARGIN)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cover = np.clip(diameter / 2.0 + 0.5 - np.hypot(xx - cx, yy - cy), 0.0, 1.0)  # 1 px anti-aliased edge
    return np.clip(image.astype(np.float32) + contrast * cover[..., None], 0, 255).astype(np.uint8)


def measure(family: str, product: int, diameters: list[float], contrasts: list[float], n: int, base: Path,
            work: Path) -> dict[str, Any]:
    directory, _ = learn_dir([p.image for p in good_parts(family, product, N_LEARN)], f"{family}{product}", base, work)
    clean = [p.image for p in good_parts(family, product, n, split=SPLIT_TEST)]
    rng = np.random.default_rng([product, 7])
    out: dict[str, Any] = {"good_rejected": float(np.mean([r.defect for r in infer(directory, clean, ("anomaly",))])),
                           "found": {}}
    for c in contrasts:
        images = [spotted(im, d, c if i % 2 else -c, rng) for d in diameters for i, im in enumerate(clean)]
        flags = np.array([r.defect for r in infer(directory, images, ("anomaly",))]).reshape(len(diameters), n)
        out["found"][str(c)] = {str(d): float(f.mean()) for d, f in zip(diameters, flags)}
        print(f"{family:>10} p{product} contrast {c:>3.0f}: " + ", ".join(
            f"{d:g} px {f.mean():.0%}" for d, f in zip(diameters, flags)) + f" (clean parts rejected "
            f"{out['good_rejected']:.0%})", flush=True)
    return out


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        for c, row in results[name]["found"].items():
            ax.plot([float(d) for d in row], list(row.values()), marker="o", label=f"±{float(c):.0f} grey")
        ax.set_xscale("log", base=2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("spot diameter (px at 256²)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share found at the learnt threshold")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", default=",".join(DEVELOPMENT), help="family names separated by commas")
    ap.add_argument("--products", default="0", help="product seeds per family, e.g. 0,1")
    ap.add_argument("--diameters", default="2,3,4,6,8,12,16", help="spot diameters, pixels at 256 x 256")
    ap.add_argument("--contrasts", default="15,30,60", help="spot contrasts, grey levels")
    ap.add_argument("--parts", type=int, default=40, help="good parts spotted per diameter and contrast")
    ap.add_argument("--engines", type=Path, default=DEFAULT_ENGINES_DIR, help="the classifier learnt models run beside")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--png", type=Path, default=None)
    args = ap.parse_args(argv)
    diameters = [float(v) for v in args.diameters.split(",")]
    contrasts = [float(v) for v in args.contrasts.split(",")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="anomaly-sensitivity-") as tmp:
        for family in args.families.split(","):
            for product in (int(p) for p in args.products.split(",")):
                results[f"{family}/{product}"] = measure(family, product, diameters, contrasts, args.parts,
                                                         args.engines, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.png:
        draw(results, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
