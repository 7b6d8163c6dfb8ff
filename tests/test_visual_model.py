"""The shipped visual model: manifest integrity, shapes, accuracy on fresh surfaces, bad inputs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from edge_inspector.errors import InputError
from edge_inspector.inspectors.visual_model import (
    VisualModelRunner,
    heatmap_bbox,
    inspect_image,
    load_image,
    resize_to,
)
from edge_inspector.manifest import load_manifest
from edge_inspector.inspectors.factory import engine_opener, open_visual
from edge_inspector.inspectors.heads import Thresholds
from edge_inspector.synthetic.surfaces import FAMILIES, LABELS, make_surface, sample_stream

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ROOT / "engines"

pytestmark = pytest.mark.skipif(
    not (ENGINES / "visual_cnn.onnx").is_file(),
    reason="engines/visual_cnn.onnx is absent (run python -m training.visual.train --out engines)",
)


@pytest.fixture(scope="module")
def runner() -> Iterator[VisualModelRunner]:
    manifest = load_manifest(ENGINES)  # verify=True: sha256 must match the file
    runner = open_visual(manifest, engine_opener("onnxruntime"), 8)
    yield runner
    runner.close()


def test_manifest_matches_file_and_labels() -> None:
    model = load_manifest(ENGINES).classifier("visual")
    assert model is not None
    assert model.labels == LABELS
    assert model.input_shape == (3, 256, 256)
    assert 0.0 < model.threshold < 1.0


@pytest.mark.parametrize("batch", [1, 3])
def test_output_shapes(runner: VisualModelRunner, batch: int) -> None:
    frames = [np.full((120 + 40 * i, 200, 3), 90 + i, np.uint8) for i in range(batch)]
    x = runner.preprocess(frames)
    assert x.shape == (batch, 3, 256, 256) and x.dtype == np.float32
    out = runner.run(x)[0]
    assert out["probs"].shape == (batch, len(LABELS))
    assert out["heatmap"].shape == (batch, 1, 32, 32)
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, atol=1e-4)


def test_preprocess_is_rgb_and_normalised(runner: VisualModelRunner) -> None:
    frame = np.zeros((10, 20, 3), np.uint8)
    frame[..., 0] = 255  # pure blue in BGR
    x = runner.preprocess([frame])[0]
    mean, std = runner.contract.mean, runner.contract.std
    assert x[2].mean() == pytest.approx((1.0 - mean[2]) / std[2], abs=1e-5)  # blue is channel 2 in RGB
    assert x[0].mean() == pytest.approx((0.0 - mean[0]) / std[0], abs=1e-5)


def test_infer_splits_long_lists_into_engine_batches(runner: VisualModelRunner) -> None:
    rng = np.random.default_rng(11)
    frames = [make_surface(rng, "metal", "ok").image for _ in range(runner.max_batch + 3)]
    together = runner.infer(frames)
    alone = runner.infer(frames[-1:])
    assert len(together) == len(frames)
    assert together[-1].score == pytest.approx(alone[0].score, abs=1e-5)



@pytest.mark.parametrize("family", FAMILIES)
def test_good_parts_of_every_family_pass(runner: VisualModelRunner, family: str) -> None:
    """Good parts of each family the demo camera shows are rarely rejected (cast was 22 % once)."""
    frames = [make_surface(np.random.default_rng([515151, i]), family, "ok").image for i in range(40)]
    rejected = sum(r.defect for r in runner.infer(frames))
    assert rejected <= 2, f"{rejected}/40 good {family} parts rejected"

def _overlap(bbox: list[int], mask: np.ndarray) -> bool:
    x, y, w, h = bbox
    return bool(mask[y : y + h, x : x + w].any())


@pytest.mark.slow
def test_inspect_fresh_surfaces(runner: VisualModelRunner, tmp_path: Path) -> None:
    """40 new images over all families: defect-vs-ok accuracy and boxes on the defects."""
    correct, boxes, detected = 0, 0, 0
    n = 40
    for i in range(n):
        rng = np.random.default_rng([424242, i])
        label = "ok" if i % 2 == 0 else LABELS[1 + (i // 2) % 4]
        sample = make_surface(rng, FAMILIES[i % 3], label)
        path = tmp_path / f"part{i}.png"
        cv2.imwrite(str(path), sample.image)
        out = inspect_image(path, runner)
        assert out["kind"] == "visual" and out["path"] == str(path)
        assert (out["width"], out["height"]) == (256, 256)
        assert set(out["probs"]) == set(LABELS) and 0.0 <= out["score"] <= 1.0
        is_defect = out["label"] != "ok"
        assert ("bbox" in out) == is_defect
        correct += is_defect == (label != "ok")
        if is_defect and label != "ok":
            detected += 1
            boxes += _overlap(out["bbox"], sample.mask)
    assert correct / n >= 0.85, f"defect-vs-ok accuracy {correct / n:.2f}"
    assert detected and boxes / detected >= 0.8, f"{boxes}/{detected} boxes overlap the defect"


def test_bbox_maps_to_original_pixels(runner: VisualModelRunner) -> None:
    """A clear dark spot on a large non-square frame is boxed where it is."""
    rng = np.random.default_rng(5)
    sample = make_surface(rng, "painted", "spot")
    big = cv2.resize(sample.image, (768, 512), interpolation=cv2.INTER_LINEAR)
    result = runner.infer([big], Thresholds(classifier=0.0))[0]
    assert result.defect and result.bbox is not None
    x, y, w, h = result.bbox
    assert 0 <= x and 0 <= y and x + w <= 768 and y + h <= 512
    mask = cv2.resize(sample.mask, (768, 512), interpolation=cv2.INTER_NEAREST)
    assert _overlap(result.bbox, mask)


def test_threshold_override_and_label_rule(runner: VisualModelRunner) -> None:
    frame = make_surface(np.random.default_rng(3), "metal", "ok").image
    never = runner.infer([frame], Thresholds(classifier=1.0))[0]
    always = runner.infer([frame], Thresholds(classifier=0.0))[0]
    assert not never.defect and never.label == "ok" and never.bbox is None
    assert always.defect and always.label in LABELS[1:] and always.bbox is not None


def test_heatmap_bbox_without_hot_cells() -> None:
    heat = np.zeros((32, 32), np.float32)
    heat[10, 20] = 0.3
    heat[10, 21] = 0.2
    assert heatmap_bbox(heat, 0.5, (256, 256)) == [160, 80, 16, 8]
    heat[0:2, 0:3] = 0.9  # a hot group wins over the sub-threshold peak
    assert heatmap_bbox(heat, 0.5, (64, 128)) == [0, 0, 12, 4]


def test_sample_stream_is_reproducible() -> None:
    a = [s.label for s, _ in zip(sample_stream(7, defect_rate=0.5), range(6))]
    b = [s for s, _ in zip(sample_stream(7, defect_rate=0.5), range(6))]
    assert a == [s.label for s in b]
    for s in b:
        assert s.image.shape == (256, 256, 3) and s.image.dtype == np.uint8
        assert (s.bbox is None) == (s.label == "ok") and (s.mask.any() == (s.label != "ok"))


def test_faint_defects_are_strengthened_to_the_visibility_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A defect lost in the cast grain is made visible; only pixels near it change."""
    from edge_inspector.synthetic import surfaces

    floor = surfaces.MIN_VISIBILITY

    def draw(minimum: float, seed: int) -> surfaces.Sample:
        monkeypatch.setattr(surfaces, "MIN_VISIBILITY", minimum)
        return make_surface(np.random.default_rng([31337, seed]), "cast", "scratch")

    seed = next(i for i in range(200) if draw(0.0, i).visibility < 0.8)  # a faint one, as drawn
    faint, floored = draw(0.0, seed), draw(floor, seed)
    assert np.array_equal(faint.mask, floored.mask) and faint.bbox == floored.bbox
    assert floored.visibility == pytest.approx(floor)
    changed = np.abs(floored.image.astype(int) - faint.image.astype(int)).max(axis=2) > 8
    near = cv2.dilate(faint.mask, np.ones((17, 17), np.uint8)) > 0  # blur and 8x8 JPEG blocks
    assert changed.any() and not (changed & ~near).any()
    on = faint.mask > 0  # the defect's contrast to its surroundings grew on the defect itself
    assert np.abs(floored.image[on].astype(int) - faint.image[on].astype(int)).mean() > 4
    # a clearly visible defect is left exactly as drawn
    strong = next(i for i in range(200) if draw(0.0, i).visibility > 2.0)
    assert np.array_equal(draw(0.0, strong).image, draw(floor, strong).image)


# ------------------------------------------------------------------------------ bad inputs


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(InputError, match=str(path)):
        load_image(path)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(InputError, match="not a PNG, JPEG or BMP") as err:
        load_image(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_image(tmp_path: Path, ext: str) -> None:
    image = make_surface(np.random.default_rng(1), "cast", "ok").image
    ok, buf = cv2.imencode(ext, image)
    assert ok
    path = tmp_path / f"cut{ext}"
    path.write_bytes(buf.tobytes()[: len(buf) * 2 // 3])
    with pytest.raises(InputError, match="truncated") as err:
        load_image(path)
    assert str(path) in str(err.value)
    whole = tmp_path / f"whole{ext}"
    whole.write_bytes(buf.tobytes())
    assert load_image(whole).shape == (256, 256, 3)


def test_bmp_and_grey_inputs(tmp_path: Path, runner: VisualModelRunner) -> None:
    grey = np.full((50, 70), 128, np.uint8)
    path = tmp_path / "grey.bmp"
    cv2.imwrite(str(path), grey)
    out = inspect_image(path, runner)
    assert (out["width"], out["height"]) == (70, 50)


# --------------------------------------------------------------------------------- training


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed (./setup.sh --train)")
def test_train_smoke(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "training.visual.train", "--smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = load_manifest(tmp_path)
    assert manifest.classifier("visual") is not None and manifest.classifier("visual").labels == LABELS
    for name in ("visual_cnn.onnx", "visual_confusion.png", "visual_examples.png", "README.md"):
        assert (tmp_path / name).is_file(), name
    assert "<!-- BEGIN visual -->" in (tmp_path / "README.md").read_text()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed (./setup.sh --train)")
@pytest.mark.parametrize("options,message", [
    (["--crops", "63:2"], "--crops: crop side 63 is not a multiple of 8"),
    (["--crops", "96"], "--crops: '96' is not SIDE:EPOCHS"),
    (["--crops", ""], "--crops: no crop phase"),
    (["--ema", "1"], "--ema: 1.0 is not a decay in [0, 1)"),
    (["--lr", "0"], "--lr: 0.0 is not a positive learning rate"),
    (["--class-weight", "scrach:2"], "--class-weight: unknown label 'scrach'"),
    (["--class-weight", "scratch:two"], "--class-weight: weight of 'scratch' must be a number, got 'two'"),
    (["--class-weight", "scratch:0"], "--class-weight: weight of 'scratch' must be in (0, 100], got 0"),
])
def test_train_rejects_a_bad_option_before_generating_data(tmp_path: Path, options: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "training.visual.train", *options, "--out", str(tmp_path / "engines")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 2 and f"error: {message}" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "engines").exists()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed (./setup.sh --train)")
def test_class_weights_follow_the_label_order() -> None:
    from training.visual.train import parse_class_weights

    assert parse_class_weights("") == [1.0] * len(LABELS)
    named = {"scratch": 2.0, "dent": 0.5}
    assert parse_class_weights("scratch:2, dent:0.5") == [named.get(label, 1.0) for label in LABELS]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed (./setup.sh --train)")
def test_training_exports_the_moving_average_of_the_weights() -> None:
    """With ``ema`` the returned network is the per-step average of the weights, not the last ones:
    with a decay of almost 1 it stays where the first (smallest, warm-up) step left it, while the
    trained network moves on.  Without it, the trained network itself is returned."""
    import torch

    from training.visual.data import SPLIT_TRAIN, generate
    from training.visual.net import VisualNet
    from training.visual.train import train

    data = generate(5, SPLIT_TRAIN, 96, 1, "test data", with_contrast=True)  # 12 steps: a real warm-up

    def flat(net: VisualNet) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def run(ema: float) -> tuple[torch.Tensor, VisualNet, VisualNet]:
        torch.manual_seed(0)
        model = VisualNet()
        start = flat(model).clone()
        return start, model, train(model, data, [(64, 1)], 8, 0, full_images=0, ema=ema)

    start, model, returned = run(0.0)
    assert returned is model
    start, model, averaged = run(0.999999)
    assert averaged is not model
    moved, averaged_moved = flat(model) - start, flat(averaged) - start
    assert 0 < averaged_moved.norm() < 0.1 * moved.norm(), (averaged_moved.norm(), moved.norm())


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed (./setup.sh --train)")
def test_training_batches_hold_what_the_runtime_feeds_the_model(runner: VisualModelRunner) -> None:
    """The training input is what the exported network computes from the runtime's preprocessing of
    the same image, turned and flipped with its mask: raw channels, and the front end's contrast
    channels (computed once per whole image with OpenCV, then turned with it)."""
    import torch

    from training.visual.data import contrast_of, to_tensor, to_training_batch
    from training.visual.net import LocalContrast

    rng = np.random.default_rng(7)
    images = cv2.GaussianBlur(rng.integers(0, 256, (3 * 256, 256, 3), dtype=np.uint8), (0, 0), 0.8).reshape(3, 256, 256, 3)
    images[1, :, 100:103] = 250  # a bright stripe: the contrast channels must turn with it
    contrast = np.stack([contrast_of(image) for image in images])
    cells = rng.random((3, 32, 32)).astype(np.float32)
    front, seen = LocalContrast(), set()
    for seed in range(24):
        draw = np.random.default_rng(seed)
        k, flip = int(draw.integers(4)), bool(draw.random() < 0.5)
        seen.add((k, flip))
        x, t = to_training_batch(images, contrast, cells, np.random.default_rng(seed))
        turned = np.rot90(images, k, axes=(1, 2))
        want_cells = np.rot90(cells, k, axes=(1, 2))
        if flip:
            turned, want_cells = turned[:, :, ::-1], want_cells[:, :, ::-1]
        want = front(torch.from_numpy(runner.preprocess(list(np.ascontiguousarray(turned))))).numpy()
        assert x.shape == (3, 6, 256, 256) and x.is_contiguous(memory_format=torch.channels_last)
        np.testing.assert_allclose(x.numpy()[:, :3], want[:, :3], atol=1e-5)
        np.testing.assert_allclose(x.numpy()[:, 3:], want[:, 3:], atol=4e-3 * np.abs(want[:, 3:]).max())  # float16
        np.testing.assert_array_equal(t.numpy(), want_cells)
    assert len(seen) == 8  # every turn, with and without the flip
    plain = to_tensor(images)  # validation, threshold and export probes: no turn
    assert plain.is_contiguous()
    np.testing.assert_allclose(plain.numpy(), runner.preprocess(list(images)), atol=1e-5)


@pytest.mark.parametrize("height,width", [(720, 1280), (721, 1281), (1080, 1920), (300, 4001), (2048, 2048), (2049, 2049), (257, 255)])
def test_resize_to_shrinks_like_area_averaging(height: int, width: int) -> None:
    rng = np.random.default_rng(5)
    image = cv2.GaussianBlur((rng.random((height, width, 3)) * 255).astype(np.uint8), (0, 0), 1.5)
    out = resize_to(image, 256, 256)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    if max(height, width) >= 4 * 256:  # halved: an odd side loses its last pixel first
        image = image[: height - height % 2, : width - width % 2]
    area = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    assert np.abs(out.astype(np.int32) - area).mean() < 1.5


@pytest.mark.parametrize("height,width", [(100, 80), (200, 1000), (256, 256)])
def test_resize_to_any_other_size(height: int, width: int) -> None:
    image = np.full((height, width, 3), 77, np.uint8)
    out = resize_to(image, 256, 256)
    assert out.shape == (256, 256, 3) and int(out.min()) == int(out.max()) == 77


@pytest.mark.parametrize("offset", range(5))
def test_a_one_pixel_scratch_in_a_720p_frame_survives_the_resize(offset: int) -> None:
    """1280 -> 256 is 5:1; sampling (bilinear) steps over a 1-px line at 4 of 5 positions."""
    image = np.full((720, 1280, 3), 128, np.uint8)
    image[:, 600 + offset] = 28
    darkening = 128 - resize_to(image, 256, 256).astype(np.int32)
    area = 128 - cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA).astype(np.int32)
    assert darkening.sum() >= 0.8 * area.sum()  # the line's ink is kept ...
    assert darkening.max() >= 0.4 * area.max()  # ... and not smeared out of sight
