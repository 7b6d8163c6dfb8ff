"""The visual defect CNN (PyTorch, training only): its layers and BatchNorm folding for export."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edge_inspector.synthetic.surfaces import LABELS

# The block kinds --arch chooses from: "plain" = every block a conv+BN+ReLU, "residual" = the
# stride-1 blocks add their input back.  Stored in the exported model's training recipe; model
# files without it predate the option and are plain.
ARCHITECTURES = ("plain", "residual")


def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    """``x + relu(bn(conv(x)))``: a 3x3 conv block that adds its input back.

    The identity path lets every block start as a small correction of the one before, so the
    stack learns more in a short schedule, which is what a 20-minute CPU budget allows.  On the
    same cached data, 8 epochs of 64 px crops then 600 whole images took the validation AUROC
    from 0.916 (0.935 with averaged weights) to 0.954, and 0.951 with another seed; in the
    20-minute recipe of the model card, over two seeds each, F1 went from 0.918-0.935 to
    0.933-0.948.  At run time it costs one elementwise Add per block.
    """

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = _cbr(channels, channels, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LocalContrast(nn.Module):
    """Appends each pixel's contrast to its neighbourhood: (x - local mean) / local texture std.

    A scratch is visible by its contrast *relative to the surface's texture*, and texture
    strength varies ~10x between parts (faint or deep brushing, fine or coarse grain) and with
    the light.  A small ReLU network cannot divide, so without this it must learn one detector
    per texture strength; with it, a defect at a given visibility looks the same on every
    surface.  At equal training steps it took the validation AUROC of a short run from 0.922 to
    0.950 (metal 0.85 -> 0.90).  The raw channels are kept beside the normalised ones: dents and
    spots are low-frequency shading that the local mean would subtract away.

    The local statistics are smooth, so they are taken at half resolution: 2x2 means, a
    ``window`` x ``window`` box over them (``2 * window`` input pixels) averaged over its part
    inside the image, and a bilinear upsampling back.  Only the difference ``x - mean`` and its
    square are formed at full resolution, so a 1 px line still counts in the texture's std.
    This takes the front end from 3.1 to 1.9 ms per 256x256 frame on one core in ONNX Runtime,
    and every step is a plain AveragePool, Resize or elementwise op for TensorRT.  Training
    computes the same channels with OpenCV, once per whole image (``contrast_of`` in
    training/visual/data.py), so a crop sees what the whole frame gives at run time.
    ``floor`` (in normalised input units; 0.06 = ~4 grey levels) keeps flat painted surfaces
    from having their sensor noise blown up.  Runs in float32 even under autocast: bfloat16's
    8-bit mantissa is too coarse for a difference of nearby means.  Height and width must be even.
    """

    def __init__(self, window: int = 7, floor: float = 0.06) -> None:
        super().__init__()
        self.window, self.floor = window, floor

    def _box(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the part of a ``window`` x ``window`` box inside the (half-resolution) image."""
        return F.avg_pool2d(x, self.window, 1, self.window // 2, count_include_pad=False)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        """Half resolution back to full, bilinear on the half-pixel grid."""
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # the input itself is always float32
            centred = x - self._up(self._box(F.avg_pool2d(x, 2)))
            energy = F.avg_pool2d(centred * centred, 2).mean(1, keepdim=True)
            scale = self._up(1.0 / torch.sqrt(self._box(energy) + self.floor**2))
            return torch.cat([x, centred * scale], 1)


class VisualNet(nn.Module):
    """Local-contrast front end, then a 3x3 conv stack to 1/8 resolution (with ``arch="residual"``
    its stride-1 blocks add their input back); heatmap = 1x1 conv; class head on pooled features.

    Only Conv/ReLU/pooling/concat/Gemm/sigmoid/softmax plus the residual Adds and the front end's
    AveragePool, Resize, elementwise Sub/Mul/Add/Sqrt/Reciprocal and a channel ReduceMean, so
    TensorRT takes it as is.  Three
    convolutions run at 1/4 resolution, where a 1-3 px scratch is still a line: depth there is
    what tells a scratch from the grain of brushed metal or cast (adding the third, together
    with training on more metal and cast, took the image AUROC from 0.966 to 0.980).  Dilated
    convolutions at 1/8 widen the receptive field without more downsampling, which keeps the
    32x32 heatmap aligned with the image.
    """

    def __init__(self, num_classes: int = len(LABELS), arch: str = "plain") -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
        block = Residual if arch == "residual" else (lambda c, dilation=1: _cbr(c, c, dilation=dilation))
        self.contrast = LocalContrast()
        self.features = nn.Sequential(
            _cbr(6, 16, 2), _cbr(16, 32, 2), block(32), block(32), _cbr(32, 64, 2),
            block(64), block(64, dilation=2), block(64, dilation=4),
        )
        self.heat = nn.Conv2d(64, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(64 * 2 + 2, 64), nn.ReLU(inplace=True), nn.Linear(64, num_classes))

    def forward_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logits_from_contrast(self.contrast(x))

    def logits_from_contrast(self, x6: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and heatmap logits from the front end's 6 channels (training precomputes them)."""
        f = self.features(x6)
        heat = self.heat(f)
        pooled = torch.cat(
            [F.adaptive_avg_pool2d(f, 1), F.adaptive_max_pool2d(f, 1),
             F.adaptive_avg_pool2d(heat, 1), F.adaptive_max_pool2d(heat, 1)], dim=1,
        ).flatten(1)
        return self.classifier(pooled), heat

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, heat = self.forward_logits(x)
        return torch.softmax(logits, dim=1), torch.sigmoid(heat)


def fold_batchnorm(model: VisualNet) -> VisualNet:
    """Fold every BatchNorm into the preceding conv (export wants Conv+ReLU only)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for block in model.features:
        layers = block.body if isinstance(block, Residual) else block
        layers[0] = fuse_conv_bn_eval(layers[0], layers[1])
        layers[1] = nn.Identity()
    return model
