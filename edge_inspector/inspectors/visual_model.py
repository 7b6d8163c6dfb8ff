"""Pre- and post-processing around the visual defect CNN, shared by the daemon and ``inspect``.

The models see a fixed 256x256 RGB input; frames of any size are **resized (stretched)** to it,
so aspect ratio is not kept -- the training data is square and stretching keeps every pixel of
the field of view (a letterbox would waste resolution); shrinking averages every source
pixel, so a 1-pixel scratch in a large frame is not stepped over (:func:`resize_to`).  One
preprocessed tensor feeds every visual model of the directory (the classifier: class
probabilities and a 32x32 defect heatmap; the anomaly model: a score and a score map); their
heads and :func:`~edge_inspector.inspectors.heads.decide` make the verdict, and a bounding box
is derived from the deciding model's map and mapped back to the original frame's pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from edge_inspector.errors import InputError, UserError
from edge_inspector.image_header import size_problem
from edge_inspector.inspectors.heads import Head, Thresholds, decide
from edge_inspector.precision import ModelFile
from edge_inspector.runtime.base import Engine
from edge_inspector.sources.decoded import DecodedPicture

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class VisualResult:
    """The decision about one image (the scoring contract: :mod:`~edge_inspector.inspectors.heads`)."""

    label: str  # "ok", a defect type, or "anomaly"
    score: float  # in [0, 1], higher = more defective (classifier alone: 1 - p(ok))
    defect: bool  # a model flagged it
    bbox: list[int] | None  # [x, y, w, h] in original image pixels, only when defective
    probs: dict[str, float] = field(default_factory=dict)  # classifier class probabilities
    heatmap: np.ndarray | None = None  # h x w in [0, 1]: the deciding model's map (for reports)
    anomaly_score: float | None = None  # when an anomaly model ran: 0.5 at its threshold


@dataclass
class LoadedModel:
    """One model of the runner: its manifest entry, head, engine and the file the engine runs."""

    entry: Any
    head: Head
    engine: Engine
    file: ModelFile | None = None  # None: the entry's own (float) file
    aligner: Any = None  # an inspectors.alignment.Aligner when the model takes registered frames

    def run(self, x: np.ndarray) -> Mapping[str, np.ndarray]:
        """The engine's outputs on the preprocessed batch ``x``; a model of an aligned product gets
        the frames registered to its reference, and its map is put back in the frames' coordinates."""
        if self.aligner is None:
            return self.engine.run({self.entry.input: x})
        registered, warps = self.aligner.register(x)
        out = dict(self.engine.run({self.entry.input: registered}))
        name = getattr(self.entry, "output_map", None)
        if name and name in out:
            out[name] = self.aligner.unwarp_maps(np.asarray(out[name], np.float32), warps)
        return out

    @property
    def sha256(self) -> str:
        return self.file.sha256 if self.file is not None else self.entry.sha256

    @property
    def precision(self) -> str:
        return self.file.precision if self.file is not None else "fp32"


class Preprocessor:
    """BGR uint8 frames of any size -> the input tensor of an image contract
    (:class:`~edge_inspector.manifest.ImageInput`): resized (stretched), normalised, NCHW float32.
    The runner, the capture threads and ``learn`` all use it, so a model always sees the same tensor."""

    def __init__(self, contract: Any) -> None:
        _, self.height, self.width = contract.input_shape
        # (pixel/255 - mean)/std folded into one multiply-subtract per channel
        self._scale = 1.0 / (255.0 * np.asarray(contract.std, np.float32))
        self._offset = np.asarray(contract.mean, np.float32) / np.asarray(contract.std, np.float32)
        self._channels = (2, 1, 0) if contract.color == "RGB" else (0, 1, 2)  # source BGR channel

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.empty((len(images), self.height, self.width, 3), np.uint8)
        for i, image in enumerate(images):
            batch[i] = (image.resized(self.width, self.height, resize_to) if isinstance(image, DecodedPicture)
                        else resize_to(_as_bgr(image), self.width, self.height))
        x = np.empty((len(images), 3, self.height, self.width), np.float32)
        for c, src in enumerate(self._channels):
            np.multiply(batch[..., src], self._scale[c], out=x[:, c], casting="unsafe")
            x[:, c] -= self._offset[c]
        return x


class VisualModelRunner:
    """Runs a directory's visual models (a classifier, an anomaly model, or both) on lists of BGR
    frames through any :class:`Engine`; every model sees the same preprocessed tensor."""

    def __init__(self, models: Sequence[LoadedModel]) -> None:
        if not models:
            raise UserError("no visual model to run")
        for m in models:
            _check_io(m.engine, m.entry.input, m.head.output_names)
        self.models = list(models)
        contract = self.models[0].entry
        self.contract = contract
        classifier = next((m.entry for m in self.models if m.head.kind == "classifier"), None)
        self.good_label = classifier.labels[0] if classifier is not None else "ok"
        self.name = "+".join(m.entry.name for m in self.models)
        # the file that ran: an INT8 verdict names the INT8 file, not the float model it came from
        self.sha256 = (self.models[0].sha256 if len(self.models) == 1 else
                       hashlib.sha256("+".join(m.sha256 for m in self.models).encode()).hexdigest())
        self.max_batch = max(1, min(int(m.engine.max_batch) for m in self.models))
        self.preprocess = Preprocessor(contract)
        self.height, self.width = self.preprocess.height, self.preprocess.width

    def describe(self) -> str:
        """What runs, for the start-up log: ``visual_cnn int8 (visual_cnn.int8.onnx)``."""
        return ", ".join(f"{m.entry.name} {m.precision} ({m.file.path.name if m.file else m.entry.file})"
                         for m in self.models)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(m.head.kind for m in self.models)

    def run(self, x: np.ndarray) -> list[dict[str, np.ndarray]]:
        """One engine call per model on the preprocessed batch: each model's raw outputs."""
        return [m.run(x) for m in self.models]

    def infer(self, images: Sequence[np.ndarray], thresholds: Thresholds | None = None) -> list[VisualResult]:
        """Inspect ``images``: one engine call per model per ``max_batch`` frames."""
        results: list[VisualResult] = []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start : start + self.max_batch]
            outputs = self.run(self.preprocess(chunk))
            sizes = [(int(im.shape[0]), int(im.shape[1])) for im in chunk]
            results.extend(self.postprocess(outputs, sizes, thresholds))
        return results

    def postprocess(
        self, outputs: Sequence[Mapping[str, np.ndarray]], sizes: Sequence[tuple[int, int]],
        thresholds: Thresholds | None = None,
    ) -> list[VisualResult]:
        """Each model's outputs + original (height, width) of each frame -> one result per frame."""
        limits = thresholds or Thresholds()
        batches = [m.head.batch(out) for m, out in zip(self.models, outputs)]
        results = []
        for i, (h, w) in enumerate(sizes):
            opinions = [m.head.opinion(b, i, getattr(limits, m.head.kind)) for m, b in zip(self.models, batches)]
            d = decide(opinions, self.good_label)
            bbox = heatmap_bbox(d.cell_map, d.map_threshold, (h, w)) if d.defect and d.cell_map is not None else None
            results.append(VisualResult(d.label, d.score, d.defect, bbox, d.probs, d.cell_map, d.anomaly_score))
        return results

    def close(self) -> None:
        for m in self.models:
            m.engine.close()


def _check_io(engine: Engine, input_name: str, output_names: Sequence[str]) -> None:
    """The manifest and the model file must agree on tensor names."""
    names = {spec.name for spec in engine.inputs}
    if input_name not in names:
        raise UserError(
            f"{engine.model_path}: has no input {input_name!r} (inputs: {sorted(names)}); "
            "manifest and model file disagree"
        )
    outputs = {spec.name for spec in engine.outputs}
    for wanted in output_names:
        if wanted not in outputs:
            raise UserError(f"{engine.model_path}: has no output {wanted!r} (outputs: {sorted(outputs)})")


def resize_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` stretched to ``width`` x ``height``, every source pixel weighing in when shrinking.

    Area averaging (INTER_AREA) keeps a 1-pixel scratch in a large frame, where plain bilinear
    sampling at a big ratio steps over it; but OpenCV's area resize is fast only for the same
    integer ratio on both axes (720p -> 256x256 directly: ~4 ms).  So the frame is halved
    (exact 2x2 averages) while one side is still four times the target and neither would drop
    below it, an axis still four times the target or more is then halved on its own (rare:
    line-scan shapes), bilinear takes it to twice the target (a ratio below 2, which samples
    every source pixel), and a last exact halving gives the target: ~0.6 ms for 720p on one
    core (a plain area resize after one halving: ~1.3 ms), within ~1 grey level of an area resize.
    """
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image  # as is, not a copy
    if h <= height and w <= width:  # enlarging: nothing can be stepped over
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    while min(h / height, w / width) >= 2 and max(h / height, w / width) >= 4:
        image = _halve(image, True, True)
        h, w = image.shape[:2]
    while h >= 4 * height or w >= 4 * width:
        image = _halve(image, w >= 4 * width, h >= 4 * height)
        h, w = image.shape[:2]
    image = cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _halve(image: np.ndarray, along_x: bool, along_y: bool) -> np.ndarray:
    """Exact 2:1 area average along the chosen axes.  An odd side loses its last pixel first:
    at a ratio just off 2:1 OpenCV falls back to its slow generic area path (2049x2049: ~18x
    slower than 2048x2048)."""
    h, w = image.shape[:2]
    if along_y:
        h -= h % 2
    if along_x:
        w -= w % 2
    size = (w // 2 if along_x else w, h // 2 if along_y else h)
    return cv2.resize(image[:h, :w], size, interpolation=cv2.INTER_AREA)


def heatmap_bbox(heatmap: np.ndarray, threshold: float, size: tuple[int, int]) -> list[int]:
    """[x, y, w, h] in an image of ``size`` (h, w) around the heatmap's strongest defect region.

    The largest 8-connected group of cells at or above ``threshold``; when no cell reaches it,
    the connected cells around the maximum that reach half its value.
    """
    hot = (heatmap >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(hot, connectivity=8)
    if count > 1:
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    else:
        peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
        hot = (heatmap >= 0.5 * heatmap[peak]).astype(np.uint8)
        _, labels, stats, _ = cv2.connectedComponentsWithStats(hot, connectivity=8)
        biggest = int(labels[peak])
    cx, cy, cw, ch = (int(v) for v in stats[biggest, :4])
    gh, gw = heatmap.shape
    sy, sx = size[0] / gh, size[1] / gw
    x0, y0 = int(np.floor(cx * sx)), int(np.floor(cy * sy))
    x1, y1 = int(np.ceil((cx + cw) * sx)), int(np.ceil((cy + ch) * sy))
    return [x0, y0, min(x1, size[1]) - x0, min(y1, size[0]) - y0]


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Accept grey and BGRA frames too; anything else is an input error."""
    if image.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise InputError(f"expected an H x W x 3 BGR image, got shape {tuple(image.shape)}")


def _truncation(data: bytes) -> str | None:
    """Why an encoded image is incomplete, or None (cv2 silently decodes partial files)."""
    if data.startswith(_PNG_MAGIC):
        return None if b"IEND" in data[-16:] else "truncated PNG (no IEND chunk at the end)"
    if data.startswith(b"\xff\xd8"):
        return None if b"\xff\xd9" in data[-1024:] else "truncated JPEG (no end-of-image marker)"
    if data.startswith(b"BM"):
        declared = int.from_bytes(data[2:6], "little") if len(data) >= 6 else 0
        return None if len(data) >= declared else f"truncated BMP ({len(data)} of {declared} bytes)"
    return "not a PNG, JPEG or BMP image"


def load_image(path: str | Path) -> np.ndarray:
    """Read a PNG/JPEG/BMP file as BGR uint8, or raise :class:`InputError` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not an image") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not data:
        raise InputError(f"{path}: empty file, not an image")
    problem = _truncation(data) or size_problem(data)
    if problem:
        raise InputError(f"{path}: {problem}")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # a header OpenCV rejects (beyond what size_problem checks)
        raise InputError(f"{path}: OpenCV cannot decode it ({str(exc).strip().splitlines()[-1][:120]})") from None
    if image is None or image.size == 0:
        raise InputError(f"{path}: corrupt image data (OpenCV cannot decode it)")
    return image


def inspect_image(path: str | Path, runner: VisualModelRunner) -> dict:
    """The ``edge-inspector inspect`` JSON object for one image file."""
    return inspect_image_detail(path, runner)[0]


def inspect_image_detail(path: str | Path, runner: VisualModelRunner) -> tuple[dict, np.ndarray, VisualResult]:
    """:func:`inspect_image`'s object, with the image and the result (``inspect --overlay`` draws them)."""
    image = load_image(path)
    result = runner.infer([image])[0]
    out: dict = {"path": str(path), "kind": "visual", "label": result.label, "score": round(result.score, 6)}
    if result.anomaly_score is not None:
        out["anomaly_score"] = round(result.anomaly_score, 6)
    if result.defect and result.bbox is not None:
        out["bbox"] = result.bbox
    if result.probs:
        out["probs"] = {k: round(v, 6) for k, v in result.probs.items()}
    out["width"], out["height"] = int(image.shape[1]), int(image.shape[0])
    return out, image, result
