"""The sync judge's two encoders (torch, training and export only): lips window -> 64-d unit vector,
voice window -> 64-d unit vector; in sync, the two point the same way."""

from __future__ import annotations

import torch
from torch import nn

from avcall.pipelines.nets.sync_features import AUDIO_PER_VIDEO, LIP_DIM, N_MELS, WINDOW

EMBED = 64


class LipEncoder(nn.Module):
    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(LIP_DIM, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(width, width, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(width * WINDOW, EMBED))

    def forward(self, lips: torch.Tensor) -> torch.Tensor:  # (B, LIP_DIM, WINDOW)
        return nn.functional.normalize(self.net(lips), dim=-1)


class AudioEncoder(nn.Module):
    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(N_MELS, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv1d(width, width, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(width * (WINDOW * AUDIO_PER_VIDEO // 4), EMBED))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # (B, N_MELS, WINDOW * AUDIO_PER_VIDEO)
        return nn.functional.normalize(self.net(mel), dim=-1)
