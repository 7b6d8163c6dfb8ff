"""``edge-inspector build-engines``: compile the models for this device, then measure the policy.

Each model's TensorRT plan is built (or found in the cache) exactly as the daemon will look for
it (:mod:`edge_inspector.runtime.build`), and the visual models' batch policy is measured on the
plans (:mod:`edge_inspector.inspectors.policy`), so the daemon's first start finds both cached.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

from edge_inspector.errors import UserError
from edge_inspector.manifest import load_manifest
from edge_inspector.runtime.build import (
    key_digest,
    default_cache_dir,
    default_profile,
    find_cached_plan,
    key_parts_for_device,
    load_or_build,
    require_tensorrt,
)


def build_all(
    engines_dir: Path, cache_dir: Path | None = None, precision: str = "fp16", max_batch: int = 8,
    console: Console | None = None,
) -> list[dict[str, Any]]:
    """Compile the models of ``engines_dir`` for this device (``edge-inspector build-engines``).

    With a ``manifest.toml``, each model's file for ``precision`` (:func:`~edge_inspector.precision.model_file`:
    its INT8 file for TensorRT at ``int8``, else its float file in fp16), exactly the plan the
    daemon looks for; without one, every ``*.onnx`` in the directory.
    Returns one dict per model: model, onnx, plan, cached, seconds, precision, key, size_mb.
    Raises :class:`UserError` when TensorRT cannot run here, or (after trying every model)
    naming each model that failed, so the command exits non-zero.
    """
    _, device = require_tensorrt()
    engines, cache = Path(engines_dir), Path(cache_dir) if cache_dir is not None else default_cache_dir()
    jobs = _build_jobs(engines, precision)
    if not jobs:
        raise UserError(f"no *.onnx models in {engines} (train them with python -m training.visual.train / python -m training.acoustic.train)")
    models = [model for model, _ in jobs]
    console = console or Console(stderr=True)
    console.print(f"TensorRT plans for {device.name} (compute capability {device.compute_capability}), "
                  f"{precision}, batch 1..{max_batch}, cache {cache}")
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for model, runs in jobs:
        started = time.monotonic()
        parts = None
        try:
            parts = key_parts_for_device(model, runs, default_profile(model, max_batch))
            cached = find_cached_plan(cache, parts) is not None
            plan = load_or_build(model, cache, runs, None, max_batch, console=console)
        except UserError as exc:
            failures.append(str(exc))
            console.print(f"[red]{model.name}: failed: {exc}[/red]")
            continue
        results.append({"model": model.name, "onnx": str(model), "plan": str(plan), "cached": cached,
                        "seconds": round(time.monotonic() - started, 2), "precision": runs,
                        "key": key_digest(parts)[:20], "size_mb": round(plan.stat().st_size / 1e6, 2)})
        console.print(f"{model.name}: {'cached' if cached else 'built'} {plan} ({results[-1]['seconds']} s)")
    if failures:
        raise UserError(f"{len(failures)} of {len(models)} model(s) failed to build: " + " | ".join(failures))
    _measure_policy(engines, precision, max_batch, console)
    return results


def _measure_policy(engines: Path, precision: str, max_batch: int, console: Console) -> None:
    """Time the visual models' plans at each batch now, so the daemon's first start finds the choice cached."""
    if not (engines / "manifest.toml").is_file() or max_batch < 8:
        return  # the daemon measures batches 1-8 itself (a plan for fewer would be rebuilt for it)
    from edge_inspector.inspectors.policy import resolve  # noqa: PLC0415

    manifest = load_manifest(engines, verify=False)
    if manifest.entries("visual"):
        policy = resolve(manifest, "tensorrt", precision, remeasure=True)
        console.print(f"inference policy for the visual models: {policy.describe()}")


def _build_jobs(engines: Path, precision: str) -> list[tuple[Path, str]]:
    """(ONNX file, plan precision) per model to build, as the daemon will open them."""
    if not (engines / "manifest.toml").is_file():
        return [(m, "fp16" if precision == "int8" else precision) for m in sorted(engines.glob("*.onnx"))]
    from edge_inspector.precision import model_file  # noqa: PLC0415

    manifest = load_manifest(engines, verify=True)  # refuse to compile a model the runtime would refuse
    files = [model_file(engines, e, precision, "tensorrt") for m in ("visual", "acoustic") for e in manifest.entries(m)]
    return [(f.path, f.precision) for f in files]
