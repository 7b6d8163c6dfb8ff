"""The acoustic classifier's network: a per-frame front end and a GRU, exported as a chunk model.

No layer looks across frames except the GRU, so a stream is processed in chunks with only the GRU
state carried (``h_in``/``h_out``): what lets the daemon score live audio 10 ms at a time and
``inspect`` score whole files with the same graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class AcousticGRU(nn.Module):
    """Per-frame MLP front-end (no temporal context), GRU, per-frame linear head."""

    def __init__(self, n_mels: int, hidden: int, layers: int, n_classes: int) -> None:
        super().__init__()
        self.front = nn.Sequential(nn.Linear(n_mels, 96), nn.ReLU(), nn.Linear(96, hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, mel: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, h_out = self.gru(self.front(mel), h)
        return self.head(y), h_out


class Exported(nn.Module):
    """What ships: softmax probabilities and the carried state."""

    def __init__(self, net: AcousticGRU) -> None:
        super().__init__()
        self.net = net

    def forward(self, mel: torch.Tensor, h_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, h_out = self.net(mel, h_in)
        return torch.softmax(logits, dim=-1), h_out


def export_onnx(net: AcousticGRU, path: Path, n_mels: int) -> float:
    """Export the chunk model (opset 17, dynamic N and T); return max |ORT - torch|."""
    import onnxruntime as ort

    net.eval()
    model = Exported(net).eval()
    layers, hidden = net.gru.num_layers, net.gru.hidden_size
    mel = torch.randn(2, 50, n_mels)
    h = torch.zeros(layers, 2, hidden)
    torch.onnx.export(
        model,
        (mel, h),
        str(path),
        input_names=["mel", "h_in"],
        output_names=["probs", "h_out"],
        dynamic_axes={"mel": {0: "N", 1: "T"}, "h_in": {1: "N"}, "probs": {0: "N", 1: "T"}, "h_out": {1: "N"}},
        opset_version=17,
        dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    rng = np.random.default_rng(0)
    for n, t in ((1, 50), (3, 123), (2, 7)):
        m = rng.standard_normal((n, t, n_mels)).astype(np.float32)
        hh = (0.5 * rng.standard_normal((layers, n, hidden))).astype(np.float32)
        with torch.no_grad():
            p_t, h_t = model(torch.from_numpy(m), torch.from_numpy(hh))
        p_o, h_o = sess.run(["probs", "h_out"], {"mel": m, "h_in": hh})
        worst = max(worst, float(np.abs(p_o - p_t.numpy()).max()), float(np.abs(h_o - h_t.numpy()).max()))
    if worst > 1e-4:
        raise SystemExit(f"ONNX Runtime differs from torch by {worst:.2e} (> 1e-4)")
    return worst
