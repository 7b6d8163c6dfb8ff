"""``edge-inspector`` command line.

Exit codes: 0 ok, 1 runtime failure (a source or model failed, an input could not be read),
2 usage or config error.  User mistakes are printed as one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from edge_inspector import DEFAULT_CONFIG, __version__
from edge_inspector.errors import InputError, UserError


def cmd_check_config(args: argparse.Namespace) -> int:
    from edge_inspector.commands.run import check_config_command

    return check_config_command(args)


def cmd_run(args: argparse.Namespace) -> int:
    from edge_inspector.commands.run import run_command

    return run_command(args)


def cmd_inspect(args: argparse.Namespace) -> int:
    from edge_inspector.commands.inspect import inspect_paths

    return inspect_paths(args.paths, args.engines, args.backend, sys.stdout, overlay_dir=args.overlay,
                         precision=args.precision)


def cmd_tail(args: argparse.Namespace) -> int:
    from edge_inspector.client import curve_keys
    from edge_inspector.commands.tail import run_tail

    keys = curve_keys(args.curve_server_key, args.curve_client_key)
    return run_tail(args.endpoint, args.topic or [""], args.json, args.catchup, args.count,
                    since=args.since, curve_server_public=keys, heartbeats=args.heartbeats)


def cmd_keys(args: argparse.Namespace) -> int:
    from edge_inspector.commands.keys import keys_command

    return keys_command(args)


def cmd_log(args: argparse.Namespace) -> int:
    from edge_inspector.client import curve_keys
    from edge_inspector.commands.log import run_log

    return run_log(args.to, args.endpoint, args.catchup, args.topic or [""], since=args.since,
                   max_bytes=int(args.max_mb * 2**20), keep=args.keep, count=args.count,
                   curve_server_public=curve_keys(args.curve_server_key, args.curve_client_key))


def cmd_build_engines(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edge_inspector.commands.build_engines import build_all

    results = build_all(args.engines, args.cache_dir, args.precision, args.max_batch, Console(stderr=True))
    for row in results:
        print(json.dumps(row, default=str))
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from edge_inspector.commands.record import record_command

    return record_command(args)


def cmd_replay(args: argparse.Namespace) -> int:
    from edge_inspector.commands.replay import replay_command

    return replay_command(args)


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default: given ones as ``(default: X)``; options whose
    default is "nothing" say in their own words what happens without them."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        default = ", ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
        return f"{text} (default: {default})"


def _subscriber_arguments(p: argparse.ArgumentParser) -> None:
    """Where the events come from, for every command that subscribes (``tail``, ``log``)."""
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="read the endpoints and the daemon's CURVE public key from the daemon's own config "
                        "(options given here win; default: none, the daemon's default endpoints)")
    p.add_argument("--endpoint", default=None,
                   help="the daemon's PUB endpoint (default: --config's publisher.endpoint, else tcp://127.0.0.1:5556)")
    p.add_argument("--catchup", default=None,
                   help="catch-up endpoint for gaps; '' turns catch-up off (default: --config's "
                        "publisher.catchup_endpoint, else the endpoint's host with port + 1)")
    p.add_argument("--curve-server-key", default=None,
                   help="CURVE: the daemon's public key (Z85, or the path of its NAME.key file) "
                        "(default: from --config, else none: no CURVE)")
    p.add_argument("--curve-client-key", default=None,
                   help="CURVE: this client's NAME.key_secret file; its NAME.key must be in the daemon's allow-list "
                        "(default: none, a throw-away key pair)")


def build_parser() -> argparse.ArgumentParser:
    fmt = {"formatter_class": _HelpFormatter}
    parser = argparse.ArgumentParser(prog="edge-inspector", description="Real-time visual and acoustic inspection daemon.",
                                     **fmt)  # type: ignore[arg-type]
    parser.add_argument("--version", action="version", version=f"edge-inspector {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon (no --config: the embedded synthetic demo)", **fmt)  # type: ignore[arg-type]
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help=f"TOML config file (default: the embedded demo, {DEFAULT_CONFIG.name})")
    p.add_argument("-v", "--verbose", action="store_true", help="also log debug lines")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file and exit (0 ok, 2 problems)", **fmt)  # type: ignore[arg-type]
    p.add_argument("config", type=Path, help="the TOML config file to check")
    p.add_argument("--no-bind", action="store_true",
                   help="skip the test-binds of endpoints (for a station that is running and holds them)")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("inspect", help="inspect image (PNG/JPEG/BMP) and WAV files; one JSON line each", **fmt)  # type: ignore[arg-type]
    p.add_argument("paths", nargs="+", type=Path, help="image (PNG, JPEG, BMP) and WAV files")
    p.add_argument("--engines", type=Path, default=None, metavar="DIR",
                   help="engines directory with manifest.toml (default: the shipped models)")
    p.add_argument("--backend", default="onnxruntime", choices=["auto", "onnxruntime", "tensorrt"],
                   help="inference backend")
    p.add_argument("--overlay", type=Path, default=None, metavar="DIR",
                   help="also write a picture of each decision into DIR (images: heatmap, box and label; "
                        "WAV: spectrogram and score curve; default: no pictures)")
    p.add_argument("--precision", default=None, choices=["int8", "fp16", "fp32"],
                   help="as runtime.precision (default: the daemon's: int8 on ONNX Runtime, fp16 on TensorRT)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("replay", help="run a recording (or video/WAV files) through the daemon's pipeline", **fmt)  # type: ignore[arg-type]
    p.add_argument("recording", type=Path, nargs="+", help="a directory made by `record`, or video and/or WAV files")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="config for everything but the sources (default: the embedded demo's; per-source "
                        "settings default to the recording's)")
    p.add_argument("--speed", choices=["realtime", "max"], default="max",
                   help="max: as fast as inspected, no frame skipped, the same events every run; realtime: the recorded pace")
    p.add_argument("--labels", type=Path, default=None, metavar="CSV",
                   help="CSV of ground truth: evaluate and write a report (default: no evaluation)")
    p.add_argument("--report", type=Path, default=None, metavar="HTML",
                   help="HTML report path, with --labels (default: evaluation.html beside the recording)")
    p.add_argument("--events", type=Path, default=None, metavar="JSONL",
                   help="also write every published event as JSON lines (default: not written)")
    p.add_argument("--mqtt", action="store_true",
                   help="also send the replayed events to the config's [mqtt] broker (off by default)")
    p.add_argument("--plc", action="store_true",
                   help="also serve the replayed decisions on the config's [plc] bridge (off by default)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("record", help="record the configured cameras and microphones", **fmt)  # type: ignore[arg-type]
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the recording's directory (required)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="config naming the sources (default: the embedded demo)")
    p.add_argument("--duration", type=float, default=None, metavar="S",
                   help="seconds to record (default: until Ctrl-C / SIGTERM)")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("tail", help="print published events", **fmt)  # type: ignore[arg-type]
    _subscriber_arguments(p)
    p.add_argument("--topic", action="append", metavar="PREFIX",
                   help="topic prefix, repeatable, e.g. defect. (default: every topic)")
    p.add_argument("--heartbeats", action="store_true",
                   help="also print heartbeat events (hidden unless asked, or unless --topic names them)")
    p.add_argument("--json", action="store_true", help="one JSON object per line, for scripts")
    p.add_argument("--count", type=int, default=None, metavar="N", help="exit after N events (default: until Ctrl-C)")
    p.add_argument("--since", type=int, default=None, metavar="SEQ",
                   help="first replay every journalled event after this seq (default: live events only)")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("log", help="write every event to a file (.jsonl, .csv, .sqlite), exactly once, resumable", **fmt)  # type: ignore[arg-type]
    p.add_argument("--to", type=Path, required=True, metavar="FILE",
                   help="events.jsonl | events.csv | events.sqlite (required)")
    _subscriber_arguments(p)
    p.add_argument("--topic", action="append", metavar="PREFIX", help="topic prefix, repeatable (default: every event)")
    p.add_argument("--since", type=int, default=None, metavar="SEQ",
                   help="a new file starts after this seq (default 0: everything the journal holds)")
    p.add_argument("--max-mb", type=float, default=100.0, help="rotate the file at this size, 0: never")
    p.add_argument("--keep", type=int, default=10, help="rotated files to keep")
    p.add_argument("--count", type=int, default=None, metavar="N", help="exit after N events (default: until stopped)")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("keys", help="CURVE key pairs for the daemon and its clients", **fmt)  # type: ignore[arg-type]
    keys_sub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    k = keys_sub.add_parser("new", help="write DIR/NAME.key (public) and DIR/NAME.key_secret (mode 0600)", **fmt)  # type: ignore[arg-type]
    k.add_argument("name", help="the key pair's name: the station or the client it identifies")
    k.add_argument("--dir", type=Path, default=Path("."), help="directory for the two files")
    k.set_defaults(func=cmd_keys)

    from edge_inspector.commands import calibrate, learn, learn_visual

    learn_visual.add_visual_parser(learn.add_parser(sub, fmt), fmt)
    calibrate.add_parser(sub, fmt)

    p = sub.add_parser("build-engines", help="compile engines/*.onnx to TensorRT plans for this device", **fmt)  # type: ignore[arg-type]
    p.add_argument("--engines", type=Path, default=None, metavar="DIR",
                   help="engines directory with manifest.toml (default: the shipped models)")
    p.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="where plans are kept (default: $EDGE_INSPECTOR_CACHE, else systemd's cache directory/plans, "
                        "else ~/.cache/edge-inspector/plans)")
    p.add_argument("--precision", choices=["int8", "fp16", "fp32"], default="fp16",
                   help="int8: each model's INT8 file for TensorRT where it ships one, else fp16")
    p.add_argument("--max-batch", type=int, default=8, help="the largest batch the plans accept")
    p.set_defaults(func=cmd_build_engines)
    return parser


def _subscriber_defaults(args: argparse.Namespace) -> None:
    """tail / log: what --config says, then the daemon's defaults (the catch-up port is port + 1)."""
    if args.config is not None:
        from edge_inspector.client_config import daemon_endpoints

        found = daemon_endpoints(args.config)
        args.endpoint = args.endpoint or found.endpoint
        if args.catchup is None:
            args.catchup = found.catchup or ""
        if args.curve_server_key is None:
            args.curve_server_key = found.server_public_key
    args.endpoint = args.endpoint or "tcp://127.0.0.1:5556"
    if args.catchup is None:
        host, _, port = args.endpoint.rpartition(":")
        args.catchup = f"{host}:{int(port) + 1}" if args.endpoint.startswith("tcp://") and port.isdigit() else None
    elif args.catchup == "":
        args.catchup = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "engines", "unset") is None:
        from edge_inspector import DEFAULT_ENGINES_DIR

        args.engines = DEFAULT_ENGINES_DIR
    try:
        if args.command in ("tail", "log"):
            _subscriber_defaults(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 0
    except InputError as exc:
        print(f"edge-inspector: {exc}", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        for line in str(exc).splitlines():
            print(f"edge-inspector: {line}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a bug, not a user mistake: one line, the traceback on request
        if os.environ.get("EDGE_INSPECTOR_DEBUG"):
            raise
        print(f"edge-inspector: internal error: {type(exc).__name__}: {exc} "
              "(set EDGE_INSPECTOR_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
