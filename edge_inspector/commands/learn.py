"""``edge-inspector learn MODALITY …``: learn the line's normal on the box, into an engines directory.

``learn acoustic SOURCE… --out DIR`` reads good audio (WAV files, ``record`` directories), fits the
normal-only model (:mod:`edge_inspector.learn.acoustic`), and writes DIR as a complete engines
directory: the models of the base directory (``--engines``, default the shipped ones, or DIR
itself when it already is one) plus the learnt model, its manifest entry and card.  Everything is
written into a staging directory beside DIR and swapped in at the end
(:func:`~edge_inspector.atomic.replace_dir`), so DIR is never half old, half new, and a failed
run leaves it as it was.  ``learn visual`` (:mod:`edge_inspector.commands.learn_visual`) does the
same for a camera's product.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_inspector.errors import UserError

ACOUSTIC_FILE = "acoustic_anomaly.onnx"
ACOUSTIC_CARD = "acoustic_anomaly.md"
ACOUSTIC_PNG = "acoustic_anomaly_scores.png"


def _progress(message: str) -> None:
    print(f"learn: {message}", file=sys.stderr, flush=True)


def _base_dir(out: Path, engines: Path) -> Path:
    """Where the other models come from: DIR itself when it is an engines directory already."""
    from edge_inspector.manifest import MANIFEST_NAME

    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {out}: exists and is not a directory")
        if (out / MANIFEST_NAME).is_file():
            return out
        if any(out.iterdir()):
            raise UserError(f"--out {out}: exists and is not an engines directory (no {MANIFEST_NAME}); "
                            "give a new directory or one made by `edge-inspector learn`")
    return engines


def _stage(base: Path, staged: Path, replaced: set[str]) -> Any:
    """Copy the base directory's models (all but the ``replaced`` files) and return its manifest."""
    from edge_inspector.manifest import MODALITIES, load_manifest

    manifest = load_manifest(base)  # verifies every model's sha256 before anything is copied
    for modality in MODALITIES:
        for entry in manifest.entries(modality):
            for name in [entry.file, *(q.file for q in getattr(entry, "int8", ()))]:  # with its INT8 files
                if name not in replaced:
                    shutil.copy2(base / name, staged / name)
    for extra in ("README.md",):
        if (base / extra).is_file():
            shutil.copy2(base / extra, staged / extra)
    return manifest.model_copy(update={"directory": staged})


def learn_acoustic(args: argparse.Namespace) -> int:
    import numpy as np

    from edge_inspector.atomic import replacing_dir
    from edge_inspector.learn.acoustic import LearnOptions, learn
    from edge_inspector.learn.acoustic_graph import write_graph
    from edge_inspector.learn.audio import read_good_audio
    from edge_inspector.learn.card import card_markdown, histogram_png
    from edge_inspector.manifest import AcousticAnomalyModel, Provenance, replace_entry, sha256_of, write_manifest

    t0 = time.monotonic()
    if args.max_false_alarms_per_hour <= 0:
        raise UserError(f"--max-false-alarms-per-hour: must be > 0, got {args.max_false_alarms_per_hour}")
    out = Path(args.out)
    base = _base_dir(out, Path(args.engines))
    from edge_inspector.manifest import load_manifest

    contract = load_manifest(base).entries("acoustic")
    from edge_inspector.features import LogMelParams

    params = LogMelParams.from_model(contract[0]) if contract else LogMelParams()
    _progress(f"reading {len(args.sources)} source(s)")
    audio = read_good_audio(args.sources, params.sample_rate, args.microphone)
    options = LearnOptions(max_false_alarms_per_hour=args.max_false_alarms_per_hour)
    model, cal, gate = learn(audio, params, options, _progress)
    with replacing_dir(out, check=load_manifest) as staged:  # checked as the daemon will read it
        manifest = _stage(base, staged, {ACOUSTIC_FILE, ACOUSTIC_CARD, ACOUSTIC_PNG})
        write_graph(model, staged / ACOUSTIC_FILE, params.n_mels)
        w = options.window_frames
        entry = AcousticAnomalyModel(
            kind="anomaly", file=ACOUSTIC_FILE, sha256=sha256_of(staged / ACOUSTIC_FILE),
            method=(f"mean log and log mean mel power over {w} frames, standardised, PCA-whitened to "
                    f"{model.whiten.shape[1]} dimensions; distance to the nearest of {model.bank.shape[0]} "
                    "remembered good contexts"),
            gate_db=gate.gate_db, gate_window_s=gate.gate_window_s, gate_hold_s=gate.gate_hold_s,
            gate_floor_db=None if gate.gate_floor_db is None else round(gate.gate_floor_db, 3),
            **{k: getattr(params, k) for k in LogMelParams.__dataclass_fields__},
            context_frames=w, threshold=round(cal.threshold, 6), score_scale=round(cal.score_scale, 6),
            onset=0.5, offset=round(cal.offset, 4), smoothing_s=options.smoothing_s, min_duration_s=0.2,
            report_after_s=0.2, hold_s=3.0,  # announce an episode once confirmed; one missed knock does not end it
            warmup_s=max(0.5, round(2 * w * params.hop_length / params.sample_rate, 3)),
            max_false_alarms_per_hour=options.max_false_alarms_per_hour,
            false_alarms_per_hour=round(cal.false_alarms_per_hour, 4),
            learnt_from=Provenance(items=len(audio.files), sha256=audio.sha256(), sources=tuple(audio.sources),
                                   date=datetime.now(timezone.utc).isoformat(timespec="seconds")),
        )
        write_manifest(replace_entry(manifest, "acoustic", entry), staged)
        histogram_png(staged / ACOUSTIC_PNG, cal.held_out, cal.threshold, cal.offset_raw,
                      f"{entry.name}: held-out good audio, threshold for {entry.max_false_alarms_per_hour:g}/h")
        info = {"seconds": sum(s.samples.size for s in audio.segments) / params.sample_rate,
                "segments": len(audio.segments), "typical": cal.typical, "offset_raw": cal.offset_raw,
                "learn_s": time.monotonic() - t0, "histogram": ACOUSTIC_PNG}
        (staged / ACOUSTIC_CARD).write_text(card_markdown(entry, info))
    flagged = float(np.mean(cal.held_out >= cal.threshold))
    print(f"{out}: learnt {entry.name} from {info['seconds']:.0f} s of good audio in {info['learn_s']:.0f} s; threshold "
          f"{entry.threshold:.3f} (extreme-value estimate {entry.false_alarms_per_hour:.2g} false alarm(s) per hour, "
          f"{100 * flagged:.2f} % of held-out good frames above it); card {out / ACOUSTIC_CARD}")
    return 0


def add_learn_arguments(parser: Any, sources_help: str) -> None:
    """What every ``learn MODALITY`` takes: its sources, ``--out`` and ``--engines``."""
    parser.add_argument("sources", nargs="+", type=Path, metavar="SOURCE", help=sources_help)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="engines directory to write, created or updated (required)")
    parser.add_argument("--engines", type=Path, default=None, metavar="DIR",
                        help="where the other models come from when --out is new (default: the shipped models)")


def add_source_options(parser: Any) -> None:
    """``--camera`` and ``--max-images``: how ``learn visual`` and ``calibrate`` take frames from
    their sources (one definition for both commands)."""
    parser.add_argument("--camera", default=None, metavar="NAME",
                        help="which camera of a recording with several (default: its only one)")
    parser.add_argument("--max-images", type=int, default=1000, metavar="N",
                        help="at most this many images, spread evenly over long videos (default 1000)")


def add_parser(sub: Any, fmt: dict[str, Any]) -> Any:
    """The ``learn`` command and its ``acoustic`` subcommand (``fmt``: the CLI's help format); its subcommands."""
    p = sub.add_parser("learn", help="learn the line's normal from good parts or sounds (into an engines directory)",
                       **fmt)
    modality = p.add_subparsers(dest="modality", required=True, metavar="MODALITY")
    a = modality.add_parser("acoustic", help="a normal-only model of a machine's sound, from WAV files or recordings",
                            **fmt)
    add_learn_arguments(a, "WAV files or directories made by `record` (minutes of the healthy machine)")
    a.add_argument("--max-false-alarms-per-hour", type=float, default=1.0, metavar="N",
                   help="false episodes per hour allowed on good audio: sets the threshold")
    a.add_argument("--microphone", default=None, metavar="NAME",
                   help="which microphone of a recording with several (default: its only one)")
    a.set_defaults(func=learn_acoustic)
    return modality  # ``learn visual`` is added by commands/learn_visual.py, which builds on this module
