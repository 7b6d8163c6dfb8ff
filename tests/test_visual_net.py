"""The visual CNN's local-contrast front end (training/visual/net.py) and what the shipped graph holds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch not installed (./setup.sh --train)")


def _box_mean(plane: np.ndarray, size: int) -> np.ndarray:
    """Mean over the part of a size x size box inside the plane (OpenCV box sums)."""
    kw = dict(ksize=(size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return cv2.boxFilter(plane, -1, **kw) / cv2.boxFilter(np.ones_like(plane), -1, **kw)


def _reference(x: np.ndarray, size: int, floor: float) -> np.ndarray:
    """The front end written out with OpenCV: [C, H, W] -> [2C, H, W].  Statistics on 2x2 means
    (INTER_AREA halving), box means over the part inside the image, bilinear upsampling."""
    (h, w), half = x.shape[1:], (x.shape[2] // 2, x.shape[1] // 2)

    def smooth(plane: np.ndarray) -> np.ndarray:  # full-size plane -> its upsampled half-res box mean
        small = cv2.resize(plane, half, interpolation=cv2.INTER_AREA)
        return cv2.resize(_box_mean(small, size), (w, h), interpolation=cv2.INTER_LINEAR)

    centred = np.stack([c - smooth(c) for c in x])
    energy = cv2.resize((centred**2).mean(0), half, interpolation=cv2.INTER_AREA)
    scale = cv2.resize(1.0 / np.sqrt(_box_mean(energy, size) + floor**2), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.concatenate([x, centred * scale])


@needs_torch
@pytest.mark.parametrize("height,width", [(256, 256), (128, 128), (40, 72)])
def test_local_contrast_is_mean_removed_over_local_std(height: int, width: int) -> None:
    import torch
    from training.visual.net import LocalContrast

    x = np.random.default_rng(3).normal(0, 1, (2, 3, height, width)).astype(np.float32)
    x[1] *= np.linspace(0.1, 3, width, dtype=np.float32)  # texture strength varying across the image
    got = LocalContrast()(torch.from_numpy(x)).numpy()
    assert got.shape == (2, 6, height, width)
    for i in range(2):
        np.testing.assert_allclose(got[i], _reference(x[i], 7, 0.06), atol=2e-4)


@needs_torch
def test_training_computes_the_same_channels_as_the_exported_front_end() -> None:
    """Training (training/visual/data.py) computes the contrast channels once per image with OpenCV (float16);
    they must be what the network's own front end gives at run time."""
    import torch
    from training.visual.net import LocalContrast
    from training.visual.data import contrast_of, to_tensor

    rng = np.random.default_rng(5)
    image = cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), (0, 0), 1.0)
    image = cv2.add(image, np.linspace(0, 60, 256, dtype=np.uint8)[None, :, None].repeat(256, 0).repeat(3, 2))
    cv2.line(image, (20, 200), (230, 40), (200, 200, 200), 1, cv2.LINE_AA)
    want = LocalContrast()(to_tensor(image[None]))[0, 3:].permute(1, 2, 0).numpy()
    got = contrast_of(image)
    assert got.shape == (256, 256, 3) and got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=1e-3, atol=1e-3)


@needs_torch
def test_a_scratch_looks_the_same_on_faint_and_strong_texture() -> None:
    """A line 1.5 texture-std bright reads the same after the front end whatever the texture's strength,
    brightness or gain: the network sees visibility, not grey levels."""
    import torch
    from training.visual.net import LocalContrast

    rng = np.random.default_rng(11)
    texture = cv2.GaussianBlur(rng.standard_normal((128, 128)).astype(np.float32), (0, 0), 1.0)
    texture /= texture.std()
    line = np.zeros_like(texture)
    line[:, 64] = 1.5
    front = LocalContrast()
    responses = []
    for strength, level in ((0.4, -0.5), (1.0, 0.3), (4.0, 0.0)):  # normalised input units
        image = level + strength * (texture + line)
        x = torch.from_numpy(np.repeat(image[None, None], 3, axis=1))
        responses.append(front(x)[0, 3].numpy())
    for r in responses[1:]:  # the raw line contrast differs 10x; the floor costs the faintest a few %
        np.testing.assert_allclose(r, responses[-1], atol=0.06 * np.abs(responses[-1]).max())
        assert abs(r[:, 64].mean() / responses[-1][:, 64].mean() - 1) < 0.05
    assert responses[0][:, 64].mean() > 1.0 and abs(responses[0][:, 30].mean()) < 0.5


@needs_torch
def test_front_end_runs_in_float32_under_bfloat16_autocast() -> None:
    import torch
    from training.visual.net import LocalContrast

    x = torch.randn(1, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = LocalContrast()(x)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), LocalContrast()(x).numpy(), atol=1e-6)


# Operators TensorRT 10's ONNX parser takes natively (no plugin): what the shipped graph may use.
TENSORRT_OPS = {"Conv", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Concat", "Flatten", "Gemm",
                "Sigmoid", "Softmax", "Resize", "Sub", "Div", "Mul", "Add", "Sqrt", "Reciprocal", "ReduceMean",
                "Constant", "Identity"}


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx not installed (./setup.sh --dev)")
def test_shipped_graph_has_the_front_end_and_only_tensorrt_ops() -> None:
    from training.visual.card import contrast_window, conv_stack, op_types

    path = ROOT / "engines" / "visual_cnn.onnx"
    assert contrast_window(path) == 14  # a 7x7 box on 2x2 means
    assert set(op_types(path)) <= TENSORRT_OPS, set(op_types(path)) - TENSORRT_OPS
    layers, field, stride = conv_stack(path)
    assert layers.startswith("16/2-") and stride == 8 and field > 100


@needs_torch
@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx not installed (./setup.sh --dev)")
def test_export_folds_batchnorm_inside_the_residual_blocks(tmp_path: Path) -> None:
    """Every BatchNorm, inside a residual block or not, is folded away without changing the output,
    and the card's reading of the graph finds which blocks add their input back."""
    import torch
    from training.visual.card import conv_stack, op_types
    from training.visual.net import VisualNet
    from training.visual.train import export_onnx

    torch.manual_seed(0)
    expected = {"residual": "16/2-32/2-32r-32r-64/2-64r-64r d2-64r d4", "plain": "16/2-32/2-32-32-64/2-64-64 d2-64 d4"}
    for arch, stack in expected.items():
        net = VisualNet(arch=arch)
        for module in net.modules():  # statistics far from the identity, as after training
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.normal_(0.0, 0.2)
        path = tmp_path / f"{arch}.onnx"
        assert export_onnx(net, path, torch.randn(2, 3, 256, 256)) < 1e-4, arch
        assert "BatchNormalization" not in op_types(path)
        layers, field, stride = conv_stack(path)
        assert layers == stack and stride == 8


def test_held_out_model_counts_as_the_same_recipe_only_when_every_setting_matches() -> None:
    """The card calls the held-out style model "the same recipe" only when its stored settings
    match the shipped model's; a model file from before the --lr/--ema options and the residual
    blocks (no such keys) trained with the old fixed values and plain blocks, so it matches a
    newer file that states them, and differs from a residual one."""
    from training.visual.card import _recipe_differences

    before_options = {"crops": "128:42", "full_images": "20000", "batch": "32", "seed": "20240611"}
    with_defaults = dict(before_options, lr="0.003", ema="0.0", arch="plain")
    assert _recipe_differences(with_defaults, before_options) == []
    assert _recipe_differences(dict(with_defaults, lr="0.006", ema="0.998"), before_options) == ["lr", "ema"]
    assert _recipe_differences(dict(before_options, crops="64:12,96:10"), before_options) == ["crops"]
    assert _recipe_differences(dict(with_defaults, arch="residual"), before_options) == ["arch"]
