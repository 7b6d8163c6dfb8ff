"""The acoustic classifier's evaluation sets, all from seeds and kinds never used in training.

- :func:`nuisance_set`: healthy clips each hearing one *held-out* nuisance kind (never in
  training; the first held-out set or the fresh one), and faults at -6..+6 dB SNR, half of
  them with those nuisances too;
- :func:`audibility_set`: faults at 0, 3, 6 and 10 dB audibility (barely audible upwards);
- :func:`plant_set`: healthy clips and the classifier's own faults on the evaluation plant
  machines (fan, pump, compressor, gearbox): kinds of machine it never heard;
- :func:`clip_set`: the original steady-machine sets (train and held-out rotation ranges).

Each returns log-mel clips with their clip labels and what was done to them, for
:func:`score_clips`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_inspector.features import LogMelParams, logmel
from edge_inspector.inspectors import acoustic_model as am
from edge_inspector.synthetic.machines import LABELS
from training.acoustic.data import CLIP_S, make_dataset
from training.acoustic.faults import make_plant_fault
from training.acoustic.machine_sets import normal_stream
from training.acoustic.nuisances import HELDOUT_KINDS
from training.acoustic.plant import EVAL_KINDS, SR, NormalLife, PlantMachine


@dataclass
class ClipSet:
    mel: np.ndarray  # [N, T, n_mels]
    labels: np.ndarray  # [N] index into LABELS
    tag: np.ndarray  # [N] what varies (nuisance kind, level, machine kind)
    level: np.ndarray  # [N] SNR or audibility in dB (nan for healthy clips)


def clip_set(seed: int, per_class: int, rotation: tuple[float, float], snr: tuple[float, float]) -> ClipSet:
    """Whole-clip faults (4 s) on steady synthetic machines, ``per_class`` clips of every label."""
    d = make_dataset(seed, per_class * len(LABELS), LogMelParams(), rotation=rotation, snr=snr, partial=0.0,
                     desc="eval data", envelopes=False)
    return ClipSet(d.mel, d.labels, np.full(len(d.labels), ""), d.snr)


def nuisance_set(seed: int, per_kind: int, faults: int, kinds: tuple[str, ...] = HELDOUT_KINDS) -> ClipSet:
    """Healthy clips with one held-out nuisance each (``per_kind`` per kind of ``kinds``) and ``faults``
    fault clips at -6..+6 dB SNR, half of them with those nuisances (module docstring)."""
    parts = []
    for i, kind in enumerate(kinds):
        d = make_dataset(seed + 100 * i, per_kind, LogMelParams(), labels=("normal",), desc=f"held-out {kind}",
                         nuisances=(kind,), nuisance_rate=1.0, plant=0.3)
        parts.append(ClipSet(d.mel, d.labels, np.full(per_kind, kind), d.snr))
    d = make_dataset(seed + 999, faults, LogMelParams(), labels=LABELS[1:], desc="faults with held-out nuisances",
                     nuisances=kinds, nuisance_rate=0.5, plant=0.3, snr=(-6.0, 6.0))
    parts.append(ClipSet(d.mel, d.labels, np.array([str(x) for x in d.nuisance]), d.snr))
    return ClipSet(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("mel", "labels", "tag", "level")))


def audibility_set(seed: int, per_level: int, levels: tuple[float, ...] = (0.0, 3.0, 6.0, 10.0)) -> ClipSet:
    """Faults at each audibility (``per_level`` clips, labels cycling) and as many healthy clips."""
    parts = []
    for j, lv in enumerate(levels):
        d = make_dataset(seed + j, per_level, LogMelParams(), labels=LABELS[1:], desc=f"{lv:g} dB audible",
                         audible=1.0, audibility_db=(lv, lv), plant=0.3, partial=0.0)
        parts.append(ClipSet(d.mel, d.labels, np.full(per_level, f"{lv:g} dB"), np.full(per_level, lv)))
    d = make_dataset(seed + 50, per_level, LogMelParams(), labels=("normal",), desc="healthy", plant=0.3)
    parts.append(ClipSet(d.mel, d.labels, np.full(per_level, ""), d.snr))
    return ClipSet(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("mel", "labels", "tag", "level")))


def plant_set(seed: int, per_kind: int) -> ClipSet:
    """Per evaluation plant machine: ``per_kind`` healthy clips from its normal life and as many
    clips with one of the classifier's faults at -6..+6 dB SNR."""
    rng = np.random.default_rng(seed)
    mel, labels, tag, level = [], [], [], []
    n = int(CLIP_S * SR)
    for kind in EVAL_KINDS:
        unit = int(rng.integers(1 << 20))
        stream = np.concatenate(list(normal_stream(kind, unit, per_kind * 8.0, take=7)))
        for i in range(per_kind):
            mel.append(logmel(stream[i * 2 * n : i * 2 * n + n]))
            labels.append(0), tag.append(kind), level.append(np.nan)
        machine = PlantMachine(kind, unit, take=8)
        life = NormalLife(kind, unit * 1000 + 8, stops=False, unit=unit)
        for i in range(per_kind):
            label = LABELS[1 + i % 3]
            audio, phase, freq = machine.render(life.next(CLIP_S), with_phase=True)
            fault = make_plant_fault(rng, label, phase, freq)
            snr = float(rng.uniform(-6, 6))
            fault *= np.sqrt(np.mean(audio.astype(np.float64) ** 2)) * 10 ** (snr / 20) / np.sqrt(np.mean(fault**2))
            mel.append(logmel(audio + fault))
            labels.append(LABELS.index(label)), tag.append(kind), level.append(snr)
    return ClipSet(np.stack(mel), np.array(labels), np.array(tag), np.array(level))


def score_clips(engine: Any, model: Any, clips: ClipSet, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``(clip scores, predicted label index)`` through the runtime's clip rule."""
    scores, pred = [], []
    for a in range(0, len(clips.mel), batch):
        probs = am.run_frames(engine, model, am.normalise(clips.mel[a : a + batch], model))[0]
        for p in probs:
            s, lab = am.clip_score(p, model)
            scores.append(s)
            pred.append(LABELS.index(lab))
    return np.array(scores), np.array(pred)

