"""WAV files as microphones: ``file:///abs/clip.wav``.

Any common rate is resampled to the model's and stereo is downmixed.  Like a video file, a WAV
is not live: its queue blocks so nothing is skipped; it is paced like a live microphone
(``realtime``) or read as fast as it is inspected, optionally looped, and its chunks carry the
capture times ``record`` wrote beside it.
"""

from __future__ import annotations

import logging
import time
from typing import Iterator
from urllib.parse import urlsplit

import numpy as np

from edge_inspector.errors import UserError
from edge_inspector.sources.audio_dsp import Chunker
from edge_inspector.sources.base import BoundedQueue, Chunk, SourceThread, StatusCallback, sleep_until
from edge_inspector.sources.registry import OpenContext, SourceKind
from edge_inspector.sources.settings import FilePlayback, MicrophoneSettings, check_file
from edge_inspector.sources.settings import file_path as settings_file_path

log = logging.getLogger(__name__)


class AudioFileSettings(FilePlayback, MicrophoneSettings):
    """A ``file://`` microphone."""


def wav_path(uri: str) -> str:
    """``file:///abs/clip.wav`` -> ``/abs/clip.wav`` (the config's decoding; must be absolute)."""
    path = settings_file_path(uri)
    if urlsplit(uri).scheme != "file" or not path.is_absolute():
        raise UserError(f"microphone URI {uri!r}: use file:///absolute/path/clip.wav")
    return str(path)


def recorded_start(wav_path: str) -> float | None:
    """Capture time of the first sample from ``<stem>.chunks.csv`` written by ``record``, or None.

    A replayed recording keeps its original capture times, so its events carry the ``ts`` of
    the day it was recorded (format ``sample,ts,mono,discontinuity``; see
    ``sources/recording_files.py``).
    """
    stem = wav_path[:-4] if wav_path.lower().endswith(".wav") else wav_path
    try:
        with open(stem + ".chunks.csv", encoding="ascii") as fh:
            header, first = fh.readline(), fh.readline().split(",")
        return float(first[1]) if header.startswith("sample,ts,") else None
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        return None


class FileMicrophone(SourceThread[Chunk]):
    """A WAV file as a microphone: paced like a live one (``realtime``) or as fast as the
    (blocking) queue accepts, optionally looped; ``ts`` is the recorded start
    (:func:`recorded_start`) or else the replay start, plus ``offset_s``."""

    kind = "microphone"

    def __init__(
        self,
        name: str,
        uri: str,
        queue: BoundedQueue[Chunk],
        on_status: StatusCallback | None = None,
        sample_rate: int = 16000,
        chunk_s: float = 0.1,
        realtime: bool = True,
        loop: bool = False,
    ) -> None:
        super().__init__(name, uri, queue, on_status, live=False)
        self.path = wav_path(uri)
        self.sample_rate = int(sample_rate)
        self.realtime = realtime
        self.loop = loop
        self.chunk_s = chunk_s
        self.samples = np.zeros(0, dtype=np.float32)
        self.original_rate = 0
        self.channels = 0

    def open(self) -> None:
        from edge_inspector.features import load_wav

        self.samples, self.original_rate, self.channels = load_wav(self.path, self.sample_rate)

    def read_items(self) -> Iterator[Chunk]:
        chunker = Chunker(self.source_name, self.sample_rate, self.chunk_s)
        start_wall, start_mono = recorded_start(self.path) or time.time(), time.monotonic()
        offset = 0.0
        while not self.stop_event.is_set():
            chunker.start_segment(offset, start_wall + offset)
            for chunk in chunker.push(self.samples, final=True):
                if self.realtime:
                    end = chunk.offset_s + len(chunk.samples) / self.sample_rate
                    if sleep_until(start_mono + end, self.stop_event):
                        return
                chunk.mono = start_mono + chunk.offset_s
                yield chunk
            offset = chunker.end_offset
            if not self.loop:
                return


def open_audio_file(s: AudioFileSettings, queue: BoundedQueue[Chunk], on_status: StatusCallback | None,
                    context: OpenContext) -> FileMicrophone:
    if s.channel is not None:
        log.warning("microphone %s: WAV files are downmixed; channel=%d is ignored", s.name, s.channel)
    return FileMicrophone(s.name, s.uri, queue, on_status, context.sample_rate, s.chunk_s, s.realtime, s.loop)


def check(s: AudioFileSettings, _devices: bool) -> list[str]:
    problem = check_file(s.uri, {".wav"}, "a WAV")
    return [f"uri: {problem}"] if problem else []


KINDS = (SourceKind("microphone", ("file",), AudioFileSettings, open_audio_file, "file:///abs/clip.wav",
                    check=check, live=False),)
