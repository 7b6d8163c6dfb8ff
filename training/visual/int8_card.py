"""The ``visual-int8`` section of ``engines/README.md``: what the INT8 files are and what they cost in accuracy.

Written by ``python -m training.visual.quantize`` from its own run; every figure comes from it.
"""

from __future__ import annotations

from typing import Any

ROWS = (("AUROC", "auroc"), ("F1", "f1"), ("good rejected", "good_reject"), ("type accuracy", "type_accuracy"),
        ("box on the defect", "bbox_hit"))


def _accuracy_table(ref: Any, checked: list[Any]) -> str:
    head = "| set | model | " + " | ".join(r for r, _ in ROWS) + " | max \\|score - fp32\\| | same label as fp32 |"
    lines = [head, "|" + "---|" * (len(ROWS) + 4)]
    for set_name in ref.metrics:
        for c in [ref, *checked]:
            m = c.metrics[set_name]
            figures = " | ".join(f"{m[k]:.4f}" for _, k in ROWS)
            extra = (f"{c.score_diff[set_name]:.4f} | {100 * c.agreement[set_name]:.1f} %" if c is not ref else "- | -")
            model = "fp32" if c is ref else f"int8 ({c.name})"
            lines.append(f"| {set_name} | {model} | {figures} | {extra} |")
    return "\n".join(lines)


def _speed_text(timing: dict[str, dict[str, float]]) -> str:
    fp32 = timing["fp32"]
    rows = ["| file | batch 1 ms/frame (CPU ms) | batch 8 ms/frame (CPU ms) | speed-up at batch 1 (CPU) |",
            "|---|---|---|---|"]
    for name, t in timing.items():
        if name == "load":
            continue
        label = "fp32" if name == "fp32" else f"int8 ({name})"
        rows.append(f"| {label} | {t['b1']:.2f} ({t['b1 cpu']:.2f}) | {t['b8']:.2f} ({t['b8 cpu']:.2f}) | "
                    f"{fp32['b1'] / t['b1']:.2f}x ({fp32['b1 cpu'] / t['b1 cpu']:.2f}x) |")
    return "\n".join(rows)


def int8_card(entry: Any, variants: list[Any], ref: Any, checked: list[Any], timing: dict[str, dict[str, float]],
              n: int, seconds: float, rounds: int, bounds: tuple[float, float]) -> str:
    files = "\n".join(f"| {v.target} | `{v.file}` | `{v.sha256[:12]}` | {v.scheme} |" for v in variants)
    return f"""## {entry.name} INT8 files -- verified against the float model

`runtime.precision = "int8"` (the default on ONNX Runtime) runs the INT8 file of the backend in use;
`"fp32"` runs `{entry.file}`. Both INT8 files were made from `{entry.file}` (`{entry.sha256[:12]}`) by
`python -m training.visual.quantize --engines engines` ({seconds / 60:.1f} min): ONNX Runtime static
quantization in QDQ form, calibrated on {variants[0].calibration} -- never on an evaluation image.

| target | file | sha256 | scheme |
|---|---|---|---|
{files}

**Accuracy** on held-out sets ({n} images each, half good; evaluation seeds never used in training or
calibration), through the runtime path (`VisualModelRunner`, ONNX Runtime CPU) at the float model's
threshold {entry.threshold:.4f}. The nuisance set puts one nuisance beyond the training range on each image:
over-exposure (gain 1.3-1.5, highlights clip), dim light (gain 0.45-0.6), sensor noise (sigma 7-10) or soft
focus (blur sigma 1.3-1.8). A file ships only when, on every set, its AUROC is within {bounds[0]:g} and its F1
within {bounds[1]:g} of fp32's (or above them); both did:

{_accuracy_table(ref, checked)}

The TensorRT file is checked here through ONNX Runtime's CPU kernels, which compute exactly the
quantization its Q/DQ nodes define; a TensorRT engine fuses the same Q/DQ pairs into its INT8 kernels and
rounds its float layers its own way, so its scores can differ from these in the last digits. It has not
been built or timed on a GPU yet.

**Speed** (ONNX Runtime CPU, one thread, the files in turn within each of {rounds} rounds, the
median round; wall time and, in brackets, the thread's CPU time, which another process's load does not
inflate; 1-minute load {timing['load']['1min']:.2f}; the TensorRT file is not meant for a CPU and not timed
here). The bench (`docs/performance.md`) has the figures of
the quiet run, the daemon at each precision and the batch sizes:

{_speed_text(timing)}
"""
