"""``edge-inspector run`` (the daemon in the foreground) and ``check-config`` (what run will need).

Both load the config the same way: parsed, then checked against the machine (files, endpoints,
models; devices too for ``check-config``), every problem named in one error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from edge_inspector import DEFAULT_CONFIG, __version__

log = logging.getLogger("edge_inspector")


def load_checked_config(path: Path | None, check_devices: bool = True, bind: bool = True) -> Any:
    from edge_inspector.checks import check_environment
    from edge_inspector.config import ConfigError, load_config

    cfg = load_config(path)
    problems = check_environment(cfg, check_devices=check_devices, bind=bind)
    if problems:
        raise ConfigError(problems, path)
    return cfg


def check_config_command(args: argparse.Namespace) -> int:
    from edge_inspector.checks import exposure_warnings

    cfg = load_checked_config(args.config, bind=not args.no_bind)
    for warning in exposure_warnings(cfg):
        print(f"edge-inspector: warning: {warning}", file=sys.stderr)
    print(f"{args.config}: ok ({len(cfg.cameras)} camera(s), {len(cfg.microphones)} microphone(s))")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from edge_inspector.memory import limit_malloc_arenas
    from edge_inspector.stop_signals import interrupt_on_stop_signals

    limit_malloc_arenas()  # before any thread allocates: see edge_inspector.memory

    # Explicit handlers, also for a background job (which inherits SIGINT ignored): a stop while
    # the models load ends the command (exit 0); once running, the service drains and exits 0.
    with interrupt_on_stop_signals():
        return _run_daemon(args)


def _run_daemon(args: argparse.Namespace) -> int:
    from edge_inspector.console import StatusDisplay, setup_logging, stop_native_capture
    from edge_inspector.service import Service

    # A camera or microphone missing at boot starts offline and reconnects like one unplugged
    # later; refusing to start would take every other source of the station down with it.
    cfg = load_checked_config(args.config, check_devices=False)
    # FFmpeg/OpenCV print to stderr themselves: route that through the logger too
    setup_logging("json" if cfg.health.log_format == "json" else "text", args.verbose, capture_native=True)
    try:
        if args.config is None:
            log.info("no --config given: running the embedded demo (%s)", DEFAULT_CONFIG)
        service = Service(cfg)
        title = f"edge-inspector {__version__} · events on {cfg.publisher.endpoint} · Ctrl-C stops"
        with StatusDisplay(service.source_rows, title, cfg.health.status_interval_s) as display:
            code = service.run(tick=display.tick)
        if service.failure:
            log.error("stopped with a failure: %s", service.failure)
        return code
    finally:
        stop_native_capture()
