"""The throughput part of the report: the CPU ceiling, the daemon's share of it, its peers, the speed targets.

First-class figures written into the JSON by :func:`summarise`:

- ``ceiling[precision]``: frames/s with every usable core busy all the time on nothing but decode +
  preprocess + inference: the CPU per frame of one thread doing the three frame after frame (the
  daemon's decoder, the batch the daemon ran), measured right after each daemon run, the median
  over the runs.  No pipeline, however well overlapped, goes faster on this CPU with that model.
  (The three timed each alone add up to 5-12 % less: alone, each keeps the core's caches.)
- ``daemon_vs_ceiling[precision]``: the median over the runs of each daemon run's frames/s over
  its own ceiling.
- ``daemon_cpu_share[precision]``: the median over the runs of that loop's CPU per frame over the
  daemon process's CPU per frame (first to last verdict): the daemon's share of
  the ceiling per core it got, which a neighbour's load does not move (``daemon_vs_ceiling``
  equals it when the daemon has every core to itself and keeps them all busy).
- ``int8_vs_fp32``: the model alone, INT8 over FP32 frames/s, on every core and on one thread.
- ``peers``: the daemon at its default precision over the naive loop and the threaded two-stage
  loop, each peer with the float model (what a user has) and, for the threaded loop, with the
  daemon's own INT8 file too.
"""

from __future__ import annotations

import statistics
from typing import Any

from rich.table import Table


def _daemon(r: dict[str, Any], precision: str) -> dict[str, Any] | None:
    return (r.get("daemon_replay") or {}).get(precision)


def summarise(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"ceiling": {}, "daemon_vs_ceiling": {}}
    for precision, d in (r.get("daemon_replay") or {}).items():
        if d.get("runs_ceiling_fps"):
            out["ceiling"][precision] = round(statistics.median(d["runs_ceiling_fps"]), 1)
            out["daemon_vs_ceiling"][precision] = d["vs_ceiling_median"]
        if d.get("cpu_share_median") is not None:
            out.setdefault("daemon_cpu_share", {})[precision] = d["cpu_share_median"]
    ort = (r.get("engine") or {}).get("onnxruntime") or {}
    if "int8" in ort and "fp32" in ort:
        i, f = ort["int8"], ort["fp32"]
        one = lambda e: max(b["fps"] for b in e["batches"].values())  # noqa: E731 - best batch, one thread
        out["int8_vs_fp32"] = {"all_cores": round(i["all_cores_fps"] / f["all_cores_fps"], 3),
                               "one_thread": round(one(i) / one(f), 3),
                               "one_thread_cpu_batch1": round(f["batches"]["1"]["cpu_ms_per_frame"]
                                                              / i["batches"]["1"]["cpu_ms_per_frame"], 3)}
    default = _daemon(r, r.get("default_precision", "fp32"))
    if default:
        peers = {}
        for name in ("naive", "threaded"):
            for precision, p in (r.get(name) or {}).items():
                peers[f"{name}_{precision}"] = round(default["fps"] / p["fps"], 3)
        out["daemon_vs_peers"] = peers
    return out


def speed_targets(r: dict[str, Any], add: Any) -> None:
    """The issue's speed targets through ``add(name, value, bound, detail)``."""
    default = r.get("default_precision", "fp32")
    for precision in (r.get("daemon_replay") or {}):
        d = _daemon(r, precision)
        runs = ", ".join(f"{f:.0f}/{c:.0f}" for f, c in zip(d["runs_fps"], d["runs_ceiling_fps"]))
        add(f"daemon vs all-cores ceiling ({precision})", r["daemon_vs_ceiling"].get(precision), 0.9,
            f"median over {len(d['runs_vs_ceiling'])} runs of daemon / ceiling (every core busy with a one-thread "
            f"decode -> preprocess -> inference loop, its CPU per frame measured right after each run) >= 0.9; daemon/ceiling "
            f"fps per run: {runs}; policy {d['policy']}")
        if d.get("runs_cpu_share"):
            detail = ", ".join(f"{s} ({b} cores busy)" for s, b in zip(d["runs_cpu_share"], d["runs_cores_busy"]))
            add(f"daemon CPU share of the ceiling per core ({precision})", r["daemon_cpu_share"].get(precision), 0.9,
                f"median over {len(d['runs_cpu_share'])} runs of (the decode -> preprocess -> inference loop's CPU per frame) / "
                f"(the daemon process's CPU per frame) >= 0.9, independent of how many cores other work left it; "
                f"per run: {detail}")
    if "anomaly" in (r.get("scenarios") or []):
        a = r.get("anomaly")
        add("learnt anomaly model per frame, one core", a["cpu_ms_per_frame"] if a else None, 5.0 if a else None,
            f"thread CPU ms per {a['size'][1]}x{a['size'][0]} frame of {a['file']} alone, batch 1, one ONNX Runtime "
            f"thread <= 5 ms" if a else "", ok_if_le=True)
    speed = r.get("int8_vs_fp32") or {}
    add("INT8 model vs FP32 model", speed.get("all_cores"), 1.8 if speed else None,
        f"frames/s of the model alone with every core busy, INT8 / FP32 = {speed.get('all_cores')} >= 1.8 "
        f"(one thread at the best batch: {speed.get('one_thread')}; thread CPU per frame at batch 1: "
        f"{speed.get('one_thread_cpu_batch1')})")
    peers = r.get("daemon_vs_peers") or {}
    d = _daemon(r, default) or {}
    add(f"daemon ({default}) vs naive FP32 loop", peers.get("naive_fp32"), 2.5 if "naive_fp32" in peers else None,
        f"daemon {d.get('fps')} fps / naive loop {(r.get('naive') or {}).get('fp32', {}).get('fps')} fps >= 2.5")
    threaded = r.get("threaded") or {}
    add(f"daemon ({default}) vs threaded two-stage loop", peers.get("threaded_fp32"),
        1.5 if "threaded_fp32" in peers else None,
        f"daemon {d.get('fps')} fps / threaded loop with the float model {threaded.get('fp32', {}).get('fps')} fps "
        f">= 1.5 (with the INT8 file too: {threaded.get('int8', {}).get('fps')} fps, "
        f"ratio {peers.get('threaded_int8')})")


def _runs(d: dict[str, Any]) -> str:
    runs = d.get("runs_fps") or []
    return f"; median of {len(runs)} runs: {', '.join(f'{v:.0f}' for v in runs)}" if len(runs) > 1 else ""


def throughput_rows(r: dict[str, Any], t: Table) -> None:
    for backend, by_precision in (r.get("engine") or {}).items():
        for precision, e in by_precision.items():
            for b, v in e["batches"].items():
                t.add_row(f"model {backend} {precision} batch {b}, 1 thread", f"{v['fps']:.1f}",
                          f"{v['cpu_ms_per_frame']} ms CPU/frame; {v['ms_per_call']['p50']} ms/call p50")
            plans = ", ".join(f"{k}: {v:.0f}" for k, v in e["all_cores"].items())
            t.add_row(f"model {backend} {precision}, all cores", f"{e['all_cores_fps']:.1f}",
                      f"batch {e['best_batch']}; calls x threads: {plans}")
    for key, label in (("decode", "decode only (VideoCapture, full-size BGR)"), ("decode_pyav", "decode only (PyAV, kept YUV)")):
        if r.get(key):
            dec = r[key]
            t.add_row(label, f"{dec['fps']:.1f}",
                      f"{dec['ms_per_frame']['p50']} ms/frame p50, {dec['cpu_ms_per_frame']} ms CPU/frame, "
                      f"{dec.get('threads', '?')} decoder thread(s)")
    for precision, d in (r.get("daemon_replay") or {}).items():
        t.add_row(f"daemon end to end ({precision})", f"{d['fps']:.1f}",
                  f"policy {d['policy']['batch']}x{d['policy']['workers']}x{d['policy']['threads']} (batch x workers x "
                  f"threads); batches {d['batch_sizes']}{_runs(d)}")
        if precision in r.get("ceiling", {}):
            t.add_row(f"  CPU ceiling ({precision})", f"{r['ceiling'][precision]:.1f}",
                      f"daemon / ceiling {r['daemon_vs_ceiling'][precision]} (median of the runs)")
        if precision in (r.get("daemon_cpu_share") or {}):
            t.add_row(f"  daemon CPU per frame ({precision})", f"{statistics.median(d['runs_cpu_ms_per_frame']):.3f}",
                      f"ms; one-thread loop / daemon CPU = {r['daemon_cpu_share'][precision]} (median of the runs); cores busy "
                      f"{', '.join(str(b) for b in d['runs_cores_busy'])}")
    if r.get("decoders"):
        dc = r["decoders"]
        for decoder in ("opencv", "pyav"):
            t.add_row(f"daemon, file decoded by {decoder}", f"{dc[decoder]['fps']:.1f}",
                      f"{dc[decoder]['cpu_ms_per_frame']} ms CPU/frame (medians of {dc['pairs']} alternating runs)")
        t.add_row("  pyav / opencv", f"{dc['fps_ratio_median']}",
                  f"frames/s ratio, median of the pairs; CPU per frame {dc['cpu_ratio']}x less; "
                  f"verdicts that differ: {dc['verdicts_differ']} of {dc['frames']}")
    for name, label in (("naive", "naive tutorial loop"), ("threaded", "threaded two-stage loop")):
        for precision, p in (r.get(name) or {}).items():
            t.add_row(f"{label} ({precision})", f"{p['fps']:.1f}", f"{p['frames']} frames, batch 1{_runs(p)}")


def chart_panel(r: dict[str, Any], ax: Any) -> None:
    """Bars: the model alone (all cores), decode, the daemon, the peers; dashed: the ceilings."""
    names, vals, colours = [], [], []
    for precision, e in ((r.get("engine") or {}).get("onnxruntime") or {}).items():
        names.append(f"model {precision}")
        vals.append(e["all_cores_fps"])
        colours.append("#888")
    if r.get("decode"):
        names.append("decode")
        vals.append(r["decode"]["fps"])
        colours.append("#6a9")
    for precision, d in (r.get("daemon_replay") or {}).items():
        names.append(f"daemon {precision}")
        vals.append(d["fps"])
        colours.append("#36c")
    for name in ("naive", "threaded"):
        for precision, p in (r.get(name) or {}).items():
            names.append(f"{name} {precision}")
            vals.append(p["fps"])
            colours.append("#c63")
    bars = ax.bar(names, vals, color=colours)
    ax.bar_label(bars, fmt="%.0f", fontsize=8)
    for i, (precision, c) in enumerate((r.get("ceiling") or {}).items()):
        ax.axhline(c, color="#c33", ls="--" if i == 0 else ":", lw=1)
        ax.text(len(names) - 0.5, c, f"CPU ceiling {precision} {c:.0f}", color="#c33", ha="right", va="bottom", fontsize=8)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_title("throughput, frames/s (1280x720 clip; model alone: every core busy)", fontsize=10)


def cpu_panel(r: dict[str, Any], ax: Any) -> None:
    """Per precision: decode + preprocess + inference CPU per frame (each timed alone, stacked), the
    one-thread loop doing the three (the ceiling's), and the whole daemon process's CPU per frame;
    the gap between the last two is what the daemon spends beyond the work itself."""
    own = "decode_pyav" if (r.get("config") or {}).get("decoder") == "pyav" else "decode"  # the daemon's decoder
    decode = (r.get(own) or {}).get("cpu_ms_per_frame")
    names, x, top = [], 0, 0.0
    for precision, d in (r.get("daemon_replay") or {}).items():
        if decode is None or not d.get("runs_cpu_share"):
            continue
        parts = [("decode", decode, "#6a9"),
                 ("preprocess", statistics.median(d["runs_preprocess_cpu_ms"]), "#ca3"),
                 ("inference", statistics.median(d["runs_inference_cpu_ms"]), "#888")]
        bottom = 0.0
        for label, ms, colour in parts:
            ax.bar(x, ms, bottom=bottom, color=colour, label=label if not names else None)
            bottom += ms
        loop = statistics.median(d["runs_pipeline_cpu_ms"]) if d.get("runs_pipeline_cpu_ms") else None
        if loop is not None:
            ax.bar(x + 1, loop, color="#a6c", label="one-thread loop (ceiling)" if not names else None)
        daemon = statistics.median(v for v in d["runs_cpu_ms_per_frame"] if v is not None)
        ax.bar(x + 2, daemon, color="#36c", label="daemon (whole process)" if not names else None)
        ax.text(x + 2, daemon, f"share {r['daemon_cpu_share'][precision]}", ha="center", va="bottom", fontsize=8)
        top = max(top, bottom, daemon, loop or 0.0)
        names += [f"parts alone\n{precision}", f"loop\n{precision}", f"daemon\n{precision}"]
        x += 4
    if not names:
        ax.axis("off")
        return
    ax.set_xticks([i for i in range(x) if i % 4 != 3], names, fontsize=8)
    ax.set_ylabel("CPU ms per frame")
    ax.set_ylim(0, top * 1.35)  # room for the legend above the bars
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    ax.set_title("CPU per frame: the three parts alone, one loop doing them, the daemon (medians of the runs)", fontsize=10)
