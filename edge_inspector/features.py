"""Log-mel features: the ONE implementation used by training, the daemon and ``inspect``.

Parameters (defaults, pinned per model in ``engines/manifest.toml``): sample rate 16 kHz,
n_fft 512, win_length 400 (25 ms periodic Hann, zero-padded to n_fft), hop 160 (10 ms),
64 triangular mel bands (HTK mel scale) from 20 Hz to 8 kHz, power spectrum,
``log(mel_power + 1e-6)``.  There is no centre padding: frame ``k`` covers samples
``[k * hop, k * hop + win_length)``, so a clip of ``n`` samples gives
``max(0, 1 + (n - win_length) // hop)`` frames and features can be computed incrementally
(:class:`LogMelStream`) with results identical to the whole-clip computation.

Why numpy only: the same code must run on a Jetson with nothing but the runtime
dependencies, and sharing it with training rules out train/serve feature skew.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io.wavfile
from scipy.signal import resample_poly

from edge_inspector.errors import InputError
from edge_inspector.model_entries import LogMelInput

LOG_EPS = 1e-6
_CONTRACT = LogMelInput()  # the manifest's defaults: the features' defaults are the same numbers, kept once


@dataclass(frozen=True)
class LogMelParams:
    """Feature parameters; :meth:`from_model` reads them from a manifest ``AcousticModel``."""

    sample_rate: int = _CONTRACT.sample_rate
    n_fft: int = _CONTRACT.n_fft
    win_length: int = _CONTRACT.win_length
    hop_length: int = _CONTRACT.hop_length
    n_mels: int = _CONTRACT.n_mels
    fmin: float = _CONTRACT.fmin
    fmax: float = _CONTRACT.fmax

    @classmethod
    def from_model(cls, model: Any) -> LogMelParams:
        """The same-named fields of the manifest's model: one source of truth for the features."""
        return cls(**{f.name: getattr(model, f.name) for f in fields(cls)})

    def n_frames(self, n_samples: int) -> int:
        return max(0, 1 + (n_samples - self.win_length) // self.hop_length)


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def _tables(params: LogMelParams) -> tuple[np.ndarray, np.ndarray]:
    """(window [win_length], mel filterbank [n_fft//2+1, n_mels]) as float64, cached."""
    if params.win_length > params.n_fft:
        raise ValueError(f"win_length {params.win_length} > n_fft {params.n_fft}")
    n = np.arange(params.win_length)
    window = 0.5 - 0.5 * np.cos(2 * math.pi * n / params.win_length)
    bins = np.fft.rfftfreq(params.n_fft, 1.0 / params.sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(params.fmin), _hz_to_mel(params.fmax), params.n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(rising, falling))  # [n_mels, n_bins]
    return window, np.ascontiguousarray(fb.T)


def mel_power(samples: np.ndarray, params: LogMelParams | None = None) -> np.ndarray:
    """Mel-band power per frame ``[T, n_mels]`` float64 (before the log) of mono ``samples``."""
    params = params or LogMelParams()
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    t = params.n_frames(x.size)
    if t == 0:
        return np.zeros((0, params.n_mels), dtype=np.float64)
    window, fb = _tables(params)
    frames = np.lib.stride_tricks.sliding_window_view(x, params.win_length)[:: params.hop_length][:t]
    spec = np.fft.rfft(frames * window, n=params.n_fft, axis=-1)
    power = spec.real**2 + spec.imag**2
    # Row-by-row products keep every frame's arithmetic independent of how many frames are
    # computed together, so streaming and whole-clip features are bit-identical.
    return np.einsum("tf,fm->tm", power, fb, optimize=False)


def logmel(samples: np.ndarray, params: LogMelParams | None = None) -> np.ndarray:
    """Log-mel frames ``[T, n_mels]`` float32 of mono ``samples`` (see the module docstring)."""
    return np.log(mel_power(samples, params) + LOG_EPS).astype(np.float32)


class LogMelStream:
    """Incremental :func:`logmel`: ``push`` returns only the new frames and keeps the leftover
    samples, so concatenating all outputs equals ``logmel`` of the whole signal exactly."""

    def __init__(self, params: LogMelParams | None = None) -> None:
        self.params = params or LogMelParams()
        self._buf = np.zeros(0, dtype=np.float64)
        self.frames_out = 0

    def reset(self) -> None:
        """Forget buffered samples (the next push starts a new, unrelated signal)."""
        self._buf = np.zeros(0, dtype=np.float64)
        self.frames_out = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float32).reshape(-1).astype(np.float64)
        buf = np.concatenate([self._buf, x]) if self._buf.size else x
        t = self.params.n_frames(buf.size)
        out = logmel(buf, self.params) if t else np.zeros((0, self.params.n_mels), np.float32)
        self._buf = buf[t * self.params.hop_length :].copy()
        self.frames_out += t
        return out


def wav_truncation(path: str | Path) -> str | None:
    """Why a WAV file is cut short (its data chunk declares more bytes than the file holds), or None.

    scipy reads such a file up to where it ends with only a warning, so an incomplete copy of a
    recording would be judged as if it were the whole clip.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
                return None  # not a WAV at all: load_wav names that
            size = os.fstat(fh.fileno()).st_size
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                chunk = fh.read(8)
                declared = int.from_bytes(chunk[4:8], "little")
                if chunk[:4] == b"data":
                    if head[:4] == b"RF64" or declared == 0xFFFFFFFF:
                        return None  # 64-bit sizes live in the ds64 chunk; scipy checks those
                    have = size - pos - 8
                    if have < declared:
                        return f"truncated WAV: the header declares {declared} bytes of audio, the file holds {have}"
                    return None
                pos += 8 + declared + (declared & 1)
            return "truncated WAV: no complete data chunk"
    except OSError:
        return None  # unreadable: load_wav names that


def load_wav(path: str | Path, target_rate: int = 16000) -> tuple[np.ndarray, int, int]:
    """Read a WAV as float32 mono at ``target_rate``: ``(samples, original_rate, channels)``.

    Accepts 16/24/32-bit integer PCM and 32/64-bit float at any rate; channels are averaged
    and the rate converted with a polyphase resampler.  Problems raise :class:`InputError`
    naming the file (missing, not a WAV, empty, 8-bit).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: file not found")
    try:
        rate, data = scipy.io.wavfile.read(p)
    except (ValueError, EOFError, OSError) as exc:
        raise InputError(f"{p}: not a readable WAV file ({exc})") from exc
    if data.dtype == np.uint8:
        raise InputError(f"{p}: 8-bit WAV is not supported; use 16/24/32-bit PCM or float")
    if data.dtype == np.int16:
        audio = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:  # 32-bit, and 24-bit which scipy left-justifies into int32
        audio = (data.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif data.dtype in (np.float32, np.float64):
        audio = data.astype(np.float32)
    else:
        raise InputError(f"{p}: unsupported WAV sample type {data.dtype}")
    channels = 1 if audio.ndim == 1 else int(audio.shape[1])
    if audio.ndim == 2:
        audio = audio.mean(axis=1, dtype=np.float32)
    if audio.size == 0:
        raise InputError(f"{p}: WAV file contains no samples")
    if rate <= 0:
        raise InputError(f"{p}: invalid sample rate {rate}")
    if rate != target_rate:
        g = math.gcd(int(rate), int(target_rate))
        audio = resample_poly(audio.astype(np.float64), target_rate // g, rate // g).astype(np.float32)
    return np.clip(audio, -1.0, 1.0), int(rate), channels
