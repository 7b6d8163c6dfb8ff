"""The visual defect CNN (PyTorch, training only): its layers and BatchNorm folding for export."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edge_inspector.synthetic.surfaces import LABELS


def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class LocalContrast(nn.Module):
    """Appends each pixel's contrast to its neighbourhood: (x - local mean) / local texture std.

    A scratch is visible by its contrast *relative to the surface's texture*, and texture
    strength varies ~10x between parts (faint or deep brushing, fine or coarse grain) and with
    the light.  A small ReLU network cannot divide, so without this it must learn one detector
    per texture strength; with it, a defect at a given visibility looks the same on every
    surface.  At equal training steps it took the validation AUROC of a short run from 0.922 to
    0.950 (metal 0.85 -> 0.90), and with the full recipe the held-out F1 from 0.937 to 0.957.
    The raw channels are kept beside the normalised ones: dents and spots are low-frequency
    shading that the local mean would subtract away.

    The window is a ``size`` x ``size`` box averaged over its part inside the image, so borders
    are local means too.  Training runs it as two depthwise 1-D convolutions, each divided by its
    share of the window inside the image (fast in PyTorch's channels-last memory, where pooling
    is ~10x slower); the exported graph (``pooled = True``) runs the same mean as one
    AveragePool that leaves the padding out, which ONNX Runtime does in half the time of the
    convolutions (the front end 2.3 instead of 4.8 ms per 256x256 frame on one core).
    ``floor`` (in normalised input units; 0.06 = ~4 grey levels) keeps flat painted surfaces
    from having their sensor noise blown up.  Runs in float32 even under autocast: bfloat16's 8-bit mantissa
    is too coarse for a difference of nearby means.
    """

    def __init__(self, channels: int = 3, size: int = 15, floor: float = 0.06) -> None:
        super().__init__()
        self.size, self.floor = size, floor
        # fixed box weights, one set per input width (the channels, and 1 for the variance), so the
        # exported graph holds them as constants rather than slicing one set at run time
        for name, c in (("image", channels), ("grey", 1)):
            self.register_buffer(f"{name}_row", torch.full((c, 1, 1, size), 1.0 / size), persistent=False)
            self.register_buffer(f"{name}_col", torch.full((c, 1, size, 1), 1.0 / size), persistent=False)
        self._shares: dict[int, torch.Tensor] = {}
        self.pooled = False  # export form: see the class docstring

    def _share(self, n: int) -> torch.Tensor:
        """For each of ``n`` positions along an axis, the share of a ``size`` box centred there
        that lies inside the axis."""
        if n not in self._shares:
            p, i = self.size // 2, np.arange(n)
            share = (np.minimum(i + p, n - 1) - np.maximum(i - p, 0) + 1) / self.size
            self._shares[n] = torch.from_numpy(share.astype(np.float32))
        return self._shares[n]

    def _local_mean(self, x: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        """Box mean over the part of the window inside the image (the box is separable, so each
        1-D pass is divided by its own share: two tiny constants, since spatial size is static)."""
        p = self.size // 2
        if self.pooled:
            return F.avg_pool2d(x, self.size, 1, p, count_include_pad=False)
        c, (h, w) = row.shape[0], (int(v) for v in x.shape[2:])
        x = F.conv2d(x, row, padding=(0, p), groups=c) / self._share(w).to(x.device)
        x = F.conv2d(x, col, padding=(p, 0), groups=c)
        return x / self._share(h).to(x.device)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # the input itself is always float32
            centred = x - self._local_mean(x, self.image_row, self.image_col)
            var = self._local_mean((centred * centred).mean(1, keepdim=True), self.grey_row, self.grey_col)
            return torch.cat([x, centred / torch.sqrt(var + self.floor**2)], 1)


class VisualNet(nn.Module):
    """Local-contrast front end, then a plain 3x3 conv stack to 1/8 resolution; heatmap = 1x1
    conv; class head on pooled features.

    Only Conv/ReLU/pooling/concat/Gemm/sigmoid/softmax plus the front end's AveragePool,
    elementwise Sub/Mul/Add/Div/Sqrt and a channel ReduceMean, so TensorRT takes it as is.  Three
    convolutions run at 1/4 resolution, where a 1-3 px scratch is still a line: depth there is
    what tells a scratch from the grain of brushed metal or cast (adding the third, together
    with training on more metal and cast, took the image AUROC from 0.966 to 0.980).  Dilated
    convolutions at 1/8 widen the receptive field without more downsampling, which keeps the
    32x32 heatmap aligned with the image.
    """

    def __init__(self, num_classes: int = len(LABELS)) -> None:
        super().__init__()
        self.contrast = LocalContrast()
        self.features = nn.Sequential(
            _cbr(6, 16, 2), _cbr(16, 32, 2), _cbr(32, 32), _cbr(32, 32), _cbr(32, 64, 2),
            _cbr(64, 64), _cbr(64, 64, dilation=2), _cbr(64, 64, dilation=4),
        )
        self.heat = nn.Conv2d(64, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(64 * 2 + 2, 64), nn.ReLU(inplace=True), nn.Linear(64, num_classes))

    def forward_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(self.contrast(x))
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
        block[0] = fuse_conv_bn_eval(block[0], block[1])
        block[1] = nn.Identity()
    return model
