"""The learnt visual model's evaluation card: the ``visual-anomaly`` section of ``engines/README.md``.

Written by ``python -m training.anomaly.evaluate --card engines`` from the figures it measured,
and, when present, a method comparison (``anomaly_methods.json``) and measured limits
(``anomaly_limits.json``) kept next to the card, so a re-evaluation keeps them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from training.common.modelcard import update_readme_section

PICTURE = "visual_anomaly_families.png"
METHODS = "anomaly_methods.json"
LIMITS = "anomaly_limits.json"
TARGETS = {"auroc": 0.98, "good_rejected": 0.02, "recall": 0.90, "box_iou_0.3": 0.80}


def _mark(value: float, key: str) -> str:
    ok = value <= TARGETS[key] if key == "good_rejected" else value >= TARGETS[key]
    shown = f"{value:.1%}" if key != "auroc" else f"{value:.3f}"
    return shown if ok else f"**{shown}**"


def family_table(families: dict[str, Any]) -> str:
    rows = ["| family / product | image AUROC | good rejected | defects found | box IoU ≥ 0.3 (found) | "
            "directory (both models): AUROC, rejected, found | learn |",
            "|---|---|---|---|---|---|---|"]
    for name, m in families.items():
        rows.append(f"| {name} | {_mark(m['auroc'], 'auroc')} | {_mark(m['good_rejected'], 'good_rejected')} | "
                    f"{_mark(m['recall'], 'recall')} | {_mark(m['box_iou_0.3'], 'box_iou_0.3')} | "
                    f"{m['dir_auroc']:.3f}, {m['dir_good_rejected']:.1%}, {m['dir_recall']:.1%} | {m['learn_s']:.0f} s |")
    return "\n".join(rows)


def kind_table(families: dict[str, Any]) -> str:
    rows = ["| family | defects found, per kind |", "|---|---|"]
    for name, m in families.items():
        rows.append(f"| {name} | " + ", ".join(f"{k} {v:.0%}" for k, v in m["per_kind"].items()) + " |")
    return "\n".join(rows)


def pictures_png(path: Path, pictures: dict[str, Any]) -> None:
    """One row per family: defective test parts and the highest-scoring good one, each with the
    anomaly map over it, the true box (green) and the model's box (red)."""
    rows = []
    for family, pics in pictures.items():
        tiles = []
        for image, result, truth, caption in zip(pics["images"], pics["results"], pics["truth"], pics["captions"]):
            img = image.copy()
            if result.heatmap is not None:
                heat = cv2.resize(result.heatmap.astype(np.float32), (256, 256), interpolation=cv2.INTER_LINEAR)
                colour = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
                img = np.where(heat[..., None] > 0.35, (0.55 * img + 0.45 * colour).astype(np.uint8), img)
            for box, c, t in ((truth, (0, 200, 0), 1), (result.bbox, (0, 0, 255), 2)):
                if box:
                    x, y, w, h = box
                    cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), c, t)
            cv2.rectangle(img, (0, 0), (256, 16), (0, 0, 0), -1)
            cv2.putText(img, f"{family}: {caption} {result.anomaly_score:.2f}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(cv2.resize(img, (192, 192), interpolation=cv2.INTER_AREA))
        rows.append(np.hstack(tiles))
    width = max(r.shape[1] for r in rows)
    cv2.imwrite(str(path), np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]))


def _methods(directory: Path) -> str:
    path = directory / METHODS
    if not path.is_file():
        return "No method comparison recorded."
    data = json.loads(path.read_text())
    families = list(next(iter(data["methods"].values()))["auroc"])
    rows = [f"| method | {' | '.join(families)} | mean | ms/frame (1 core) |", "|---|" + "---|" * (len(families) + 2)]
    for name, m in data["methods"].items():
        vals = [m["auroc"][f] for f in families]
        rows.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} | {m.get('ms', float('nan')):.1f} |")
    return (f"Image AUROC on the development families (learnt from {data['learn']} good parts, "
            f"{data['test']} test parts each; `anomaly_methods.json`):\n\n" + "\n".join(rows))


def _limits(directory: Path) -> str:
    path = directory / LIMITS
    if not path.is_file():
        return "Not measured yet."
    return json.loads(path.read_text())["text"]


def write_card(directory: Path, results: dict[str, Any], pictures: dict[str, Any]) -> None:
    directory = Path(directory)
    pictures_png(directory / PICTURE, pictures)
    shipped = results.get("shipped")
    shipped_text = ""
    if shipped:
        c, b = shipped["classifier"], shipped["both"]
        shipped_text = (
            f"\n**On the classifier's own surfaces** (metal, paint, cast; {shipped['images']} held-out images, a "
            f"model learnt from 200 good ones beside the classifier): classifier alone AUROC {c['auroc']:.3f}, F1 "
            f"{c['f1']:.3f}, {c['good_rejected']:.1%} rejected; both models AUROC {b['auroc']:.3f}, F1 {b['f1']:.3f}, "
            f"{b['good_rejected']:.1%} rejected.\n")
    card = f"""## Visual anomaly model (learnt on the line)

`edge-inspector learn visual` fits it on the box from good parts only (method in the manifest entry's
`method` and in README's "Teach it your line"). Measured by `python -m training.anomaly.evaluate --families
{results['set']} --shipped --card engines` on product families that nothing -- method, scales, sizes, score rule,
threshold rule -- was chosen on (training/anomaly/families_heldout.py), each with line nuisances (shift up to
8 px, turn up to 3°, light, gamma, tint, blur, noise, JPEG) on good and defective parts alike. Per family:
learnt from 200 good parts, then 200 good and 200 defective test parts (defect kinds the classifier has no
label for); thresholds as learnt (`--max-false-reject 0.01`: the directory's budget, shared with the
classifier beside it). Bold: short of the target (AUROC ≥ 0.98, ≤ 2 % rejected, ≥ 90 % found, box IoU ≥ 0.3
for ≥ 80 % of found defects).

{family_table(results['families'])}

{kind_table(results['families'])}
{shipped_text}
![held-out families]({PICTURE})

Each row: defective test parts and the highest-scoring good one, with the anomaly map (from anomaly_score
0.35), the true box (green) and the model's box (red).

**Methods compared.** {_methods(directory)}

**What it cannot see.** {_limits(directory)}
"""
    update_readme_section(directory, "visual-anomaly", card)
    print(f"wrote {directory / 'README.md'} (visual-anomaly section) and {directory / PICTURE}")
