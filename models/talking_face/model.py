"""The voice-to-lips net (torch, training and export only): per 10 ms, a log-mel frame normalised on its own
-> 2-layer GRU (state carried across hops) -> the lip features of LOOKAHEAD hops ago. Recurrent state is an
explicit input and output, as in the enhancer, so ONNX runs it hop by hop."""

from __future__ import annotations

import torch
from torch import nn

from ..sync.features import N_MELS
from .features import OUT_DIM


class VoiceToLips(nn.Module):
    def __init__(self, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.norm = nn.LayerNorm(N_MELS)
        self.inp = nn.Sequential(nn.Linear(N_MELS + 1, hidden), nn.PReLU())
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, OUT_DIM)

    def initial_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def forward(self, mel: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, T, N_MELS) raw log-mel, state (layers, B, hidden) -> lips (B, T, OUT_DIM), state."""
        level = mel.mean(-1, keepdim=True) / 10.0  # loudness matters for how wide a mouth opens
        x = self.inp(torch.cat([self.norm(mel), level], -1))
        y, state = self.gru(x, state)
        return self.out(y), state
