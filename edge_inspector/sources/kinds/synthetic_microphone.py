"""A machine with faults as a microphone: ``synthetic://machine?seed=3&fault_rate=0.2``.

The demo's microphone: procedural machine sound (``synthetic.machines``) paced in real time.
"""

from __future__ import annotations

import time
from typing import Iterator
from urllib.parse import parse_qsl, urlsplit

from edge_inspector.errors import UserError
from edge_inspector.sources.audio_dsp import Chunker
from edge_inspector.sources.base import BoundedQueue, Chunk, SourceThread, StatusCallback, sleep_until
from edge_inspector.sources.registry import OpenContext, SourceKind
from edge_inspector.sources.settings import MicrophoneSettings


class SyntheticMicrophoneSettings(MicrophoneSettings):
    """A ``synthetic://machine`` microphone: its parameters are in the URI."""


def synthetic_params(uri: str) -> dict[str, float | int]:
    """``synthetic://machine?seed=3&fault_rate=0.2`` -> ``{"seed": 3, "fault_rate": 0.2}``."""
    parts = urlsplit(uri)
    if parts.scheme != "synthetic" or parts.netloc != "machine" or parts.path not in ("", "/"):
        raise UserError(f"unknown synthetic microphone {uri!r}; use synthetic://machine")
    out: dict[str, float | int] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        try:
            if key == "seed":
                out["seed"] = int(value)
            elif key == "fault_rate":
                out["fault_rate"] = float(value)
                if not 0.0 <= out["fault_rate"] <= 1.0:
                    raise ValueError
            else:
                raise UserError(f"microphone URI {uri!r}: unknown option {key!r} (use seed, fault_rate)")
        except ValueError:
            raise UserError(
                f"microphone URI {uri!r}: invalid {key}={value!r} "
                "(seed: integer, fault_rate: number in [0, 1])"
            ) from None
    return out


class SyntheticMicrophone(SourceThread[Chunk]):
    """The synthetic machine (``synthetic.machines.machine_stream``) paced in real time."""

    kind = "microphone"

    def __init__(
        self,
        name: str,
        uri: str,
        queue: BoundedQueue[Chunk],
        on_status: StatusCallback | None = None,
        sample_rate: int = 16000,
        chunk_s: float = 0.1,
        seed: int = 0,
        fault_rate: float = 0.1,
    ) -> None:
        super().__init__(name, uri, queue, on_status, live=True)
        self.sample_rate = int(sample_rate)
        self.chunk_s = chunk_s
        self.seed = seed
        self.fault_rate = fault_rate
        self._offset = 0.0

    def open(self) -> None:
        from edge_inspector.synthetic.machines import machine_stream

        self._blocks = machine_stream(self.seed, self.chunk_s, self.fault_rate, self.sample_rate)

    def read_items(self) -> Iterator[Chunk]:
        chunker = Chunker(self.source_name, self.sample_rate, self.chunk_s)
        start_wall, start_mono = time.time(), time.monotonic()
        base = self._offset  # a reopened stream continues the offsets
        chunker.start_segment(base, start_wall)
        for block in self._blocks:
            for chunk in chunker.push(block):
                end = chunk.offset_s - base + len(chunk.samples) / self.sample_rate
                if sleep_until(start_mono + end, self.stop_event):
                    return
                chunk.mono = start_mono + (chunk.offset_s - base)
                self._offset = chunk.offset_s + len(chunk.samples) / self.sample_rate
                yield chunk


def open_synthetic(s: SyntheticMicrophoneSettings, queue: BoundedQueue[Chunk], on_status: StatusCallback | None,
                   context: OpenContext) -> SyntheticMicrophone:
    return SyntheticMicrophone(s.name, s.uri, queue, on_status, context.sample_rate, s.chunk_s,
                               **synthetic_params(s.uri))  # type: ignore[arg-type]


def check(s: SyntheticMicrophoneSettings, _devices: bool) -> list[str]:
    try:
        synthetic_params(s.uri)
    except UserError as exc:
        return [f"uri: {exc}"]
    return []


KINDS = (SourceKind("microphone", ("synthetic",), SyntheticMicrophoneSettings, open_synthetic, "synthetic://machine",
                    check=check),)
