"""The acoustic classifier's data: labelled 4 s clips with the plant's harmless sounds in them.

Each clip is a machine (the synthetic machines of :mod:`edge_inspector.synthetic.machines`, or,
with ``plant``, a development-kind plant machine of :mod:`training.acoustic.plant` living its
normal life) with at most one fault of the classifier's kinds over the whole clip or a part of
it.  A fault's level is either a broadband SNR of -6..+6 dB or, with ``audible``, an audibility
(:mod:`training.acoustic.audibility`) down to 0 dB, where a person can barely hear it.  With
``nuisances``, a share of clips (faulty or not) also hear one or two harmless plant sounds of
those kinds (:mod:`training.acoustic.nuisances`), at -10..+6 dB against the machine: none of
them is a fault, so they never change a frame's label.  Evaluation machines and held-out
nuisance kinds are never drawn here.

Frame labels: frame ``k`` is the fault's class when its window centre lies in the fault
interval, else ``normal``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt
from tqdm import tqdm

from edge_inspector.features import LogMelParams, logmel
from edge_inspector.synthetic.machines import ENVELOPES, LABELS, TRAIN_ROTATION_HZ, make_clip, make_fault
from training.acoustic.audibility import broadband_snr_db, scale_to_audibility
from training.acoustic.nuisances import add_nuisance
from training.acoustic.plant import DEV_KINDS, SR, NormalLife, PlantMachine

CLIP_S = 4.0


@dataclass
class Dataset:
    mel: np.ndarray  # [N, T, n_mels] raw log-mel
    frame_labels: np.ndarray  # [N, T] int64
    labels: np.ndarray  # [N] clip label index
    snr: np.ndarray  # [N] broadband SNR (nan for normal)
    rotation: np.ndarray  # [N] (nan on plant machines)
    nuisance: np.ndarray  # [N] the nuisance kind heard ("" for none)


def frame_labels_for(label: int, start_s: float, end_s: float, t: int, params: LogMelParams) -> np.ndarray:
    """Frame k is labelled with the fault when its window centre lies in [start, end)."""
    centres = (np.arange(t) * params.hop_length + params.win_length / 2) / params.sample_rate
    out = np.zeros(t, dtype=np.int64)
    if label:
        out[(centres >= start_s) & (centres < end_s)] = label
    return out


def channel_response(rng: np.random.Generator, samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """A random microphone/ADC/resampler response for half the clips: a low-pass (Butterworth,
    order 2-8, 4.5-7.8 kHz: every resampler and anti-alias filter rolls off the top mel bands)
    and, a third of the time, a high-pass at 30-150 Hz."""
    if rng.random() >= 0.5:
        return samples
    x = sosfilt(butter(int(rng.integers(2, 9)), rng.uniform(4500.0, 7800.0), fs=sample_rate, output="sos"), samples)
    if rng.random() < 1 / 3:
        x = sosfilt(butter(2, rng.uniform(30.0, 150.0), btype="highpass", fs=sample_rate, output="sos"), x)
    return x.astype(np.float32)


def _plant_clip(rng: np.random.Generator, label: str, start: float, end: float | None, level: tuple[str, float]
                ) -> tuple[np.ndarray, float, float, float]:
    """A development plant machine's clip with ``label`` over [start, end): (samples, start, end, snr)."""
    kind = str(rng.choice(DEV_KINDS))
    unit = int(rng.integers(1 << 30))
    machine = PlantMachine(kind, unit, take=int(rng.integers(1 << 30)))
    life = NormalLife(kind, int(rng.integers(1 << 30)), stops=label == "normal", unit=unit)
    machine.render(life.next(float(rng.uniform(0.5, 3.0))))  # start somewhere in its life
    audio, phase, freq = machine.render(life.next(CLIP_S), with_phase=True)
    if label == "normal":
        return audio, 0.0, 0.0, float("nan")
    end = CLIP_S if end is None else end
    a, b = int(start * SR), int(end * SR)
    fault = np.zeros(audio.size)
    fault[a:b] = make_fault(rng, label, b - a, SR, max(5.0, float(np.median(freq[a:b]))))
    if level[0] == "audibility":
        fault = scale_to_audibility(fault, audio, level[1])
    else:
        seg = audio[a:b].astype(np.float64)
        fault *= np.sqrt(np.mean(seg**2)) * 10 ** (level[1] / 20) / max(np.sqrt(np.mean(fault[a:b] ** 2)), 1e-12)
    snr = broadband_snr_db(fault, audio)
    return (audio + fault).astype(np.float32), start, end, snr


def make_dataset(
    seed: int,
    n: int,
    params: LogMelParams,
    rotation: tuple[float, float] = TRAIN_ROTATION_HZ,
    snr: tuple[float, float] | None = None,
    partial: float = 0.5,
    labels: tuple[str, ...] = LABELS,
    desc: str = "data",
    envelopes: bool = True,
    nuisances: tuple[str, ...] = (),
    nuisance_rate: float = 0.5,
    plant: float = 0.0,
    audible: float = 0.0,
    audibility_db: tuple[float, float] = (0.0, 12.0),
) -> Dataset:
    """``n`` clips, labels cycling through ``labels`` (module docstring).

    ``partial`` of faults cover a sub-interval; ``envelopes``: 70 % of normal synthetic-machine
    clips start, stop, pause, go silent or change level, half of all clips get a -10..+4 dB gain
    and half a :func:`channel_response`; ``plant``: the share of clips on development plant
    machines; ``audible``: the share of faults set by audibility (``audibility_db``) instead of
    SNR; ``nuisances``: kinds a ``nuisance_rate`` share of clips hear.
    """
    rng = np.random.default_rng(seed)
    t = params.n_frames(int(CLIP_S * params.sample_rate))
    mel = np.zeros((n, t, params.n_mels), dtype=np.float32)
    fl = np.zeros((n, t), dtype=np.int64)
    lab = np.zeros(n, dtype=np.int64)
    snrs = np.full(n, np.nan)
    rots = np.full(n, np.nan)
    heard = np.full(n, "", dtype=object)
    for i in tqdm(range(n), desc=desc, leave=False, mininterval=2.0):
        label = labels[i % len(labels)]
        start, end = 0.0, None
        if label != "normal" and rng.random() < partial:
            start = float(rng.uniform(0.0, CLIP_S - 0.8))
            end = float(min(CLIP_S, start + rng.uniform(0.8, 3.5)))
        level = ("audibility", float(rng.uniform(*audibility_db))) if rng.random() < audible else \
            ("snr", float(rng.uniform(*(snr or (-6.0, 6.0)))))
        if rng.random() < plant:
            samples, f_start, f_end, clip_snr = _plant_clip(rng, label, start, end, level)
        else:
            kind, gain = None, 0.0
            if envelopes:
                if label == "normal" and rng.random() < 0.7:
                    kind = str(rng.choice(ENVELOPES[1:]))
                elif label != "normal" and rng.random() < 0.3:
                    kind = str(rng.choice(["start", "stop", "level"]))
                gain = float(rng.uniform(-10.0, 4.0)) if rng.random() < 0.5 else 0.0
            rot = float(rng.uniform(*rotation))
            if level[0] == "audibility" and label != "normal":
                clip = make_clip(rng, CLIP_S, label="normal", rotation_hz=rot, gain_db=gain)
                samples, f_start, f_end, clip_snr = _with_audible_fault(rng, clip.samples, label, start, end, rot, level[1])
                if kind is not None:
                    samples = samples + _floor(rng, samples.size)
            else:
                clip = make_clip(rng, CLIP_S, label=label, snr_db=None if label == "normal" else level[1],
                                 rotation_hz=rot, fault_start_s=start, fault_end_s=end, envelope_kind=kind, gain_db=gain)
                samples, f_start, f_end = clip.samples, clip.fault_start_s, clip.fault_end_s
                clip_snr = np.nan if clip.snr_db is None else clip.snr_db
            rots[i] = rot
            if envelopes:
                samples = channel_response(rng, samples, params.sample_rate)
        if nuisances and rng.random() < nuisance_rate:
            for _ in range(1 + int(rng.random() < 0.3)):
                kind_n = str(rng.choice(nuisances))
                samples = add_nuisance(rng, samples, kind_n, float(rng.uniform(-10.0, 6.0)))
                heard[i] = kind_n if not heard[i] else f"{heard[i]}+{kind_n}"
        mel[i] = logmel(np.clip(samples, -1.0, 1.0), params)
        lab[i] = LABELS.index(label)
        fl[i] = frame_labels_for(lab[i], f_start, f_end, t, params)
        snrs[i] = clip_snr if label != "normal" else np.nan
    return Dataset(mel, fl, lab, snrs, rots, heard)


def _floor(rng: np.random.Generator, n: int) -> np.ndarray:
    from edge_inspector.synthetic.machines import noise_floor

    return noise_floor(rng, n).astype(np.float32)


def _with_audible_fault(rng: np.random.Generator, background: np.ndarray, label: str, start: float,
                        end: float | None, rotation: float, level_db: float) -> tuple[np.ndarray, float, float, float]:
    end = CLIP_S if end is None else end
    a, b = int(start * SR), int(end * SR)
    fault = np.zeros(background.size)
    fault[a:b] = make_fault(rng, label, b - a, SR, rotation)
    fault = scale_to_audibility(fault, background, level_db)
    return (background + fault).astype(np.float32), start, end, broadband_snr_db(fault, background)
