"""Write the sample files of ``examples/`` with the project's own synthetic generators.

``examples/part.png`` is a brushed-metal part with a scratch (256x256, as the camera model sees
it); ``examples/machine.wav`` is 1.5 s of a running machine with a bearing fault from 0.3 s to
1.3 s (16 kHz, 16-bit mono).  They are what ``edge-inspector inspect`` is first tried on, so they
are small and always the same: fixed seeds, and this script rewrites them byte for byte.

    python tools/make_examples.py [--out examples]
"""

from __future__ import annotations

import argparse
import wave
from pathlib import Path

import cv2
import numpy as np

from edge_inspector.synthetic.machines import make_clip
from edge_inspector.synthetic.surfaces import Sample, make_surface

PART = {"seed": 0, "family": "metal", "label": "scratch"}
MACHINE = {"seed": 1, "label": "bearing", "duration_s": 1.5, "fault_start_s": 0.3, "fault_end_s": 1.3}


def part_sample() -> Sample:
    """The part, with its ground truth (the defect's box in ``bbox``)."""
    return make_surface(np.random.default_rng(PART["seed"]), family=PART["family"], label=PART["label"])


def write_part(path: Path) -> list[int] | None:
    """The part image; returns the defect's true box [x, y, w, h]."""
    sample = part_sample()
    if not cv2.imwrite(str(path), sample.image, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"{path}: could not write the PNG")
    return sample.bbox


def write_machine(path: Path) -> tuple[float, float]:
    """The machine recording; returns the fault's interval in seconds."""
    spec = dict(MACHINE)
    clip = make_clip(np.random.default_rng(spec.pop("seed")), **spec)
    pcm = np.round(np.clip(clip.samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(clip.sample_rate)
        out.writeframes(pcm.tobytes())
    return clip.fault_start_s, clip.fault_end_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "examples")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    box = write_part(args.out / "part.png")
    start, end = write_machine(args.out / "machine.wav")
    print(f"{args.out / 'part.png'}: {PART['family']} part, {PART['label']} at {box}")
    print(f"{args.out / 'machine.wav'}: {MACHINE['label']} fault from {start:g} s to {end:g} s")


if __name__ == "__main__":
    main()
