"""The evaluation report: one self-contained HTML file (inline CSS, SVG charts, base64 PNG
thumbnails), ``<report>.json`` with the same figures, and a summary table on the terminal.

Charts are inline SVG written here, so a report needs nothing but a browser to open and
matplotlib is not needed at runtime.
"""

from __future__ import annotations

import html
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_inspector import __version__
from edge_inspector.errors import InputError

GOOD, BAD, THRESH = "#2e7d32", "#c62828", "#1a237e"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1f2328}
header{background:#1f2a44;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8}main{padding:20px 32px;max-width:1200px}
section{background:#fff;border-radius:8px;padding:16px 20px;margin:0 0 18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:17px;margin:0 0 12px}.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 130px;border:1px solid #e3e6ea;border-radius:6px;padding:10px 14px}
.card b{display:block;font-size:22px}.card small{display:block;font-size:12px;font-weight:400;color:#57606a}.card span{color:#57606a;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse}td,th{padding:5px 10px;border-bottom:1px solid #eaecef;text-align:right}
th{background:#f6f8fa;font-weight:600}td:first-child,th:first-child{text-align:left}
table.cm td{min-width:52px;text-align:center;border:1px solid #fff}table.cm th{text-align:center}
.axis{font-size:12px;color:#57606a}.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:240px;border:1px solid #e3e6ea;border-radius:6px;overflow:hidden;background:#fafbfc}
figure img{display:block;width:240px}figcaption{padding:6px 8px;font-size:12px}
.fr{color:#c62828;font-weight:600}.miss{color:#e65100;font-weight:600}.muted{color:#57606a}
"""


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "–"
    if pct:
        return f"{100 * value:.1f} %"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def histogram_svg(good: list[int], bad: list[int], threshold: float | None, width: int = 860, height: int = 260) -> str:
    """Score histograms of good and defective parts, each normalised to its own count."""
    left, right, top, bottom = 48, 12, 36, 36
    pw, ph = width - left - right, height - top - bottom
    ng, nb = max(1, sum(good)), max(1, sum(bad))
    fractions = [[c / ng for c in good], [c / nb for c in bad]]
    peak = max([f for row in fractions for f in row] + [1e-9])
    bins = len(good)
    bw = pw / bins
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for i in range(5):
        y = top + ph * i / 4
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaecef"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis" font-size="11">'
                     f'{100 * peak * (1 - i / 4):.0f}%</text>')
    for row, colour in zip(fractions, (GOOD, BAD)):
        for i, f in enumerate(row):
            if f > 0:
                h = ph * f / peak
                parts.append(f'<rect x="{left + i * bw:.1f}" y="{top + ph - h:.1f}" width="{max(1.0, bw - 1):.1f}" '
                             f'height="{h:.1f}" fill="{colour}" fill-opacity="0.55"/>')
    for i in range(6):
        x = left + pw * i / 5
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" font-size="11">{i / 5:.1f}</text>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#57606a"/>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 4}" text-anchor="middle" font-size="12">defect score</text>')
    if threshold is not None:
        x = left + pw * threshold
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="{THRESH}" stroke-width="2" '
                     'stroke-dasharray="6 4"/>')
        anchor = "end" if threshold > 0.8 else "start"
        parts.append(f'<text x="{x + (-4 if anchor == "end" else 4):.1f}" y="{top + 12}" font-size="12" fill="{THRESH}" '
                     f'text-anchor="{anchor}">threshold {threshold:.3f}</text>')
    for j, (name, colour, n) in enumerate((("good parts", GOOD, sum(good)), ("defective parts", BAD, sum(bad)))):
        lx = left + 170 * j
        parts.append(f'<rect x="{lx}" y="6" width="12" height="12" fill="{colour}" fill-opacity="0.55"/>')
        parts.append(f'<text x="{lx + 18}" y="16" font-size="12">{name} ({n})</text>')
    parts.append(f'<text x="{left + pw}" y="16" font-size="11" text-anchor="end" fill="#57606a">'
                 'bar height: share of that class</text>')
    parts.append("</svg>")
    return "".join(parts)


def confusion_html(classes: list[str], matrix: list[list[int]]) -> str:
    """Rows = true class, columns = predicted; cell shade = share of the row."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in classes)
    rows = []
    for t, row in zip(classes, matrix):
        total = sum(row) or 1
        cells = []
        for p, n in zip(classes, row):
            share = n / total
            rgb = "46,125,50" if p == t else "198,40,40"
            text = "#fff" if share > 0.55 else "#1f2328"
            cells.append(f'<td style="background:rgba({rgb},{0.08 + 0.85 * share if n else 0:.2f});color:{text}">{n}</td>')
        rows.append(f"<tr><th>{html.escape(t)}</th>{''.join(cells)}<td class='muted'>{sum(row)}</td></tr>")
    return (f'<table class="cm"><tr><th>true ↓ / predicted →</th>{head}<th>total</th></tr>{"".join(rows)}</table>')


def per_class_html(per_class: dict[str, dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{_fmt(m['precision'])}</td><td>{_fmt(m['recall'])}</td>"
        f"<td>{_fmt(m['f1'])}</td><td>{m['support']}</td><td>{m['predicted']}</td></tr>" for c, m in per_class.items())
    return ("<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th><th>predicted</th></tr>"
            f"{rows}</table>")


def _cards(items: list[tuple[str, str]]) -> str:
    def value(v: str) -> str:  # "12 (3.4 %)" -> big 12, small (3.4 %)
        main, _, rest = v.partition(" (")
        return html.escape(main) + (f"<small>({html.escape(rest)}</small>" if rest else "")

    return '<div class="cards">' + "".join(f'<div class="card"><span>{html.escape(k)}</span><b>{value(v)}</b></div>'
                                           for k, v in items) + "</div>"


#: what "latency" measures in a replay (see ``replay.replay_latency_ms``), by speed and kind
LATENCY_NAMES = {("realtime", "visual"): "latency (capture to publish)",
                 ("realtime", "acoustic"): "latency (episode onset to publish)",
                 ("max", "visual"): "processing (dequeued to publish; at max speed frames queue by design)",
                 ("max", "acoustic"): "reported after onset (audio time; max speed reads faster than real time)"}


def latency_name(speed: str, kind: str) -> str:
    return LATENCY_NAMES.get((speed, kind), "latency")


def _latency(lat: dict[str, Any], name: str = "latency") -> str:
    if not lat["count"]:
        return f"{name} –"
    return f"{name} p50 {lat['p50']:.1f} · p95 {lat['p95']:.1f} · p99 {lat['p99']:.1f} ms"


def _latency_cards(lat: dict[str, Any], name: str = "latency") -> list[tuple[str, str]]:
    if not lat["count"]:
        return [(name, "–")]
    return [(f"{name}: p50 / p95 / p99", f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f} ms")]


def _thumbs(thumbs: list[dict[str, Any]], kind: str, total: int) -> str:
    mine = [t for t in thumbs if t["kind"] == kind]
    if not total:
        return '<p class="muted">None.</p>'
    note = f'<p class="muted">Showing {len(mine)} of {total}.</p>' if len(mine) < total else ""
    cls = "fr" if kind == "false_reject" else "miss"
    figs = "".join(
        f'<figure><img alt="{html.escape(t["source"])} frame {t["frame"]}" src="data:image/png;base64,{t["png"]}">'
        f'<figcaption><b>{html.escape(t["source"])}</b> frame {t["frame"]} · score {t["score"]:.3f}<br>'
        f'true <b>{html.escape(t["truth"])}</b> → <span class="{cls}">{html.escape(t["predicted"])}</span></figcaption></figure>'
        for t in mine)
    return note + f'<div class="grid">{figs}</div>'


def render_html(figures: dict[str, Any], thumbs: list[dict[str, Any]], counts: dict[str, int]) -> str:
    models = " · ".join(f"{k}: {html.escape(str(m['name']))} ({str(m['sha256'])[:12]})" for k, m in figures.get("models", {}).items())
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<header><h1>Evaluation report</h1><p>{html.escape(figures['labels_file'])} · speed {figures.get('speed')} · "
            f"{models} · edge-inspector {__version__} · {now}</p></header><main>"]
    vis = figures.get("visual")
    if vis:
        b = vis["good_vs_defective"]
        body.append("<section><h2>Visual inspection</h2>" + _cards([
            ("frames", str(vis["frames"])), ("accuracy (class)", _fmt(vis["accuracy"], True)),
            ("accuracy (good/defective)", _fmt(b["accuracy"], True)),
            ("false rejects", f"{b['false_rejects']} ({_fmt(b['false_reject_rate'], True)})"),
            ("misses", f"{b['misses']} ({_fmt(b['miss_rate'], True)})"), *_latency_cards(vis["latency_ms"], vis.get("latency_measure", "latency"))]) + "</section>")
        body.append(f"<section><h2>Per class</h2>{per_class_html(vis['per_class'])}</section>")
        body.append(f"<section><h2>Confusion matrix</h2>{confusion_html(vis['classes'], vis['confusion'])}</section>")
        for source, hist in vis["histograms"].items():
            body.append(f"<section><h2>Score distribution · {html.escape(source)}</h2>"
                        f"{histogram_svg(hist['good'], hist['defective'], vis['thresholds'].get(source))}</section>")
        body.append(f"<section><h2>False rejects (good parts rejected)</h2>{_thumbs(thumbs, 'false_reject', counts['false_reject'])}</section>")
        body.append(f"<section><h2>Misses (defective parts passed)</h2>{_thumbs(thumbs, 'miss', counts['miss'])}</section>")
    ac = figures.get("acoustic")
    if ac:
        body.append("<section><h2>Acoustic inspection (event level)</h2>" + _cards([
            ("labelled faults", str(ac["intervals"])), ("detected episodes", str(ac["episodes"])),
            ("missed faults", str(ac["missed"])), ("false alarms", str(ac["false_alarms"])),
            *_latency_cards(ac["latency_ms"], ac.get("latency_measure", "latency"))]) + f"<h2 style='margin-top:14px'>Per class</h2>{per_class_html(ac['per_class'])}"
            f"<h2 style='margin-top:14px'>Confusion matrix</h2>{confusion_html(ac['classes'], ac['confusion'])}"
            "<p class='muted'>A labelled interval counts as detected by the defect episode that overlaps it most; "
            "an episode overlapping no interval is a false alarm.</p></section>")
    body.append("</main>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>edge-inspector evaluation</title>'
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(path: Path, figures: dict[str, Any], thumbs: list[dict[str, Any]], counts: dict[str, int]) -> None:
    figures["report"] = str(path)
    json_path = path.parent / (path.stem + ".json")
    try:
        path.write_text(render_html(figures, thumbs, counts), encoding="utf-8")
        json_path.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the report {path}: {exc.strerror}") from None


def print_summary(figures: dict[str, Any], report: Path) -> None:
    """The figures people look at first, as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout)
    for kind in ("visual", "acoustic"):
        fig = figures.get(kind)
        if not fig:
            continue
        table = Table(title=f"{kind} evaluation", title_justify="left")
        for col in ("class", "precision", "recall", "F1", "support"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for c, m in fig["per_class"].items():
            table.add_row(c, _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"]), str(m["support"]))
        console.print(table)
        if kind == "visual":
            b = fig["good_vs_defective"]
            console.print(f"frames {fig['frames']} · accuracy {_fmt(fig['accuracy'], True)} · false rejects "
                          f"{b['false_rejects']} · misses {b['misses']} · {_latency(fig['latency_ms'], fig.get('latency_measure', 'latency'))}")
        else:
            console.print(f"faults {fig['intervals']} · missed {fig['missed']} · false alarms {fig['false_alarms']} · "
                          f"{_latency(fig['latency_ms'], fig.get('latency_measure', 'latency'))}")
    console.print(f"report: {report} (figures: {report.parent / (report.stem + '.json')})")
