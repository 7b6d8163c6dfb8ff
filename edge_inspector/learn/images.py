"""The good images ``learn visual`` and ``calibrate`` are given: folders, videos, ``record`` directories.

Every source becomes a list of frames (BGR uint8) with a digest each:

* a folder: its PNG/JPEG/BMP files in name order (other files are ignored, a folder without
  images is an error);
* a video file (anything FFmpeg reads): every frame, decoded as the daemon decodes files;
* a directory made by ``record``: the recorded camera's video (``--camera NAME`` when it recorded
  several), up to the last complete frame.

Learning must not start on bad data, so each problem is one line naming the file: unreadable
or truncated images, a video with no frame, frames of a size other than the first source's
(one model is one camera's view: mixing views would teach it that anything goes), too few
images.  A long video is thinned evenly to ``max_images`` so learning stays within minutes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_inspector.errors import InputError, UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
RECORDING_MANIFEST = "manifest.json"


@dataclass
class GoodImages:
    """Everything given to learn, in order."""

    images: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # file, or video#frame, of each image
    digests: list[str] = field(default_factory=list)  # sha256 of each image's pixels
    sources: list[str] = field(default_factory=list)  # as given on the command line
    skipped: int = 0  # frames left out when thinning long videos

    def __len__(self) -> int:
        return len(self.images)

    def sha256(self) -> str:
        """Digest of the images' digests in order: the same data gives the same value."""
        return hashlib.sha256("".join(self.digests).encode()).hexdigest()


class _Frame:
    """One image as read: its name, original size and pixels at the model's size."""

    def __init__(self, name: str, image: np.ndarray, size: tuple[int, int]) -> None:
        from edge_inspector.inspectors.visual_model import resize_to

        self.name, self.shape = name, image.shape
        self.digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
        self.image = np.ascontiguousarray(resize_to(image, *size))  # as the daemon resizes frames


def _video_frames(path: Path, size: tuple[int, int], most: int) -> list[_Frame]:
    """Frames of a video at the model's size; a long one thinned evenly to about ``most`` frames."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise InputError(f"{path}: not a video FFmpeg can open")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    step = max(1, count // most) if count > 0 else 1
    frames, index = [], 0
    try:
        while True:
            ok = cap.grab()
            if not ok:
                break
            if index % step == 0:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    frames.append(_Frame(f"{path}#{index}", frame, size))
            index += 1
    finally:
        cap.release()
    if not frames:
        raise InputError(f"{path}: a video with no frames")
    return frames


def _recording_video(directory: Path, camera: str | None) -> Path:
    videos = sorted(p for p in directory.iterdir()
                    if p.suffix in (".mkv", ".mp4", ".avi") and (directory / f"{p.stem}.timestamps.csv").is_file())
    if not videos:
        raise InputError(f"{directory}: a recording without a camera (no <name>.mkv with <name>.timestamps.csv)")
    if camera is not None:
        chosen = [p for p in videos if p.stem == camera]
        if not chosen:
            raise InputError(f"{directory}: no camera {camera!r} (it has {', '.join(p.stem for p in videos)})")
        return chosen[0]
    if len(videos) > 1:
        raise UserError(f"{directory}: {len(videos)} cameras ({', '.join(p.stem for p in videos)}); "
                        "say which one with --camera NAME (one model per camera view)")
    return videos[0]


def _folder_images(directory: Path, size: tuple[int, int]) -> list[_Frame]:
    from edge_inspector.inspectors.visual_model import load_image

    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{directory}: no images in this folder (PNG, JPEG or BMP)")
    return [_Frame(str(p), load_image(p), size) for p in files]  # load_image names the file of any bad image


def _frames_of(source: Path, camera: str | None, size: tuple[int, int], most: int) -> list[_Frame]:
    from edge_inspector.sources.kinds.video_file import VIDEO_SUFFIXES
    from edge_inspector.inspectors.visual_model import load_image

    if source.is_dir():
        if (source / RECORDING_MANIFEST).is_file():
            return _video_frames(_recording_video(source, camera), size, most)
        return _folder_images(source, size)
    if not source.exists():
        raise InputError(f"{source}: no such file or directory")
    if source.suffix.lower() in IMAGE_SUFFIXES:
        return [_Frame(str(source), load_image(source), size)]
    if source.suffix.lower() in VIDEO_SUFFIXES:
        return _video_frames(source, size, most)
    raise InputError(f"{source}: not an image folder, image, video ({', '.join(sorted(VIDEO_SUFFIXES))}) "
                     "or recording directory")


def read_good_images(sources: list[Path], size: tuple[int, int] = (256, 256), camera: str | None = None,
                     max_images: int = 1000, min_images: int = 2) -> GoodImages:
    """Read every source into checked frames at the model's ``size`` (width, height), as the
    daemon resizes them (module docstring); at most ``max_images``, evenly spread."""
    found: list[_Frame] = []
    good = GoodImages()
    for source in sources:
        good.sources.append(str(source))
        frames = _frames_of(Path(source), camera, size, max_images)
        for frame in frames:
            if (found or frames)[0].shape != frame.shape:
                first = (found or frames)[0]
                raise InputError(f"{frame.name}: {frame.shape[1]}x{frame.shape[0]} pixels, but {first.name} is "
                                 f"{first.shape[1]}x{first.shape[0]}: learn from one camera's view (crop or resize "
                                 "the odd images first)")
        found += frames
    if len(found) < min_images:
        raise InputError(f"{', '.join(map(str, sources))}: {len(found)} image(s); learning needs at least {min_images} "
                         "(200 or more good parts recommended)")
    keep = np.unique(np.linspace(0, len(found) - 1, min(len(found), max_images)).round().astype(int))
    good.skipped = len(found) - len(keep)
    for i in keep:
        frame = found[int(i)]
        good.names.append(frame.name)
        good.images.append(frame.image)
        good.digests.append(frame.digest)
    return good
