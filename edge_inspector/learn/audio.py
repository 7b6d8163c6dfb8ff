"""The good audio ``learn acoustic`` is given: WAV files and ``record`` directories, checked.

Every source becomes one or more *segments* of contiguous mono audio at the model's rate: a WAV
file is one segment; a recording's microphone WAV is cut at the discontinuities its
``.chunks.csv`` lists (a dropped chunk, a reconnect), so no context of the model spans a gap.
Learning must not start on bad data, so each problem is one line naming the file: missing,
not a WAV, 8-bit, truncated (the header promises more than the file holds), entirely digital
silence, a sample rate other than the other sources' (one model is one microphone chain:
resample first), or, over everything, less audio than the model needs.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_inspector.errors import InputError, UserError
from edge_inspector.features import load_wav
from edge_inspector.manifest import sha256_of

SILENCE_PEAK = 10 ** (-100 / 20)  # below -100 dBFS throughout: a dead input, not a quiet machine


@dataclass
class Segment:
    samples: np.ndarray  # float32 mono at the model rate
    source: str  # the file it came from


@dataclass
class GoodAudio:
    """Everything given to learn, in order."""

    segments: list[Segment] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # as given on the command line
    files: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)  # sha256 of each file read
    rate: int | None = None  # the files' own sample rate (all the same)

    @property
    def seconds(self) -> float:
        return sum(s.samples.size for s in self.segments) / 16000.0

    def sha256(self) -> str:
        """Digest of the files' digests in order: the same data gives the same value."""
        return hashlib.sha256("".join(self.digests).encode()).hexdigest()


def _read_wav(path: Path, target_rate: int, repair: bool) -> tuple[np.ndarray, int]:
    from edge_inspector.sources.recording_files import WavCheck

    check = WavCheck(path) if path.is_file() else None
    if check is not None and check.data_offset and check.truncated:
        if not repair:
            have = check.available / max(1, check.block_align) / max(1, check.rate)
            want = check.declared / max(1, check.block_align) / max(1, check.rate)
            raise InputError(f"{path}: truncated WAV: its header promises {want:.1f} s, the file holds {have:.1f} s")
    if check is not None and repair and (check.truncated or check.stale):
        with tempfile.TemporaryDirectory(prefix="edge-learn-") as tmp:  # a hard-stopped recording
            samples, rate, _ = load_wav(check.repaired_copy(Path(tmp)), target_rate)
    else:
        samples, rate, _ = load_wav(path, target_rate)
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise InputError(f"{path}: only digital silence ({samples.size / target_rate:.1f} s): a microphone "
                         "that records nothing; learn needs the machine's sound")
    return samples, rate


def _recording_wavs(directory: Path, microphone: str | None) -> list[Path]:
    wavs = sorted(p for p in directory.glob("*.wav") if (directory / f"{p.stem}.chunks.csv").is_file())
    if not wavs:
        raise InputError(f"{directory}: not a recording with a microphone (no <name>.wav with <name>.chunks.csv)")
    if microphone is not None:
        chosen = [p for p in wavs if p.stem == microphone]
        if not chosen:
            raise InputError(f"{directory}: no microphone {microphone!r} (it has {', '.join(p.stem for p in wavs)})")
        return chosen
    if len(wavs) > 1:
        raise UserError(f"{directory}: {len(wavs)} microphones ({', '.join(p.stem for p in wavs)}); "
                        "say which one with --microphone NAME (one model per machine)")
    return wavs


def _cut_at_gaps(samples: np.ndarray, sidecar: Path) -> list[np.ndarray]:
    from edge_inspector.sources.recording_files import AUDIO_HEADER, read_sidecar

    cuts = sorted({int(r[0]) for r in read_sidecar(sidecar, AUDIO_HEADER)
                   if len(r) >= 4 and r[3].strip() in ("1", "true", "True") and r[0].strip().isdigit()})
    edges = [0] + [c for c in cuts if 0 < c < samples.size] + [samples.size]
    return [samples[a:b] for a, b in zip(edges[:-1], edges[1:]) if b > a]


def read_good_audio(sources: list[Path], target_rate: int = 16000, microphone: str | None = None) -> GoodAudio:
    """Read every source (WAV file or recording directory) into checked segments."""
    audio = GoodAudio()
    first: Path | None = None
    for source in sources:
        source = Path(source)
        audio.sources.append(str(source))
        if source.is_dir():
            files = [(p, True) for p in _recording_wavs(source, microphone)]
        elif source.exists():
            files = [(source, False)]
        else:
            raise InputError(f"{source}: no such file or directory")
        for path, in_recording in files:
            samples, rate = _read_wav(path, target_rate, repair=in_recording)
            if audio.rate is None:
                audio.rate, first = rate, path
            elif rate != audio.rate:
                raise InputError(f"{path}: {rate} Hz, but {first} is {audio.rate} Hz: learn from recordings of one "
                                 "microphone chain at one rate (resample the odd file first)")
            pieces = _cut_at_gaps(samples, path.with_suffix(".chunks.csv")) if in_recording else [samples]
            audio.segments += [Segment(p, str(path)) for p in pieces]
            audio.files.append(str(path))
            audio.digests.append(sha256_of(path))
    return audio
