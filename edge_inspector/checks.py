"""Checks that need the outside world: files, endpoints, devices, models.

``check-config`` and ``run`` both call :func:`check_environment` after the structural
validation in :mod:`edge_inspector.config`, so a daemon never starts on a config that
cannot work, and every problem is reported at once, each naming its key path.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_inspector.config import Config, file_path, uri_scheme
from edge_inspector.errors import UserError

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mjpeg", ".mjpg", ".ts"}


def _check_file(key: str, uri: str, suffixes: set[str] | None = None) -> str | None:
    path = file_path(uri)
    if not path.is_absolute():
        return f"{key}: file URIs need an absolute path (file:///abs/path), got {uri!r}"
    if not path.exists():
        return f"{key}: file not found: {path}"
    if not path.is_file():
        return f"{key}: not a regular file: {path}"
    if suffixes is not None and path.suffix.lower() not in suffixes:
        return f"{key}: {path.name} does not look like a video file (expected one of {', '.join(sorted(suffixes))})"
    return None


def check_environment(cfg: Config, check_devices: bool = True, bind: bool = True) -> list[str]:
    """Every problem found, one line each, starting with the config key it concerns.

    ``check_devices=False`` skips cameras and microphones that are merely absent right now
    (``run`` starts them offline and reconnects); ``bind=False`` skips the endpoint test-binds
    (checking the config of a station that is running and holds those ports).
    """
    problems: list[str] = []
    for i, cam in enumerate(cfg.camera):
        if not cam.enabled:
            continue
        scheme = uri_scheme(cam.uri)
        key = f"camera[{i}].uri"
        if scheme == "file":
            msg = _check_file(key, cam.uri, VIDEO_SUFFIXES)
            if msg:
                problems.append(msg)
        elif scheme == "v4l2" and check_devices:
            device = Path(cam.uri.split("://", 1)[1] or "/dev/video0")
            if not device.exists():
                problems.append(f"{key}: video device {device} does not exist (is the camera plugged in?)")
        elif scheme == "gst":
            from edge_inspector.sources.camera import opencv_has_gstreamer

            if not opencv_has_gstreamer():
                problems.append(f"{key}: this OpenCV build has no GStreamer support; use file/rtsp/http/v4l2 or JetPack's OpenCV")
        elif scheme == "synthetic":
            from edge_inspector.sources.camera import synthetic_camera_params

            try:
                synthetic_camera_params(cam.uri)
            except UserError as exc:
                problems.append(f"{key}: {exc}")
    for i, mic in enumerate(cfg.microphone):
        if not mic.enabled:
            continue
        scheme = uri_scheme(mic.uri)
        key = f"microphone[{i}].uri"
        if scheme == "file":
            msg = _check_file(key, mic.uri, {".wav"})
            if msg:
                problems.append(msg)
        elif scheme == "synthetic" or check_devices:
            from edge_inspector.sources.microphone import check_microphone_uri

            msg = check_microphone_uri(mic.uri)
            if msg:
                problems.append(f"{key}: {msg}")
    if bind:
        problems += _check_publisher(cfg)
    problems += _check_journal(cfg)
    problems += _check_models(cfg)
    from edge_inspector.sinks import check_sinks

    problems += check_sinks(cfg, bind)
    return problems


def _check_listen(listen: str) -> str | None:
    """``host:port`` that a TCP server can bind right now."""
    import socket

    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return f"expected HOST:PORT (e.g. 127.0.0.1:9108), got {listen!r}"
    try:
        with socket.create_server((host or "127.0.0.1", int(port))):
            return None
    except OSError as exc:
        return f"cannot listen on {listen}: {exc.strerror or exc}"


def _check_publisher(cfg: Config) -> list[str]:
    from edge_inspector.events.bus import check_endpoint_bindable

    problems = []
    pub = cfg.publisher
    for key, endpoint in (("publisher.endpoint", pub.endpoint), ("publisher.catchup_endpoint", pub.catchup_endpoint)):
        if endpoint:
            msg = check_endpoint_bindable(endpoint)
            if msg:
                problems.append(f"{key}: {msg}")
    if cfg.health.listen:
        msg = _check_listen(cfg.health.listen)
        if msg:
            problems.append(f"health.listen: {msg}")
    return problems


def _check_journal(cfg: Config) -> list[str]:
    problems = []
    pub = cfg.publisher
    if pub.catchup_endpoint and pub.catchup_endpoint == pub.endpoint:
        problems.append("publisher.catchup_endpoint: must differ from publisher.endpoint")
    parent = pub.journal.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        problems.append(f"publisher.journal: cannot create {pub.journal} ({parent} is not writable)")
    return problems


def _check_models(cfg: Config) -> list[str]:
    from edge_inspector.manifest import load_manifest

    try:
        manifest = load_manifest(cfg.runtime.engines_dir)
    except UserError as exc:
        return [f"runtime.engines_dir: {exc}"]
    problems = []
    if cfg.cameras and not manifest.entries("visual"):
        problems.append("runtime.engines_dir: the manifest has no visual model but cameras are configured")
    if cfg.microphones and manifest.classifier("acoustic") is None:
        problems.append("runtime.engines_dir: the manifest has no acoustic model but microphones are configured")
    acoustic = manifest.classifier("acoustic")
    if acoustic is not None:
        for i, mic in enumerate(cfg.microphone):
            onset = acoustic.onset if mic.onset is None else mic.onset
            offset = acoustic.offset if mic.offset is None else mic.offset
            if offset > onset:
                problems.append(
                    f"microphone[{i}].offset: {offset} is above the onset {onset} (the model's "
                    f"onset/offset are {acoustic.onset}/{acoustic.offset}); offset must be <= onset"
                )
    if manifest.anomaly("visual") is None:
        for i, cam in enumerate(cfg.camera):
            if cam.anomaly_threshold is not None:
                problems.append(f"camera[{i}].anomaly_threshold: the engines directory has no visual anomaly model "
                                "(make one with `edge-inspector learn visual`)")
    if cfg.runtime.backend == "tensorrt":
        from edge_inspector.runtime.tensorrt import tensorrt_available

        ok, reason = tensorrt_available()
        if not ok:
            problems.append(f"runtime.backend: TensorRT is not usable here: {reason}")
    return problems
