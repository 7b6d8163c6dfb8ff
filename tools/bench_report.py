"""Turning benchmark results into targets (PASS/FAIL), a rich table and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench_speed import chart_panel, cpu_panel, speed_targets, throughput_rows


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def evaluate_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The product targets, each with its measured value, its bound and PASS/FAIL/SKIP."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, bound: float | None, detail: str, ok_if_le: bool = False) -> None:
        if value is None or bound is None:
            out.append({"target": name, "status": "SKIP", "detail": "not measured in this run"})
            return
        ok = value <= bound if ok_if_le else value >= bound
        out.append({"target": name, "status": "PASS" if ok else "FAIL", "value": round(value, 3),
                    "bound": round(bound, 2), "detail": detail})

    speed_targets(r, add)
    p99 = _get(r, "latency", "capture_to_receive_ms", "p99")
    work = _get(r, "latency", "decode_preprocess_inference_ms", "p50")
    add("p99 latency at 30 fps", p99, 2.0 * work if work else None,
        f"p99 capture->receive {p99} ms <= 2 x median(decode+preprocess+inference) {work} ms", ok_if_le=True)
    runs = _get(r, "scale", "runs") or []
    four = next((x for x in runs if x["cameras"] == 4), None)
    if four is None:
        out.append({"target": "4 cameras 720p30, zero drops", "status": "SKIP", "detail": "not measured in this run"})
    else:
        best = r["scale"]["max_sustained_cameras"]
        detail = f"max sustained: {best} camera(s); 4 cameras: {four['inspected_fps_total']} fps inspected, {four['dropped']} dropped"
        if not four["sustained"]:
            detail += f"; limited by {four['limiting_stage']}"
        out.append({"target": "4 cameras 720p30, zero drops", "status": "PASS" if four["sustained"] else "FAIL",
                    "value": best, "bound": 4, "detail": detail})
    mq = r.get("mqtt") or {}
    add("MQTT QoS 1 events/s, journal on", mq.get("acked_per_s"), 5000.0 if mq else None,
        f"{mq.get('events')} events journalled and acknowledged by a local mosquitto: {mq.get('acked_per_s')} events/s "
        f"(journal alone {mq.get('journal_per_s')}/s) >= 5000")
    og = r.get("mqtt_outage") or {}
    add("broker outage: events lost", og.get("lost"), 0.0 if og else None,
        f"{og.get('outage_s')} s outage at {og.get('rate_per_s')} events/s: {og.get('lost')} of {og.get('events')} "
        "lost", ok_if_le=True)
    add("broker outage: backlog drained", og.get("drain_s"), 5.0 if og else None,
        f"{og.get('backlog_at_return')} waiting events acknowledged {og.get('drain_s')} s after the broker "
        f"returned (all at the subscriber after {og.get('received_all_s')} s) <= 5 s", ok_if_le=True)
    v = r.get("views") or {}
    add("snapshots + open preview cost", v.get("cost"), 0.10 if v else None,
        f"daemon end to end {v.get('fps_with')} fps with snapshots on and a live.mjpg viewer vs {v.get('fps_without')} "
        f"without (medians of {v.get('pairs')} alternating pairs; per pair with/without {v.get('runs_ratio')}, "
        f"their median: cost {v.get('cost_median_of_pairs')}; CPU per frame {v.get('cpu_ms_per_frame_with')} ms with, "
        f"{v.get('cpu_ms_per_frame_without')} ms without); "
        f"{v.get('defects_per_run')} of {v.get('verdicts_per_run')} frames defective per run, snapshots written "
        f"{v.get('snapshots_written')}, over max_per_s {v.get('snapshots_limited')}, dropped "
        f"{v.get('snapshots_dropped')} (queue full: inspection first), "
        f"preview frames received {v.get('preview_frames_received')}; cost <= 10 %", ok_if_le=True)
    plc = r.get("plc") or {}
    add("PLC decision to a Modbus client, p99", plc.get("p99_ms"), 5.0 if plc else None,
        f"publish -> RESULT_VALID seen by a polling pymodbus client: p50 {plc.get('p50_ms')} ms, "
        f"p99 {plc.get('p99_ms')} ms over {plc.get('decisions')} decisions <= 5 ms", ok_if_le=True)
    return out


def print_report(r: dict[str, Any], console: Console) -> None:
    m = r["machine"]
    console.print(f"[bold]edge-inspector bench[/] {m['date']}  commit {str(m['git_commit'])[:10]}"
                  f"{' (dirty)' if m['git_dirty'] else ''}  {m['cpu_model']} x{m['cpu_cores']}")
    t = Table(title="Throughput (frames/s, same clip, same machine)")
    t.add_column("measurement")
    t.add_column("frames/s", justify="right")
    t.add_column("detail")
    throughput_rows(r, t)
    if r.get("views"):
        v = r["views"]
        t.add_row("  with snapshots + open preview", f"{v['fps_with']:.1f}",
                  f"without: {v['fps_without']:.1f} (medians of {v['pairs']} alternating pairs); cost {100 * v['cost']:.1f} %; "
                  f"{v['snapshot_ms_per_defect']} ms per snapshot written")
    pp = r.get("preprocess_ms_per_frame")
    if pp:
        t.add_row("preprocess (runner, ms/frame)", f"{1000.0 / max(1e-9, pp['runner_preprocess']):.1f}",
                  f"{pp['runner_preprocess']} ms/frame ({pp.get('runner_preprocess_cpu')} ms CPU) = resize {pp.get('resize', '?')} + normalise/layout "
                  f"{pp['normalise_layout']} (one INTER_AREA resize: {pp['resize_area']}, INTER_LINEAR: {pp['resize_linear']})")
    if t.row_count:
        console.print(t)
    if r.get("latency"):
        lt = r["latency"]
        t = Table(title=f"Latency at {lt['fps']} fps, {lt['events']} events (ms)")
        for col in ("stage", "p50", "p95", "p99", "mean"):
            t.add_column(col, justify="right" if col != "stage" else "left")
        t.add_row("decode (camera)", "", "", "", f"{lt['stages_ms']['decode']['mean']}")
        for k in ("queue_wait", "preprocess", "inference", "publish"):
            s = lt["stages_ms"][k]
            t.add_row(k, *(str(s[q]) for q in ("p50", "p95", "p99", "mean")))
        for label, key in (("capture -> publish (latency_ms)", "capture_to_publish_ms"),
                           ("capture -> subscriber receive", "capture_to_receive_ms")):
            s = lt[key]
            t.add_row(f"[bold]{label}[/]", *(str(s[q]) for q in ("p50", "p95", "p99", "mean")))
        console.print(t)
    if r.get("scale"):
        t = Table(title=f"Live cameras (HTTP MJPEG 1280x720 @ {r['scale']['fps']} fps)")
        for col in ("cameras", "inspected fps/cam", "captured fps/cam", "dropped", "p99 ms", "CPU %", "sustained"):
            t.add_column(col, justify="right")
        for x in r["scale"]["runs"]:
            cams = x["per_camera"].values()
            t.add_row(str(x["cameras"]), " ".join(f"{c['inspected_fps']:.1f}" for c in cams),
                      " ".join(f"{c['captured_fps']:.1f}" for c in cams), str(x["dropped"]),
                      str(x["capture_to_verdict_ms"]["p99"]), f"{x['cpu']['daemon_total_percent']:.0f}",
                      "yes" if x["sustained"] else "[red]no[/]")
        console.print(t)
    if r.get("audio") and "rtf" in r["audio"]:
        a = r["audio"]
        console.print(f"audio: real-time factor {a['rtf']} ({a['compute_s']} s compute for {a['audio_s']} s of audio; "
                      f"features {a['features_rtf']}, GRU {a['inference_rtf']})")
        if a.get("whole_path", {}).get("rtf") is not None:
            w = a["whole_path"]
            console.print(f"whole acoustic path on one core ({' + '.join(w['models'])}, episodes): real-time factor "
                          f"{w['rtf']} ({w['cpu_s']} CPU s for {w['audio_s']} s of audio)")
        if a.get("microphone_path"):
            m = a["microphone_path"]
            console.print(f"microphone path at 16 kHz in the daemon: {m['path_total_percent']}% of one core "
                          f"({', '.join(f'{k} {v}%' for k, v in m['percent_of_one_core'].items())})")
    if r.get("bus"):
        b = r["bus"]
        console.print(f"event bus: {b['events_per_s']:.0f} events/s journal -> PUB -> SUB ({b['received']}/{b['events']} received)")
    if r.get("mqtt"):
        m = r["mqtt"]
        console.print(f"MQTT: {m['acked_per_s']:.0f} events/s acknowledged by the broker, {m['received_per_s']:.0f}/s at a "
                      f"subscriber, journal alone {m['journal_per_s']:.0f}/s ({m['received']}/{m['events']} received)")
    if r.get("mqtt_outage"):
        o = r["mqtt_outage"]
        console.print(f"MQTT outage {o['outage_s']} s at {o['rate_per_s']:.0f} events/s: {o['lost']} lost, "
                      f"{o['backlog_at_return']} waiting, drained in {o['drain_s']} s")
    if r.get("plc"):
        p = r["plc"]
        console.print(f"PLC decision to a Modbus client: p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, max {p['max_ms']} ms")
    for tgt in r.get("targets", []):
        colour = {"PASS": "green", "FAIL": "red"}.get(tgt["status"], "yellow")
        console.print(f"[{colour}]{tgt['status']}[/] {tgt['target']}: {tgt['detail']}")


def write_chart(r: dict[str, Any], path: Path) -> str:
    """A four-panel PNG; matplotlib when importable, else nothing (returns what happened)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    m = r["machine"]
    fig.suptitle(f"edge-inspector bench - {m['cpu_model']} ({m['cpu_cores']} cores) - "
                 f"{str(m['git_commit'])[:10]} - {m['date']}", fontsize=10)
    chart_panel(r, axes[0][0])
    ax = axes[0][1]
    lt = r.get("latency")
    if lt:
        stages = ["queue_wait", "preprocess", "inference", "publish"]
        p50 = [lt["stages_ms"]["decode"]["mean"]] + [lt["stages_ms"][s]["p50"] for s in stages]
        ax.barh(["decode (mean)"] + stages, p50, color="#36c")
        for q, col in (("p50", "#6a9"), ("p95", "#ca3"), ("p99", "#c33")):
            ax.axvline(lt["capture_to_receive_ms"][q], color=col, ls="--", label=f"capture->receive {q} {lt['capture_to_receive_ms'][q]} ms")
        ax.legend(fontsize=8)
        ax.set_title(f"latency at {lt['fps']} fps: stage medians (ms)", fontsize=10)
    ax = axes[1][0]
    sc = r.get("scale")
    if sc:
        xs = [x["cameras"] for x in sc["runs"]]
        ax.plot(xs, [min(c["inspected_fps"] for c in x["per_camera"].values()) for x in sc["runs"]], "o-", label="inspected fps (slowest camera)")
        ax.plot(xs, [x["dropped"] / max(1e-9, sc["seconds"]) for x in sc["runs"]], "s-", color="#c33", label="dropped frames/s (all cameras)")
        ax.axhline(sc["fps"], color="#888", ls=":", label=f"{sc['fps']} fps target")
        ax.set_xticks(xs)
        ax.set_xlabel("live HTTP MJPEG cameras (1280x720)")
        ax.legend(fontsize=8)
        ax.set_title(f"scale: max sustained {sc['max_sustained_cameras']} camera(s)", fontsize=10)
    else:  # no scale run: where the daemon's CPU goes, when the daemon ran
        cpu_panel(r, ax)
    ax = axes[1][1]
    ax.axis("off")
    lines = [f"{t['status']}  {t['target']}: {t.get('value', '-')} vs {t.get('bound', '-')}" for t in r.get("targets", [])]
    if r.get("audio") and "rtf" in r["audio"]:
        lines.append(f"audio real-time factor: {r['audio']['rtf']}")
        if r["audio"].get("whole_path", {}).get("rtf") is not None:
            lines.append(f"whole acoustic path (classifier + learnt model) on one core: real-time factor "
                         f"{r['audio']['whole_path']['rtf']}")
    if r.get("bus"):
        lines.append(f"event bus: {r['bus']['events_per_s']:.0f} events/s")
    ax.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"
