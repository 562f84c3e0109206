"""The voice-to-lips net (torch, training and export only): per 10 ms, a log-mel frame (normalised on its own,
its loudness, and the frame against its bands' running means) -> 2-layer GRU (state carried across hops) ->
the lip features of LOOKAHEAD hops ago. In training only, a second head says which visemes the mouth is
blending at that time (the corpus's dominance weights): a phonetic lesson for the GRU, which the lips alone
teach slowly (many phones share a mouth opening). Recurrent state is an explicit input and output, as in the
enhancer, so ONNX runs it hop by hop."""

from __future__ import annotations

import torch
from torch import nn

from avcall.pipelines.face.phonemes import VISEMES
from avcall.pipelines.nets.sync_features import N_MELS
from avcall.pipelines.nets.voice_to_lips import IN_DIM, OUT_DIM


class VoiceToLips(nn.Module):
    def __init__(self, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.norm = nn.LayerNorm(N_MELS)
        self.inp = nn.Sequential(nn.Linear(IN_DIM + 1, hidden), nn.PReLU())
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, OUT_DIM)
        self.visemes = nn.Linear(hidden, len(VISEMES))  # training only; not in the ONNX graph

    def initial_state(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(self.layers, batch, self.hidden)

    def forward(self, feats: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, IN_DIM): raw log-mel, then the same minus its running band means (features.BandMean);
        state (layers, B, hidden) -> lips (B, T, OUT_DIM), state."""
        y, state = self.hidden_states(feats, state)
        return self.out(y), state

    def hidden_states(self, feats: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel, relative = feats[..., :N_MELS], feats[..., N_MELS:]
        level = mel.mean(-1, keepdim=True) / 10.0  # loudness matters for how wide a mouth opens
        x = self.inp(torch.cat([self.norm(mel), level, relative / 5.0], -1))
        return self.gru(x, state)

    def lips_and_visemes(self, feats: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, _ = self.hidden_states(feats, state)
        return self.out(y), self.visemes(y)
