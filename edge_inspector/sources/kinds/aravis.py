"""GigE Vision and USB3 Vision cameras through Aravis: ``aravis://<device id | IP address | first>``.

Machine-vision cameras are configured, not just opened: the pixel format, the sensor region
read out, a fixed exposure and gain, the acquisition rate, the trigger (free-run, a software
trigger the daemon sends at a fixed rate, or a hardware input line wired to a part sensor) and,
for GigE, the stream packet size and inter-packet delay.  Every setting left unset keeps what
the camera holds (what its own tool or a user set saved there).

Aravis (a C library, through GObject introspection: Debian's ``gir1.2-aravis-0.8`` and
``python3-gi``) runs the stream in its own thread and hands over filled buffers; this thread
converts each to BGR and stamps it with the camera's timestamp mapped to our clocks
(:class:`~edge_inspector.sources.stream_clock.StreamClock`), so a frame carries the time it was
exposed, not the time it was read.  A camera that stops answering its heartbeat (GigE) or is
unplugged (USB) is reported offline and reopened with a short backoff; a free-running camera
that sends nothing for ``stall_timeout_s`` is too, but a camera waiting for its hardware
trigger may legitimately be silent for hours.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator, Literal, Union

from pydantic import Field, field_validator, model_validator

from edge_inspector.errors import SourceError, UserError
from edge_inspector.sources.base import BoundedQueue, Frame, KindMetrics, SourceThread, StatusCallback
from edge_inspector.sources.frames import crop_roi, prepared
from edge_inspector.sources.pixels import PIXEL_FORMATS, SUPPORTED_FORMATS, to_bgr
from edge_inspector.sources.registry import OpenContext, SourceKind
from edge_inspector.sources.settings import CameraSettings, Rect, checked_rect
from edge_inspector.sources.stream_clock import StreamClock

log = logging.getLogger(__name__)

INSTALL_HINT = ("apt install gir1.2-aravis-0.8 python3-gi (setup.sh --gige), and a venv made with "
                "--system-site-packages (see the README's GigE Vision section)")
FeatureValue = Union[bool, int, float, str]


class AravisSettings(CameraSettings):
    """An ``aravis://`` camera; unset keys keep the camera's own setting."""

    pixel_format: str | None = None  # GenICam name: Mono8, Mono12, BayerRG8, RGB8, …
    exposure_us: float | None = Field(None, gt=0.0)
    gain: float | None = Field(None, ge=0.0)  # the camera's Gain feature (dB on most cameras)
    frame_rate: float | None = Field(None, gt=0.0, le=10000.0)  # free-run rate; software trigger: its rate
    region: Rect | None = None  # [x, y, w, h] of the sensor read out by the camera
    trigger: Literal["free-run", "software", "line"] = "free-run"
    trigger_line: str = "Line0"  # trigger = "line": the input the part sensor is wired to
    trigger_activation: Literal["RisingEdge", "FallingEdge", "AnyEdge", "LevelHigh", "LevelLow"] | None = None
    packet_size: int | None = Field(None, ge=576, le=16384)  # GigE: bytes per packet; unset: negotiated
    packet_delay_ns: int = Field(0, ge=0, le=100_000_000)  # GigE: pause between packets (bandwidth sharing)
    buffers: int = Field(16, ge=2, le=512)  # stream buffers: how many frames Aravis can hold for this thread
    features: dict[str, FeatureValue] = Field(default_factory=dict)  # any other GenICam feature, set in order
    stall_timeout_s: float = Field(2.0, ge=0.2, le=60.0)  # free-run/software: nothing for this long -> offline
    max_frame_age_s: float = Field(1.0, ge=0.05, le=60.0)  # a frame older than this when read is dropped as stale

    @field_validator("uri")
    @classmethod
    def _device(cls, uri: str) -> str:
        if not device_of(uri):
            raise ValueError("name the camera: aravis://<device id>, aravis://<IP address> or aravis://first")
        return uri

    @field_validator("region")
    @classmethod
    def _region(cls, region: Rect | None) -> Rect | None:
        return checked_rect(region, "region")

    @model_validator(mode="after")
    def _software_rate(self) -> "AravisSettings":
        if self.trigger == "software" and self.frame_rate is None:
            raise ValueError('frame_rate: required with trigger = "software" (the rate the daemon triggers at)')
        return self


def device_of(uri: str) -> str:
    """``aravis://first`` -> ``first``; the device id may contain anything but ``/`` and spaces."""
    return uri.split("://", 1)[1].strip("/") if "://" in uri else ""


def load_aravis() -> Any:
    """The Aravis 0.8 module, or a :class:`UserError` that says how to install it."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as exc:
        raise UserError(f"aravis:// cameras need Aravis 0.8 ({exc}): {INSTALL_HINT}") from None
    return Aravis


def _gerror_is_config(exc: Exception) -> bool:
    """A GenICam error (no such feature, value out of range, read-only) is the config's to fix."""
    domain = getattr(exc, "domain", "")
    if domain == "arv-gc-error-quark":
        return True
    return domain == "arv-device-error-quark" and getattr(exc, "code", -1) in (0, 1, 7, 13, 15)


# ---- the camera --------------------------------------------------------------------------------
def open_device(aravis: Any, device: str) -> Any:
    """An ``ArvCamera`` for a device id, an IP address or ``first`` (the first one discovered)."""
    if device == "first":
        aravis.update_device_list()
        if aravis.get_n_devices() == 0:
            raise SourceError("no GigE Vision or USB3 Vision camera found")
        device = aravis.get_device_id(0)
    try:
        return aravis.Camera.new(device)
    except Exception as exc:  # noqa: BLE001 - GLib.Error, whose class lives in gi
        raise SourceError(f"cannot open camera {device!r}: {getattr(exc, 'message', exc)}") from None


def _within(key: str, value: float, bounds: Any, unit: str = "") -> None:
    if not bounds.min <= value <= bounds.max:
        raise UserError(f"{key}: {value:g}{unit} is outside what this camera accepts ({bounds.min:g} to {bounds.max:g}{unit})")


def configure(aravis: Any, cam: Any, s: AravisSettings) -> None:
    """Apply every set key, in the order GenICam needs (format and region before rate and trigger).

    A value the camera cannot take is a :class:`UserError` naming the key and what it accepts.
    """
    step = "pixel_format"
    try:
        if s.pixel_format is not None:
            offered = list(cam.dup_available_pixel_formats_as_strings())
            if s.pixel_format not in offered:
                raise UserError(f"pixel_format: {s.pixel_format!r} is not offered by this camera (it offers {', '.join(offered)})")
            cam.set_pixel_format_from_string(s.pixel_format)
        step = "region"
        if s.region is not None:
            x, y, w, h = s.region
            sensor = cam.get_sensor_size()
            if x + w > sensor.width or y + h > sensor.height:
                raise UserError(f"region: {list(s.region)} does not fit the {sensor.width}x{sensor.height} sensor")
            cam.set_region(x, y, w, h)
        step = "exposure_us"
        if s.exposure_us is not None:
            if cam.is_exposure_auto_available():
                cam.set_exposure_time_auto(aravis.Auto.OFF)
            _within("exposure_us", s.exposure_us, cam.get_exposure_time_bounds(), " us")
            cam.set_exposure_time(s.exposure_us)
        step = "gain"
        if s.gain is not None:
            if cam.is_gain_auto_available():
                cam.set_gain_auto(aravis.Auto.OFF)
            _within("gain", s.gain, cam.get_gain_bounds())
            cam.set_gain(s.gain)
        step = "frame_rate"
        if s.frame_rate is not None and s.trigger == "free-run":
            _within("frame_rate", s.frame_rate, cam.get_frame_rate_bounds(), " fps")
            cam.set_frame_rate(s.frame_rate)
        step = "trigger"
        if s.trigger == "free-run":
            cam.clear_triggers()
        else:
            source = "Software" if s.trigger == "software" else s.trigger_line
            offered = list(cam.dup_available_trigger_sources())
            if source not in offered:
                key = "trigger" if s.trigger == "software" else "trigger_line"
                raise UserError(f"{key}: this camera has no {source!r} trigger source (it has {', '.join(offered)})")
            cam.set_trigger(source)
            if s.trigger_activation is not None:
                cam.set_string("TriggerActivation", s.trigger_activation)
        for name, value in s.features.items():
            step = f"features.{name}"
            cam.get_device().set_features_from_string(f"{name}={_feature_text(value)}")
        if cam.is_gv_device():
            step = "packet_size"
            if s.packet_size is not None:
                cam.gv_set_packet_size(s.packet_size)
            else:
                cam.gv_auto_packet_size()
            step = "packet_delay_ns"
            cam.gv_set_packet_delay(s.packet_delay_ns)
        cam.set_acquisition_mode(aravis.AcquisitionMode.CONTINUOUS)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - GLib.Error
        message = getattr(exc, "message", str(exc))
        if _gerror_is_config(exc):
            raise UserError(f"{step}: {message}") from None
        raise SourceError(f"setting {step}: {message}") from None


def _feature_text(value: FeatureValue) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


#: Aravis stream statistics exported as metrics: info name -> (metric, label value)
_BUFFER_INFOS = {"n_completed_buffers": "completed", "n_failures": "failed", "n_underruns": "underrun",
                 "n_timeouts": "timeout", "n_aborted": "aborted", "n_missing_frames": "missing"}
_PACKET_INFOS = {"n_received_packets": "received", "n_missing_packets": "missing", "n_resent_packets": "resent",
                 "n_error_packets": "error"}


class AravisCamera(SourceThread[Frame]):
    """One Aravis camera in its own thread: configure, stream, convert, stamp; reopen when lost."""

    kind = "camera"

    def __init__(self, settings: AravisSettings, queue: BoundedQueue[Frame],
                 on_status: StatusCallback | None = None, context: OpenContext = OpenContext()) -> None:
        # a camera that comes back is found within a second or two: its own timeouts are short
        super().__init__(settings.name, settings.uri, queue, on_status, live=True, backoff_s=(0.5, 2.0))
        self.cfg = settings
        self.prepare = context.prepare
        self.stall_after_s = None if settings.trigger == "line" else settings.stall_timeout_s
        self.clock = StreamClock(settings.max_frame_age_s, backlog=False)
        self.next_index = 0
        self.cam: Any = None
        self.stream: Any = None
        self._lost = threading.Event()  # set by Aravis' heartbeat thread, or when frames stopped coming
        self._lost_handler: int | None = None
        self._totals: dict[str, float] = {}  # statistics of the streams before this one
        self._stats_lock = threading.Lock()
        self.device_id = ""

    def open(self) -> None:
        aravis = load_aravis()
        self.release()
        cam = open_device(aravis, device_of(self.cfg.uri))
        self._lost.clear()
        self._lost_handler = cam.get_device().connect("control-lost", lambda _device: self._lost.set())
        self.cam = cam
        self.device_id = cam.get_device_id() or device_of(self.cfg.uri)
        try:
            configure(aravis, cam, self.cfg)
        except UserError as exc:
            raise UserError(f"camera {self.device_id}: {exc}") from None
        try:
            stream = cam.create_stream(None, None)
            payload = cam.get_payload()
            for _ in range(self.cfg.buffers):
                stream.push_buffer(aravis.Buffer.new_allocate(payload))
            self.stream = stream
            self.clock.reset(self.cfg.frame_rate or 0.0)
            cam.start_acquisition()
        except Exception as exc:  # noqa: BLE001 - GLib.Error
            raise SourceError(f"cannot start streaming from {self.device_id}: {getattr(exc, 'message', exc)}") from None
        log.info("camera %s: %s %s (%s) streaming %s %dx%d, trigger %s", self.source_name, cam.get_vendor_name(),
                 cam.get_model_name(), self.device_id, cam.get_pixel_format_as_string(),
                 cam.get_region().width, cam.get_region().height, self.cfg.trigger)

    def release(self) -> None:
        cam, stream = self.cam, self.stream
        self.cam = self.stream = None
        if stream is not None:
            with self._stats_lock:
                for name, value in _stream_infos(stream).items():
                    self._totals[name] = self._totals.get(name, 0.0) + value
        if cam is not None:
            if not self._lost.is_set():  # a lost camera would make each command wait for its timeout
                try:
                    cam.stop_acquisition()
                except Exception as exc:  # noqa: BLE001 - GLib.Error
                    log.debug("camera %s: stop_acquisition: %s", self.source_name, exc)
            if self._lost_handler is not None:
                cam.get_device().disconnect(self._lost_handler)
                self._lost_handler = None
        # dropping the references stops the stream thread and gives up control of the camera

    def read_items(self) -> Iterator[Frame]:
        cam, stream = self.cam, self.stream
        aravis = load_aravis()
        period = 1.0 / self.cfg.frame_rate if self.cfg.trigger == "software" and self.cfg.frame_rate else 0.0
        next_trigger = time.monotonic()
        last_frame = time.monotonic()
        while not self.stop_event.is_set():
            if self._lost.is_set():
                raise SourceError(f"lost the connection to {self.device_id} (it stopped answering its heartbeat)")
            now = time.monotonic()
            if period and now >= next_trigger:
                cam.software_trigger()
                next_trigger = max(next_trigger + period, now)
            wait_s = min(0.1, max(0.001, next_trigger - now)) if period else 0.1
            t0 = time.monotonic()
            buffer = stream.timeout_pop_buffer(int(wait_s * 1e6))
            if buffer is None:
                if self.stall_after_s is not None and time.monotonic() - last_frame > self.stall_after_s:
                    self._lost.set()  # probably gone: don't wait for it to acknowledge a stop
                    raise SourceError(f"no frame from {self.device_id} for {self.stall_after_s:g} s")
                continue
            read_s = time.monotonic() - t0
            try:
                if buffer.get_status() != aravis.BufferStatus.SUCCESS:
                    continue  # counted by Aravis (n_failures): a frame lost on the wire is never inspected
                image = to_bgr(buffer.get_image_data(), buffer.get_image_width(), buffer.get_image_height(),
                               buffer.get_image_pixel_format(), buffer.get_image_padding()[0])
                camera_ns = buffer.get_timestamp()
            finally:
                stream.push_buffer(buffer)
            last_frame = mono = time.monotonic()
            stamp = self.clock.stamp(camera_ns / 1e6 if camera_ns else None, read_s, mono, time.time())
            if stamp.stale:
                self.counters.stale += 1
                continue
            self.progress()
            index = self.next_index
            self.next_index += 1
            crop, origin = crop_roi(image, self.cfg.roi, self.source_name)
            yield prepared(Frame(self.source_name, index, stamp.ts, stamp.mono, crop, origin), self.prepare)

    def statistics(self) -> dict[str, float]:
        """Aravis' stream statistics since the daemon started (every connection added up)."""
        with self._stats_lock:
            totals = dict(self._totals)
            stream = self.stream
        if stream is not None:
            for name, value in _stream_infos(stream).items():
                totals[name] = totals.get(name, 0.0) + value
        return totals

    def source_metrics(self) -> KindMetrics:
        stats = self.statistics()
        return {
            "edge_inspector_camera_stream_buffers": (
                "camera stream buffers by outcome (Aravis: completed, failed, underrun: no free buffer, ...)", "counter",
                {(("outcome", label),): stats[name] for name, label in _BUFFER_INFOS.items() if name in stats}),
            "edge_inspector_camera_stream_packets": (
                "GigE Vision stream packets by outcome (received, missing, resent, error)", "counter",
                {(("outcome", label),): stats[name] for name, label in _PACKET_INFOS.items() if name in stats}),
        }


def _stream_infos(stream: Any) -> dict[str, float]:
    """Every unsigned counter the stream keeps (Aravis' names: n_completed_buffers, n_failures, ...)."""
    out = {}
    try:
        for i in range(stream.get_n_infos()):
            if stream.get_info_type(i).name == "guint64":
                out[stream.get_info_name(i)] = float(stream.get_info_uint64(i))
    except Exception as exc:  # noqa: BLE001 - statistics must never break capture
        log.debug("stream statistics: %s", exc)
    return out


# ---- check-config ------------------------------------------------------------------------------
def check(settings: AravisSettings, devices: bool) -> list[str]:
    """Aravis is installed; with ``devices``: the camera answers and takes every set value."""
    try:
        aravis = load_aravis()
    except UserError as exc:
        return [f"uri: {exc}"]
    if not devices:
        return []
    try:
        cam = open_device(aravis, device_of(settings.uri))
    except SourceError as exc:
        return [f"uri: {exc} (is it powered, on this network, and not held by another program?)"]
    try:
        device = cam.get_device()
        if cam.is_gv_device() and not device.is_controller():
            return []  # it answers, and another program (the running daemon?) controls it: settings untested
        configure(aravis, cam, settings)
        code = cam.get_pixel_format()
        if code not in PIXEL_FORMATS:
            return [f"pixel_format: the camera sends {cam.get_pixel_format_as_string()}, which cannot be "
                    f"converted; set one of: {SUPPORTED_FORMATS}"]
    except UserError as exc:
        return [str(exc)]
    except SourceError as exc:
        return [f"uri: {exc}"]
    finally:
        del cam
    return []


KINDS = (SourceKind("camera", ("aravis",), AravisSettings, AravisCamera,
                    "aravis://<device id | IP address | first>", check=check, parallel_check=True),)
