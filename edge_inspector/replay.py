"""``edge-inspector replay``: a recording through exactly the daemon's pipeline.

The inputs (a directory made by ``record``, or plain video and/or WAV files) become ``file://``
cameras and microphones named as recorded (a plain file: its stem), and a normal
:class:`~edge_inspector.service.Service` runs them: same inspectors, same events, same topics.
Everything else comes from ``--config`` (or the embedded demo config); per-source settings
(threshold, roi, onset/offset, chunk_s, channel) come from ``--config``'s source of the same
name, else from the config the recording was made with, so yesterday's decision is reproduced.
The health endpoint and snapshots are off and the journal lives in a temporary directory, so a
replay never collides with a daemon running on the same machine.

``--speed max`` reads files as fast as they are inspected (blocking queues, lockstep batches):
no frame is skipped and two runs publish identical events (same topics, sources, frames /
offsets, labels, scores, boxes; only seq, id, latency and timing differ).  ``--speed realtime``
keeps the recorded timing.  A truncated or corrupt file is replayed as far as it is valid, then
reported with its position, and the exit code is 1.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2

from edge_inspector import DEFAULT_CONFIG
from edge_inspector.config import Config, ConfigError, parse_config
from edge_inspector.errors import InputError, UserError
from edge_inspector.events.schema import encode
from edge_inspector.values import Verdict
from edge_inspector.sources.kinds.video_file import VIDEO_SUFFIXES
from edge_inspector.sources.recording_files import (
    AUDIO_TIMESTAMPS,
    FRAME_HEADER,
    FRAME_TIMESTAMPS,
    MANIFEST,
    WavCheck,
    read_sidecar,
)
from edge_inspector.tomlcompat import tomllib

log = logging.getLogger(__name__)

CAMERA_KEYS = ("threshold", "anomaly_threshold", "roi", "queue_size")
MICROPHONE_KEYS = ("onset", "offset", "chunk_s", "channel", "queue_size")


@dataclass
class ReplayInput:
    """One file to replay and what it should contain."""

    kind: str  # "camera" | "microphone"
    name: str
    path: Path  # the file as given (reports and messages name this one)
    expected: int | None = None  # frames (camera) from the sidecar / manifest
    fps: float = 0.0
    template: dict[str, Any] | None = None  # the source's settings when it was recorded
    wav: WavCheck | None = None
    uri_path: Path | None = None  # a repaired copy of a WAV with a stale header

    @property
    def uri(self) -> str:
        return (self.uri_path or self.path).resolve().as_uri()


def _stem_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "_", path.stem) or "source"


def _video_input(path: Path, name: str, template: dict[str, Any] | None = None,
                 manifest_frames: int | None = None) -> ReplayInput:
    sidecar = path.with_name(path.stem + FRAME_TIMESTAMPS)
    expected = manifest_frames
    if sidecar.is_file():
        expected = len(read_sidecar(sidecar, FRAME_HEADER))
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0 if cap.isOpened() else 0.0
    if expected is None and cap.isOpened() and path.suffix.lower() in (".mp4", ".mov", ".m4v"):
        expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None  # exact from the index
    cap.release()
    return ReplayInput("camera", name, path, expected, fps, template)


def _recording_inputs(directory: Path) -> tuple[list[ReplayInput], dict[str, Any]]:
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{directory}: not a recording (no {MANIFEST}); pass video/WAV files instead")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{manifest_path}: unreadable recording manifest ({exc})") from None
    snapshot = manifest.get("config") or {}
    templates = {s.get("name"): s for sec in ("camera", "microphone") for s in snapshot.get(sec, [])}
    inputs = []
    for name, info in (manifest.get("cameras") or {}).items():
        path = directory / info["file"]
        if not path.is_file():
            raise InputError(f"{path}: missing from the recording (listed in {manifest_path})")
        frames = info.get("frames") if manifest.get("ended") else None
        inputs.append(_video_input(path, name, templates.get(name), frames))
    for name, info in (manifest.get("microphones") or {}).items():
        path = directory / info["file"]
        if not path.is_file():
            raise InputError(f"{path}: missing from the recording (listed in {manifest_path})")
        inputs.append(ReplayInput("microphone", name, path, template=templates.get(name)))
    if not inputs:
        raise InputError(f"{manifest_path}: the recording holds no camera or microphone files")
    return inputs, manifest


def resolve_inputs(paths: list[Path]) -> tuple[list[ReplayInput], list[dict[str, Any]]]:
    """Directories and files -> inputs with unique names (+ the manifests of recordings)."""
    inputs: list[ReplayInput] = []
    manifests = []
    for path in paths:
        if path.is_dir():
            found, manifest = _recording_inputs(path)
            inputs += found
            manifests.append(manifest)
        elif not path.exists():
            raise InputError(f"{path}: no such file or directory")
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            inputs.append(_video_input(path, _stem_name(path)))
        elif path.suffix.lower() == ".wav":
            inputs.append(ReplayInput("microphone", _stem_name(path), path))
        else:
            raise InputError(f"{path}: not a recording directory, video ({', '.join(sorted(VIDEO_SUFFIXES))}) or .wav file")
    seen: dict[str, Path] = {}
    for inp in inputs:
        if inp.name in seen:
            raise UserError(f"{inp.path} and {seen[inp.name]} would both be replayed as source {inp.name!r}; "
                            "rename one file or replay them separately")
        seen[inp.name] = inp.path
    return inputs, manifests


def prepare_wavs(inputs: list[ReplayInput], workdir: Path) -> None:
    """Check WAV headers; a stale or truncated header is replayed from a repaired copy."""
    for inp in inputs:
        if inp.kind != "microphone":
            continue
        inp.wav = WavCheck(inp.path)
        if inp.wav.truncated or inp.wav.stale:
            if inp.wav.stale:
                log.warning("%s: the WAV header is stale (recording stopped hard); using all %d bytes of audio",
                            inp.path, inp.wav.available)
            sub = workdir / f"wav-{inp.name}"
            sub.mkdir(exist_ok=True)
            inp.uri_path = inp.wav.repaired_copy(sub)
            sidecar = inp.path.with_name(inp.path.stem + AUDIO_TIMESTAMPS)
            if sidecar.is_file():  # the copy keeps the recorded start time
                shutil.copy(sidecar, sub / sidecar.name)


PLANT_SECTIONS = ("mqtt", "plc")


def build_config(inputs: list[ReplayInput], config_path: Path | None, realtime: bool, workdir: Path,
                 plant: tuple[str, ...] = ()) -> Config:
    """A daemon config whose sources are the inputs (see the module docstring for the rules).

    The config's plant integrations (``[mqtt]``, ``[plc]``) are left out unless named in
    ``plant`` (``--mqtt``, ``--plc``): replayed events must not reach a real broker or a real
    reject gate by accident.
    """
    path = config_path or DEFAULT_CONFIG
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {path}"], path) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read as TOML: {exc}"], path) from None
    given = {s.get("name"): s for sec in ("camera", "microphone") for s in data.get(sec, []) if isinstance(s, dict)}
    out: dict[str, Any] = {k: v for k, v in data.items() if k not in ("camera", "microphone")}
    out["camera"], out["microphone"] = [], []
    for inp in inputs:
        template = given.get(inp.name) or inp.template or {}
        keys = CAMERA_KEYS if inp.kind == "camera" else MICROPHONE_KEYS
        entry = {k: template[k] for k in keys if template.get(k) is not None}
        entry.update(name=inp.name, uri=inp.uri, realtime=realtime, loop=False)
        out[inp.kind].append(entry)
    out["health"] = {**out.get("health", {}), "listen": None}
    # nobody could fetch them (no HTTP server) and the journal they belong to is temporary;
    # the --report has the pictures that matter: the misses and false rejects
    out["snapshots"] = {**out.get("snapshots", {}), "enabled": False}
    for section in PLANT_SECTIONS:
        if section in out and section not in plant:
            del out[section]
            log.info("replay: [%s] of %s is not used (pass --%s to send replayed events there)",
                     section, path, section)
    publisher = dict(out.get("publisher", {}))
    # never the station's own journal: replayed events must not reach PLC bridges through catch-up
    publisher["journal"] = str(workdir / "journal.sqlite3")
    out["publisher"] = publisher
    return parse_config(out, path.resolve())


def replay_latency_ms(verdict: Verdict, realtime: bool) -> float:
    """What the evaluation reports as a verdict's latency.

    At ``--speed realtime`` it is capture to publish, as on a line.  At ``--speed max`` that would
    measure the replay, not the station: frames are read ahead and wait in the queue by design,
    and audio is read faster than its clock runs.  So there a frame counts from when the
    inspector took it (its processing time), and an acoustic episode from its onset to the point
    in the audio where the event was decided (the delay a station with instant processing has).
    """
    if realtime:
        return (time.monotonic() - verdict.mono) * 1000.0
    if verdict.kind == "visual":
        queued = float(verdict.extra.get("timing_ms", {}).get("queue_wait", 0.0))
        return max(0.0, (time.monotonic() - verdict.mono) * 1000.0 - queued)
    decided = verdict.extra.get("decided_at_s")
    start = verdict.offset_s
    return max(0.0, (decided - start) * 1000.0) if decided is not None and start is not None else 0.0


class EventLog:
    """Observes the service: topics for each event, ``--events`` JSON lines, verdict observers."""

    def __init__(self, cfg: Config, events_path: Path | None, observers: list[Callable[[Verdict, float], None]],
                 realtime: bool = True) -> None:
        self.observers = observers
        self.realtime = realtime
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.fh = None
        if events_path is not None:
            try:
                self.fh = open(events_path, "w", encoding="utf-8")
            except OSError as exc:
                raise InputError(f"--events {events_path}: cannot write: {exc.strerror}") from None

    def on_verdict(self, verdict: Verdict) -> None:
        latency_ms = replay_latency_ms(verdict, self.realtime)
        with self._lock:
            self.counts[verdict.source] = self.counts.get(verdict.source, 0) + 1
            for observe in self.observers:
                observe(verdict, latency_ms)

    def on_event(self, topic: str, event: dict[str, Any]) -> None:
        """Every published event with the topic it went out on."""
        if self.fh is not None:
            line = b'{"topic":' + json.dumps(topic).encode() + b',"event":' + encode(event) + b"}\n"
            with self._lock:
                self.fh.write(line.decode("utf-8"))

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def comparable(event: dict[str, Any]) -> tuple[Any, ...]:
    """The part of an event two ``--speed max`` replays must agree on."""
    return tuple(event.get(k) for k in ("source", "kind", "label", "frame", "offset_s", "duration_s", "score", "bbox",
                                         "defect", "state"))


def truncation_problems(inputs: list[ReplayInput], delivered: dict[str, int]) -> list[str]:
    """Files that ended before their sidecar / header said they would, with the position."""
    problems = []
    for inp in inputs:
        if inp.kind == "camera" and inp.expected is not None and delivered.get(inp.name, 0) < inp.expected:
            n = delivered.get(inp.name, 0)
            when = f", {n / inp.fps:.2f} s" if inp.fps else ""
            problems.append(f"{inp.path}: truncated or corrupt at frame {n}{when} (expected {inp.expected} frames; "
                            f"frames 0-{n - 1} were replayed; file size {inp.path.stat().st_size} bytes)")
        if inp.kind == "microphone" and inp.wav is not None and inp.wav.truncated:
            w = inp.wav
            rate_bytes = max(1, w.rate * max(1, w.block_align))
            problems.append(f"{inp.path}: truncated at byte {w.data_offset + w.available} "
                            f"({w.available / rate_bytes:.2f} s of the {w.declared / rate_bytes:.2f} s the header "
                            "declares); the valid part was replayed")
    return problems
