"""The visual defect CNN (PyTorch, training only): its layers and BatchNorm folding for export."""

from __future__ import annotations

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


class VisualNet(nn.Module):
    """Plain 3x3 conv stack to 1/8 resolution; heatmap = 1x1 conv; class head on pooled features.

    Only Conv/ReLU/pooling/concat/Gemm/sigmoid/softmax, so TensorRT takes it as is.  Three
    convolutions run at 1/4 resolution, where a 1-3 px scratch is still a line: depth there is
    what tells a scratch from the grain of brushed metal or cast (adding the third, together
    with training on more metal and cast, took the image AUROC from 0.966 to 0.980).  Dilated
    convolutions at 1/8 widen the receptive field without more downsampling, which keeps the
    32x32 heatmap aligned with the image.
    """

    def __init__(self, num_classes: int = len(LABELS)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _cbr(3, 16, 2), _cbr(16, 32, 2), _cbr(32, 32), _cbr(32, 32), _cbr(32, 64, 2),
            _cbr(64, 64), _cbr(64, 64, dilation=2), _cbr(64, 64, dilation=4),
        )
        self.heat = nn.Conv2d(64, 1, 1)
        self.classifier = nn.Sequential(nn.Linear(64 * 2 + 2, 64), nn.ReLU(inplace=True), nn.Linear(64, num_classes))

    def forward_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
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
