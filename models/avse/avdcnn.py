"""AVDCNN (Hou et al. 2018), the seed baseline: an audio CNN stream over a few spectral frames and a visual
stream over the lips, fused by concatenation, fully connected layers, and two heads (multi-task): the clean
log power spectrum and the lip features, trained with MSE on both.

Adapted to this project: the visual stream reads the tracker's lip features (the normalised 40-point shape,
opening, width) instead of mouth pixels, and the spectral context is causal (the current and 4 past frames)
so it can run live; the past frames are the recurrent state, so it exports and streams like the enhancer.
"""

from __future__ import annotations

import torch
from torch import nn

from avcall.pipelines.nets.enhancer_features import LIP_DIM, N_FREQ
from .model import MASK_MAX

CONTEXT = 5


class AVDCNN(nn.Module):
    use_lips = True

    def __init__(self, hidden: int = 512) -> None:
        super().__init__()
        self.state_dim = (CONTEXT - 1) * (N_FREQ + LIP_DIM)
        self.audio = nn.Sequential(nn.Conv1d(CONTEXT, 12, 5, padding=2), nn.ReLU(), nn.Conv1d(12, 12, 5, stride=2, padding=2),
                                   nn.ReLU(), nn.Flatten())
        self.visual = nn.Sequential(nn.Linear(CONTEXT * LIP_DIM, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())
        audio_out = 12 * ((N_FREQ + 1) // 2)
        self.fused = nn.Sequential(nn.Linear(audio_out + 128, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.spec_head = nn.Linear(hidden, N_FREQ)
        self.lip_head = nn.Linear(hidden, LIP_DIM)

    def initial_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(1, batch, self.state_dim)

    def heads(self, logpow: torch.Tensor, lips: torch.Tensor, state: torch.Tensor):
        b, t, _ = logpow.shape
        past = state[0].reshape(b, CONTEXT - 1, N_FREQ + LIP_DIM)
        frames = torch.cat([past, torch.cat([logpow, lips], dim=-1)], dim=1)  # (B, CONTEXT-1+T, F+L)
        # (B, T, CONTEXT, F+L): frame t with its CONTEXT-1 predecessors (slices, not unfold: ONNX-exportable)
        windows = torch.stack([frames[:, i:i + t] for i in range(CONTEXT)], dim=2)
        a = windows[..., :N_FREQ].reshape(b * t, CONTEXT, N_FREQ)
        v = windows[..., N_FREQ:].reshape(b * t, CONTEXT * LIP_DIM)
        h = self.fused(torch.cat([self.audio(a), self.visual(v)], dim=-1))
        new_state = frames[:, -(CONTEXT - 1):].reshape(1, b, -1)
        return self.spec_head(h).reshape(b, t, N_FREQ), self.lip_head(h).reshape(b, t, LIP_DIM), new_state

    def forward(self, logpow: torch.Tensor, lips: torch.Tensor, state: torch.Tensor):
        clean_logpow, _, new_state = self.heads(logpow, lips, state)
        mask = torch.clamp(torch.exp(0.5 * (clean_logpow - logpow)), 0.0, MASK_MAX)
        return mask, new_state

    def multitask_loss(self, logpow: torch.Tensor, lips: torch.Tensor, clean_logpow: torch.Tensor) -> torch.Tensor:
        pred_spec, pred_lips, _ = self.heads(logpow, lips, self.initial_state(logpow.shape[0]).to(logpow.device))
        return nn.functional.mse_loss(pred_spec, clean_logpow) + nn.functional.mse_loss(pred_lips, lips)
