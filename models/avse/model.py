"""The avcall enhancer: a causal recurrent mask estimator over the mixture's spectrum, fused with the lips.

Per 10 ms hop: log power spectrum (161 bins), normalised across frequency (level-invariant, causal),
-> linear encoder; lip stream (83) -> small MLP; concatenated -> 2-layer GRU (state carried across hops)
-> a magnitude mask in [0, 1.2] for the mixture's STFT. The audio-only twin is the same network without
the lip branch. Recurrent state is an explicit input and output, so ONNX runs it hop by hop.
"""

from __future__ import annotations

import torch
from torch import nn

from avcall.pipelines.nets.enhancer_features import LIP_DIM, N_FREQ

MASK_MAX = 1.2


class Enhancer(nn.Module):
    def __init__(self, use_lips: bool = True, hidden: int = 256, lip_hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        self.use_lips = use_lips
        self.hidden, self.layers = hidden, layers
        self.norm = nn.LayerNorm(N_FREQ)
        self.audio_in = nn.Sequential(nn.Linear(N_FREQ, hidden), nn.PReLU())
        fused = hidden
        if use_lips:
            self.lip_in = nn.Sequential(nn.Linear(LIP_DIM, lip_hidden), nn.PReLU(), nn.Linear(lip_hidden, lip_hidden),
                                        nn.PReLU())
            fused += lip_hidden
        self.gru = nn.GRU(fused, hidden, num_layers=layers, batch_first=True)
        self.mask_out = nn.Linear(hidden, N_FREQ)

    def initial_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def forward(self, logpow: torch.Tensor, lips: torch.Tensor | None, state: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """logpow (B, T, N_FREQ), lips (B, T, LIP_DIM) or None, state (layers, B, hidden) ->
        mask (B, T, N_FREQ), new state."""
        x = self.audio_in(self.norm(logpow))
        if self.use_lips:
            x = torch.cat([x, self.lip_in(lips)], dim=-1)
        y, state = self.gru(x, state)
        return MASK_MAX * torch.sigmoid(self.mask_out(y)), state
