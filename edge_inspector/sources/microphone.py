"""PortAudio input devices as microphones: ``pulse`` and ``pyaudio:<index|name>``.

The thread delivers :class:`Chunk` objects of ``chunk_s`` seconds of mono float32 audio at the
model's sample rate, as every microphone kind does.  ``offset_s`` counts seconds from stream
start and keeps counting across gaps (so it stays comparable with wall time);
``discontinuity=True`` on the first chunk after any gap (start, device overflow, ring overrun,
reconnect) tells the inspector to reset its streaming state.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator

import numpy as np

from edge_inspector.errors import SourceError, UserError
from edge_inspector.sources.audio_devices import (
    device_spec,
    find_device,
    input_devices,
    new_pyaudio,
    pyaudio_module,
    terminate_pyaudio,
)
from edge_inspector.sources.audio_dsp import AudioRing, Chunker, RingRead, StreamResampler, to_mono
from edge_inspector.sources.base import BoundedQueue, Chunk, SourceThread, StatusCallback
from edge_inspector.sources.registry import OpenContext
from edge_inspector.sources.settings import MicrophoneSettings

log = logging.getLogger(__name__)

MAX_EXTRA_LAG_S = 0.1  # most driver buffering trusted beyond one block (see _callback)

__all__ = ["PyAudioMicrophone"]


class PyAudioMicrophone(SourceThread[Chunk]):
    """A PortAudio input device in callback mode, drained from a ring buffer.

    The callback only timestamps and copies into a preallocated :class:`AudioRing`; this
    thread mixes, resamples and chunks.  A stream error or no callback for ``stall_s``
    raises inside :meth:`read_items`, so the base class reports ``offline`` and reopens
    with backoff — each open starts a new PortAudio session, which is what lets it recover
    after the sound server restarts.
    """

    kind = "microphone"

    def __init__(
        self,
        name: str,
        uri: str,
        queue: BoundedQueue[Chunk],
        on_status: StatusCallback | None = None,
        sample_rate: int = 16000,
        chunk_s: float = 0.1,
        channel: int | None = None,
        device_rate: int | None = None,
        device_channels: int | None = None,
        ring_s: float = 2.0,
        stall_s: float = 2.0,
        start_grace_s: float = 5.0,
        backoff_s: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        super().__init__(name, uri, queue, on_status, live=True, backoff_s=backoff_s)
        self.device = device_spec(uri)
        self.sample_rate = int(sample_rate)
        self.channel = channel
        self.device_rate = device_rate
        self.device_channels = device_channels
        self.ring_s = ring_s
        self.stall_s = stall_s
        self.start_grace_s = start_grace_s
        self.chunker = Chunker(name, sample_rate, chunk_s)
        self.device_info: dict[str, Any] = {}
        self._pa: Any = None
        self._stream: Any = None
        self._ring: AudioRing | None = None
        self._resampler: StreamResampler | None = None
        self._callback_error = ""
        self._pa_flags = (0, 0, 2)  # paInputOverflow, paContinue, paAbort (set in open)
        self._opened_mono = 0.0
        self._has_audio = False  # a stream has delivered audio before (offsets continue)
        self._counted = (0, 0, 0)  # ring events already added to counters.overflows

    # -- PortAudio side ---------------------------------------------------------------------
    def _callback(self, in_data: bytes | None, frame_count: int, time_info: dict[str, float],
                  status_flags: int) -> tuple[None, int]:
        ring = self._ring
        try:
            now = time.time()
            block_s = frame_count / ring.rate
            adc = float(time_info.get("input_buffer_adc_time", 0.0) or 0.0)
            cur = float(time_info.get("current_time", 0.0) or 0.0)
            # The first frame is at least one block old when the callback runs; PulseAudio's
            # ALSA plugin reports the (virtual) source latency, up to seconds, so the lag is
            # bounded by MAX_EXTRA_LAG_S beyond that.  No time info: arrival time.
            lag = cur - adc if adc > 0 and cur > 0 else block_s
            ts = now - min(max(lag, block_s), block_s + MAX_EXTRA_LAG_S)
            frames = np.frombuffer(in_data or b"", dtype=np.float32).reshape(-1, ring.channels)
            ring.write(frames, ts, overflow=bool(status_flags & self._pa_flags[0]))
        except Exception as exc:  # noqa: BLE001 - never raise into PortAudio's thread
            self._callback_error = f"audio callback failed: {exc}"
            return (None, self._pa_flags[2])
        return (None, self._pa_flags[1])

    def open(self) -> None:
        pyaudio = pyaudio_module()
        self._pa_flags = (pyaudio.paInputOverflow, pyaudio.paContinue, pyaudio.paAbort)
        self._callback_error = ""
        try:
            self._pa = new_pyaudio()
        except OSError as exc:
            raise SourceError(f"cannot initialise PortAudio: {exc}") from exc
        try:
            dev = find_device(self.device, input_devices(self._pa))
        except LookupError as exc:
            raise SourceError(str(exc)) from exc
        rate = int(self.device_rate or dev["default_rate"])
        if self.device_channels:
            channels = int(self.device_channels)
        elif self.channel is not None:
            channels = self.channel + 1
        else:
            channels = min(2, dev["channels"])
        if channels > dev["channels"]:
            raise UserError(
                f"microphone {self.source_name}: device {dev['index']}: {dev['name']} has "
                f"{dev['channels']} input channel(s); channel {channels - 1} does not exist"
            )
        self.device_info = {**dev, "rate": rate, "open_channels": channels}
        self._ring = AudioRing(int(self.ring_s * rate), channels, rate)
        self._counted = (0, 0, 0)
        if self._resampler is None or self._resampler.in_rate != rate:
            self._resampler = StreamResampler(rate, self.sample_rate)
        self._resampler.reset()
        try:
            self._stream = self._pa.open(
                format=pyaudio.paFloat32,
                channels=channels,
                rate=rate,
                input=True,
                input_device_index=dev["index"],
                frames_per_buffer=max(64, rate // 50),
                stream_callback=self._callback,
                start=True,
            )
        except (OSError, ValueError) as exc:
            raise SourceError(
                f"cannot open input device {dev['index']}: {dev['name']} at {rate} Hz, "
                f"{channels} ch: {exc}"
            ) from exc
        self._opened_mono = time.monotonic()

    def _count_overflows(self, ring: AudioRing) -> None:
        events = (ring.device_overflows, ring.overrun_events, ring.overruns)
        old = self._counted
        self.counters.overflows += (events[0] - old[0]) + (events[1] - old[1])
        extra = self.counters.extra
        extra["overrun_frames"] = extra.get("overrun_frames", 0.0) + (events[2] - old[2])
        self._counted = events

    def _check_alive(self, ring: AudioRing) -> None:
        if self._callback_error:
            raise SourceError(self._callback_error)
        if self._stream is not None and not self._stream.is_active():
            raise SourceError("audio stream stopped (device lost or sound server gone)")
        now = time.monotonic()
        if ring.writes == 0:
            if now - self._opened_mono > self.start_grace_s:
                raise SourceError(f"no audio from the device {self.start_grace_s:.0f} s after opening it")
        elif now - ring.last_write_mono > self.stall_s:
            raise SourceError(f"no audio from the device for {self.stall_s:.1f} s")

    def _begin_segment(self, read: RingRead) -> None:
        """New contiguous run: offsets continue by the wall-clock length of the gap."""
        offset = 0.0
        if self._has_audio:
            offset = self.chunker.end_offset + max(0.0, read.ts - self.chunker.end_ts)
        self.chunker.start_segment(offset, read.ts)
        assert self._resampler is not None
        self._resampler.reset()
        self._has_audio = True

    def read_items(self) -> Iterator[Chunk]:
        ring, resampler = self._ring, self._resampler
        assert ring is not None and resampler is not None
        first = True
        while not self.stop_event.is_set():
            read = ring.read(0.1)
            self._count_overflows(ring)
            if read is None:
                self._check_alive(ring)
                continue
            if first or read.gap:
                self._begin_segment(read)
                first = False
            mono = to_mono(read.frames, self.channel)
            # output n of this segment is input time n / out_rate: time its first new sample
            out_ts = read.ts + resampler.n_out / self.sample_rate - resampler.n_in / resampler.in_rate
            yield from self.chunker.push(resampler.process(mono), ts=out_ts)
            self._check_alive(ring)

    def release(self) -> None:
        stream, pa = self._stream, self._pa
        self._stream = self._pa = None
        if stream is not None:
            try:
                stream.close()
            except OSError as exc:
                log.debug("closing %s: %s", self.source_name, exc)
        if pa is not None:
            terminate_pyaudio(pa)


def open_device_microphone(s: MicrophoneSettings, queue: BoundedQueue[Chunk], on_status: StatusCallback | None,
                           context: OpenContext) -> PyAudioMicrophone:
    return PyAudioMicrophone(s.name, s.uri, queue, on_status, context.sample_rate, s.chunk_s, s.channel)
