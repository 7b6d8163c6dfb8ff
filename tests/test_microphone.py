"""Microphone sources on real audio paths: a private PulseAudio null sink, WAV files, the
synthetic machine; plus the streaming DSP they are built on."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.io.wavfile
from scipy.signal import resample_poly

from audio_fixtures import PulseServer, pulse_server_fixture, tone, write_wav  # noqa: F401 - fixture
from edge_inspector.errors import UserError
from edge_inspector.features import load_wav
from edge_inspector.sources.audio_dsp import AudioRing, StreamResampler
from edge_inspector.sources.base import BoundedQueue, Chunk
from edge_inspector.config import ConfigError, parse_config
from edge_inspector.sources.audio_devices import list_input_devices
from edge_inspector.sources.microphone import PyAudioMicrophone
from edge_inspector.sources.registry import check_sources, open_source, source_settings


def open_mic(name: str, uri: str, on_status=None, queue_size: int = 2, **keys: object):
    """The microphone's thread and queue as the daemon opens them."""
    return open_source(source_settings("microphone", name=name, uri=uri, queue_size=queue_size, **keys), on_status)


def check_uri(uri: str) -> str | None:
    """What check-config says about a microphone with this URI (None: nothing)."""
    problems = check_sources("microphone", [source_settings("microphone", name="m", uri=uri)])
    return problems[0].removeprefix("microphone[0].uri: ") if problems else None


class Statuses:
    """Records status callbacks and lets a test wait for one."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str]] = []
        self.cond = threading.Condition()

    def __call__(self, source: str, state: str, detail: str) -> None:
        with self.cond:
            self.seen.append((time.monotonic(), state, detail))
            self.cond.notify_all()

    def wait_for(self, state: str, after: float, timeout: float) -> tuple[float, str, str]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for item in self.seen:
                    if item[1] == state and item[0] >= after:
                        return item
                left = deadline - time.monotonic()
                assert left > 0, f"no {state!r} status within {timeout} s: {self.seen}"
                self.cond.wait(left)


def drain(queue: BoundedQueue[Chunk], until: Callable[[list[Chunk]], bool], timeout: float) -> list[Chunk]:
    """Collect chunks until ``until(chunks)`` holds (or fail after ``timeout`` seconds)."""
    chunks: list[Chunk] = []
    deadline = time.monotonic() + timeout
    while not until(chunks):
        assert time.monotonic() < deadline, f"timed out after {len(chunks)} chunks"
        item = queue.get_nowait()
        if item is None:
            time.sleep(0.005)
        else:
            chunks.append(item)
    return chunks


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def spectrum_peak(x: np.ndarray, rate: int) -> tuple[float, np.ndarray, np.ndarray]:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(freqs[int(np.argmax(spec))]), freqs, spec


def band_db(freqs: np.ndarray, spec: np.ndarray, f: float) -> float:
    return 20 * np.log10(spec[np.abs(freqs - f) < 20].max() + 1e-12)


# -- DSP ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (8000, 16000)])
def test_streaming_resampler_equals_one_shot(rates: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(rates[0]).astype(np.float32)
    rs = StreamResampler(*rates)
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        out.append(rs.process(x[i : i + n]))
        i += n
    streamed = np.concatenate(out)
    ref = resample_poly(x.astype(np.float64), rs.up, rs.down)
    assert 0 < len(ref) - len(streamed) < 40  # only the filter's look-ahead is still pending
    np.testing.assert_allclose(streamed, ref[: len(streamed)], atol=1e-5)
    tail = rs.flush()
    np.testing.assert_allclose(np.concatenate([streamed, tail]), ref, atol=1e-5)


def test_ring_overrun_is_counted_and_splits_reads() -> None:
    ring = AudioRing(capacity=100, channels=2, rate=1000)
    block = np.arange(60, dtype=np.float32).repeat(2).reshape(-1, 2)
    ring.write(block, ts=10.0)
    first = ring.read(0.0)
    assert first is not None and len(first.frames) == 60 and not first.gap
    ring.write(block, ts=10.06)
    ring.write(block, ts=10.12)  # 120 unread frames > 100: the 20 oldest are overwritten
    assert ring.overruns == 20 and ring.overrun_events == 1
    after = ring.read(0.0)
    assert after is not None and after.gap and after.lost == 20 and len(after.frames) == 100
    assert after.ts == pytest.approx(10.08)  # timestamps follow the surviving frames
    assert after.frames[0, 0] == 20.0
    assert ring.read(0.0) is None


# -- PulseAudio device ----------------------------------------------------------------------
def start_pulse_mic(statuses: Statuses, queue: BoundedQueue[Chunk], **options: object) -> PyAudioMicrophone:
    mic = PyAudioMicrophone("mic0", "pulse", queue, statuses, device_rate=48000, device_channels=2,
                            **options)
    mic.start()
    drain(queue, lambda c: len(c) >= 1, timeout=10)  # the stream is running
    return mic


@pytest.mark.slow
def test_tone_burst_arrives_on_time_at_16k_mono(pulse_server: PulseServer, tmp_path: Path) -> None:
    """A 1 kHz burst 1.0 s into a 48 kHz stereo clip shows up at the right wall time."""
    silence = np.zeros(int(1.0 * 48000), dtype=np.float32)
    burst = tone(1000, 0.6)
    sig = np.concatenate([silence, burst, np.zeros(int(0.3 * 48000), np.float32)])
    wav = write_wav(tmp_path / "burst.wav", sig, sig)
    statuses, queue = Statuses(), BoundedQueue[Chunk](200, "drop_oldest")
    mic = start_pulse_mic(statuses, queue)
    try:
        player = pulse_server.play(wav)
        requested_at, started_at = player.start_window()
        chunks = drain(queue, lambda c: bool(c) and c[-1].ts > started_at + 2.0, timeout=8)
        assert player.wait(5) == 0 and player.gaps == 0, player.report()
    finally:
        mic.stop()
        mic.join(5)
    assert all(c.sample_rate == 16000 and c.samples.ndim == 1 and len(c.samples) == 1600 for c in chunks)
    loud = [c for c in chunks if rms(c.samples) > 0.1]
    assert 4 <= len(loud) <= 8, [round(rms(c.samples), 3) for c in chunks]
    # the sound began between paplay's spawn and its "stream started" (the same instant on an idle
    # machine): the burst, 1.0 s into the clip, is stamped 1.0 s after that, give or take 0.3 s
    onset = loud[0].ts
    assert requested_at + 0.7 < onset < started_at + 1.3, \
        f"burst at {onset - requested_at:.3f} s after paplay was spawned, {onset - started_at:.3f} s after it started"
    # offsets count samples; they agree with the timestamps (driver latency reports at
    # start-up are bounded by MAX_EXTRA_LAG_S, so ts may settle by up to ~0.1 s)
    first = chunks[0]
    for c in chunks:
        assert c.offset_s - first.offset_s == pytest.approx(c.ts - first.ts, abs=0.15)
    assert not any(c.discontinuity for c in chunks)
    peak, _, _ = spectrum_peak(np.concatenate([c.samples for c in loud[1:-1]]), 16000)
    assert abs(peak - 1000) < 10
    assert mic.counters.overflows == 0


@pytest.mark.slow
def test_48k_stereo_downmix_and_channel_selection(pulse_server: PulseServer, tmp_path: Path) -> None:
    """Left 1 kHz, right 2.5 kHz: downmix has both, ``channel=1`` has only the right one."""
    wav = write_wav(tmp_path / "lr.wav", tone(1000, 1.5, amp=0.4), tone(2500, 1.5, amp=0.4))
    mix_s, right_s = Statuses(), Statuses()
    mix_q, right_q = BoundedQueue[Chunk](200, "drop_oldest"), BoundedQueue[Chunk](200, "drop_oldest")
    mix = start_pulse_mic(mix_s, mix_q)
    right = start_pulse_mic(right_s, right_q, channel=1)
    try:
        player = pulse_server.play(wav)
        _, started_at = player.start_window()
        assert player.wait(10) == 0, player.report()
        got = {}
        for name, q in (("mix", mix_q), ("right", right_q)):
            got[name] = drain(q, lambda c: bool(c) and c[-1].ts > started_at + 1.6, timeout=6)
    finally:
        for m in (mix, right):
            m.stop()
            m.join(5)
    for name, chunks in got.items():
        assert {c.sample_rate for c in chunks} == {16000}
        loud = np.concatenate([c.samples for c in chunks if rms(c.samples) > 0.1])
        assert len(loud) >= 16000, f"{name}: only {len(loud)} loud samples"
        _, freqs, spec = spectrum_peak(loud[:16000], 16000)
        one, two = band_db(freqs, spec, 1000), band_db(freqs, spec, 2500)
        if name == "mix":
            assert abs(one - two) < 1.0  # equal parts of both channels
        else:
            assert two - one > 40  # left channel absent
        assert spectrum_peak(loud[:16000], 16000)[0] in (pytest.approx(1000, abs=2), pytest.approx(2500, abs=2))


@pytest.mark.slow
def test_device_loss_goes_offline_and_recovers(pulse_server: PulseServer) -> None:
    statuses, queue = Statuses(), BoundedQueue[Chunk](100, "drop_oldest")
    mic = start_pulse_mic(statuses, queue, backoff_s=(0.2, 0.5))
    try:
        before = drain(queue, lambda c: len(c) >= 3, timeout=5)
        killed = time.monotonic()
        pulse_server.kill()
        _, _, detail = statuses.wait_for("offline", killed, timeout=4)
        assert detail
        time.sleep(0.5)
        assert mic.is_alive()
        while queue.get_nowait() is not None:
            pass
        restarted = time.monotonic()
        pulse_server.start()
        statuses.wait_for("online", restarted, timeout=8)
        after = drain(queue, lambda c: len(c) >= 2, timeout=8)
    finally:
        mic.stop()
        mic.join(5)
    assert not mic.is_alive()
    assert after[0].discontinuity and not after[1].discontinuity
    assert mic.counters.reconnects >= 1
    gap = after[0].offset_s - (before[-1].offset_s + 0.1)
    assert gap > 0.5  # offsets keep counting wall time across the outage
    assert after[0].offset_s - before[-1].offset_s == pytest.approx(after[0].ts - before[-1].ts, abs=0.05)


@pytest.mark.slow
def test_ring_overrun_marks_discontinuity(pulse_server: PulseServer) -> None:
    """A stalled consumer of a tiny ring: overwritten audio is counted and flagged."""
    statuses, queue = Statuses(), BoundedQueue[Chunk](1, "block")
    mic = start_pulse_mic(statuses, queue, ring_s=0.3)
    try:
        time.sleep(1.0)  # the thread is blocked on the full queue; the ring overflows
        chunks = drain(queue, lambda c: len(c) >= 6, timeout=5)
    finally:
        mic.stop()
        mic.join(5)
    assert mic.counters.overflows >= 1
    assert mic.counters.extra["overrun_frames"] > 0.2 * 48000
    flagged = [c for c in chunks[1:] if c.discontinuity]
    assert flagged, "no discontinuity after the overrun"
    i = chunks.index(flagged[0])
    assert chunks[i].offset_s - chunks[i - 1].offset_s > 0.5


def test_unknown_device_lists_available_ones(pulse_server: PulseServer) -> None:
    names = [d["name"] for d in list_input_devices()]
    assert "pulse" in names
    msg = check_uri("pyaudio:nonexistent")
    assert msg is not None and "nonexistent" in msg and "pulse" in msg
    assert check_uri("pulse") is None
    assert check_uri("pyaudio:pulse") is None
    index = next(d["index"] for d in list_input_devices() if d["name"] == "pulse")
    assert check_uri(f"pyaudio:{index}") is None
    statuses, queue = Statuses(), BoundedQueue[Chunk](4, "drop_oldest")
    mic = PyAudioMicrophone("mic9", "pyaudio:nonexistent", queue, statuses, backoff_s=(5.0, 5.0))
    mic.start()
    deadline = time.monotonic() + 5
    while not mic.counters.last_error and time.monotonic() < deadline:
        time.sleep(0.02)
    mic.stop()
    mic.join(5)
    detail = mic.counters.last_error
    assert "nonexistent" in detail and "pulse" in detail
    assert mic.counters.errors >= 1 and mic.fatal_error is None  # a live source keeps retrying


# -- files, synthetic, URIs -----------------------------------------------------------------
def test_file_source_delivers_every_sample(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data = (rng.standard_normal((44100 + 777, 2)) * 4000).astype(np.int16)
    path = tmp_path / "clip.wav"
    scipy.io.wavfile.write(path, 44100, data)
    expected, rate, channels = load_wav(path, 16000)
    statuses = Statuses()
    mic, queue = open_mic("wav0", f"file://{path}", statuses, realtime=False)
    assert queue.policy == "block" and queue.maxsize == 2
    mic.start()
    chunks = drain(queue, lambda c: queue.exhausted, timeout=10)
    mic.join(5)
    assert mic.fatal_error is None and (rate, channels) == (44100, 2)
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), expected)
    np.testing.assert_allclose([c.offset_s for c in chunks], np.arange(len(chunks)) * 0.1, atol=1e-9)
    assert [c.discontinuity for c in chunks] == [True] + [False] * (len(chunks) - 1)
    assert [s for _, s, _ in statuses.seen] == ["online", "ended"]


def test_file_source_loops_and_paces(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    scipy.io.wavfile.write(path, 16000, (tone(440, 0.25, rate=16000) * 32767).astype(np.int16))
    mic, queue = open_mic("wav1", f"file://{path}", queue_size=100, realtime=True, loop=True)
    t0 = time.monotonic()
    mic.start()
    chunks = drain(queue, lambda c: len(c) >= 7, timeout=5)
    elapsed = time.monotonic() - t0
    mic.stop()
    mic.join(5)
    # 0.25 s clip in 0.1 s chunks: 0.1, 0.1, 0.05, then the loop restarts
    assert [len(c.samples) for c in chunks[:4]] == [1600, 1600, 800, 1600]
    assert [c.discontinuity for c in chunks[:7]] == [True, False, False, True, False, False, True]
    np.testing.assert_allclose([c.offset_s for c in chunks[:7]], [0, 0.1, 0.2, 0.25, 0.35, 0.45, 0.5], atol=1e-9)
    assert 0.5 <= elapsed < 1.5  # real-time pacing: 0.55 s of audio


def test_missing_file_fails_with_clear_error(tmp_path: Path) -> None:
    mic, _queue = open_mic("wav2", f"file://{tmp_path}/nope.wav", realtime=False)
    mic.start()
    mic.join(5)
    assert mic.fatal_error is not None and "nope.wav" in mic.fatal_error and "not found" in mic.fatal_error
    assert check_uri(f"file://{tmp_path}/nope.wav") == f"file not found: {tmp_path}/nope.wav"


def test_synthetic_machine_real_time() -> None:
    mic, queue = open_mic("syn", "synthetic://machine?seed=3&fault_rate=0.2", queue_size=100)
    assert queue.policy == "drop_oldest"
    t0 = time.monotonic()
    mic.start()
    chunks = drain(queue, lambda c: len(c) >= 10, timeout=5)
    elapsed = time.monotonic() - t0
    mic.stop()
    mic.join(5)
    assert 0.9 <= elapsed < 1.4  # ten 0.1 s chunks take a second
    assert all(len(c.samples) == 1600 and c.sample_rate == 16000 for c in chunks)
    np.testing.assert_allclose([c.offset_s for c in chunks], np.arange(10) * 0.1, atol=1e-9)
    assert np.diff([c.ts for c in chunks]) == pytest.approx(0.1, abs=1e-6)
    assert all(0.0 < rms(c.samples) < 1.0 for c in chunks)


def test_uri_errors_are_user_errors() -> None:
    with pytest.raises(ConfigError, match="microphone\\[0\\].uri: unknown microphone URI scheme 'rtsp'"):
        parse_config({"microphone": [{"name": "m", "uri": "rtsp://x"}]})
    with pytest.raises(UserError, match="synthetic://machine"):
        open_mic("m", "synthetic://fan")
    with pytest.raises(UserError, match="fault_rate"):
        open_mic("m", "synthetic://machine?fault_rate=2")
    with pytest.raises(UserError, match="absolute"):
        open_mic("m", "file://clip.wav")
    assert "absolute path" in (check_uri("file://clip.wav") or "")
    assert "fault_rate" in (check_uri("synthetic://machine?fault_rate=2") or "")
    assert check_uri("synthetic://machine?bogus=1") is not None
    assert check_uri("pyaudio:") is not None
