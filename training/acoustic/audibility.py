"""How audible a fault is, measured: the one scale every acoustic data set, test and card uses.

A broadband SNR (fault RMS over background RMS) says little about hearing: a squeal tone 20 dB
below a fan's roar in RMS is plainly audible, because the ear (like a mel filterbank) compares
sounds band by band, and a knock once a second is audible although its average power is tiny.
So the *audibility* of a fault is

    max over mel bands b and 100 ms windows w of  10·log10( P_fault(b, w) / median_w P_background(b, w) )

with the daemon's own 64-band mel filterbank (:mod:`edge_inspector.features`): how far the fault
rises above the background, in its loudest band at its loudest moment.  0 dB means "as loud as
the background in one band for a tenth of a second": a listener who knows what to listen for
can just hear it; that is what "barely audible" means in the cards.  The background's median
over time keeps a momentary dip (a valve closing) from making a fault look louder than it is.

Scaling a fault by ``g`` moves its audibility by ``20·log10(g)`` exactly, so
:func:`scale_to_audibility` sets any level in one step.  A fault fading in becomes *audible* at
the first window whose audibility reaches 0 dB (:func:`audible_from`): onset delays in the
card are measured from there.
"""

from __future__ import annotations

import numpy as np

from edge_inspector.features import LogMelParams, mel_power

WINDOW_FRAMES = 10  # 100 ms of 10 ms frames
_PARAMS = LogMelParams()


def band_power(x: np.ndarray, params: LogMelParams = _PARAMS) -> np.ndarray:
    """Mel-band power per frame ``[T, n_mels]`` (linear, no log): the filterbank of the features."""
    return mel_power(x, params)


def _windows(power: np.ndarray) -> np.ndarray:
    """Mean power over consecutive 100 ms windows ``[W, n_mels]``."""
    w = max(1, power.shape[0] // WINDOW_FRAMES)
    return power[: w * WINDOW_FRAMES].reshape(w, -1, power.shape[1]).mean(axis=1) if power.shape[0] >= WINDOW_FRAMES \
        else power.mean(axis=0, keepdims=True)


def window_audibility(fault: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Audibility (dB) of each 100 ms window of ``fault`` over ``background`` (same length)."""
    pf = _windows(band_power(fault))
    pb = np.median(_windows(band_power(background)), axis=0) + 1e-12
    return 10.0 * np.log10(np.max(pf / pb, axis=1) + 1e-20)


def audibility_db(fault: np.ndarray, background: np.ndarray) -> float:
    """The audibility of ``fault`` against ``background`` in dB (module docstring)."""
    return float(np.max(window_audibility(fault, background)))


def scale_to_audibility(fault: np.ndarray, background: np.ndarray, target_db: float) -> np.ndarray:
    """``fault`` scaled so that its audibility over ``background`` is ``target_db``."""
    now = audibility_db(fault, background)
    if not np.isfinite(now):
        return np.zeros_like(fault)
    return (fault * 10.0 ** ((target_db - now) / 20.0)).astype(fault.dtype)


def audible_from(fault: np.ndarray, background: np.ndarray, sample_rate: int = 16000) -> float | None:
    """Seconds from the start until the fault first reaches 0 dB audibility (None: never)."""
    aud = window_audibility(fault, background)
    hits = np.nonzero(aud >= 0.0)[0]
    if hits.size == 0:
        return None
    return float((hits[0] * WINDOW_FRAMES * _PARAMS.hop_length) / sample_rate)


def broadband_snr_db(fault: np.ndarray, background: np.ndarray) -> float:
    """Fault RMS over background RMS in dB, over the fault's extent (the classic SNR)."""
    on = np.abs(fault) > 0
    if not on.any():
        return float("-inf")
    idx = np.nonzero(on)[0]
    a, b = idx[0], idx[-1] + 1
    pf = float(np.mean(np.square(fault[a:b], dtype=np.float64)))
    pb = float(np.mean(np.square(background[a:b], dtype=np.float64))) + 1e-20
    return 10.0 * np.log10(pf / pb + 1e-30)
