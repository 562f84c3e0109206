"""The lip-guided target-talker extractor at run time (numpy + onnxruntime, no torch): it runs after the noise
suppressor and keeps, of two voices, the one whose lips are on screen.

Two designs behind one streaming interface (`push(hop, lips) -> hop`, 10 ms in, 10 ms out, state per stream):
- `separate` (design 1): a causal two-speaker separator (models/tse) splits the hop into two streams; the sync
  judge embeds the face's lips and each stream's voice every 40 ms, and the stream whose voice lies nearer the
  lips gathers evidence (a leaky sum of the distance difference); it is selected once the evidence passes
  SWITCH, and kept until the other one's does (hysteresis).
- `lips` (design 2): the same separator conditioned on the judge's lip embedding; its stream 0 is the face's voice.

Latency, counted honestly: the separator's frames are 5 ms and never overlap, two per 10 ms hop, and its
convolutions look only back, so the hop that comes in is the hop that goes out: the extractor adds no delay and
no look-ahead to the suppressor's (DTLN: 30 ms of delay + the 10 ms hop = 40 ms, the chain stays at 40 ms). The
judge's windows (5 video frames, 0.2 s) are taken wholly in the past: they delay the *decision* (which stream,
about 0.1 s behind the lips and then the evidence's time constant), never the audio.

Fallback: no face on the current video frame, no decision yet, or one talker (the weaker stream more than
`single_db` under the stronger over the last ~0.5 s, or the two streams' loudness rising and falling together:
one voice split in two): the suppressor's output as it came in. Every change (in
or out of extraction, or from one stream to the other) is a linear crossfade of FADE samples; the two streams
add up to the input (mixture consistency), so the crossfades never jump in level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .frames import HOP_SAMPLES as HOP, SAMPLE_RATE

VIDEO_FRAME = 640  # samples per 40 ms: the judge's 25 fps grid, on the audio clock
FADE = 320  # 20 ms crossfades
SEPARATOR = {"separate": "tse_sep.onnx", "lips": "tse_lips.onnx"}


@dataclass
class Tuning:
    leak: float = 0.9  # evidence kept per 40 ms (time constant 0.4 s)
    switch: float = 0.25  # evidence that selects a stream
    single_db: float = -15.0  # weaker stream under the stronger by more than this: one talker
    level_leak: float = 0.98  # per hop (0.5 s) for the stream levels
    split_corr: float = 0.8  # the streams' loudness (dB per hop) correlated above this: one voice split in two
    corr_leak: float = 0.99  # per hop (1 s) for that correlation


class _Norm:
    """Running per-band mean and spread (the judge standardises each clip; live there is no whole clip)."""

    def __init__(self, bands: int, leak: float = 0.995) -> None:
        self.leak, self.n = leak, 0
        self.mean = np.zeros(bands)
        self.var = np.ones(bands)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        for r in rows:
            if self.n == 0:
                self.mean[:] = r
                self.var[:] = 1.0
            else:
                k = max(1.0 - self.leak, 1.0 / (self.n + 1))
                d = r - self.mean
                self.mean += k * d
                self.var = (1 - k) * (self.var + k * d * d)
            self.n += 1
        return ((rows - self.mean) / (np.sqrt(self.var) + 1e-3)).astype(np.float32)


def lip_row(shape: np.ndarray, opening: float, width: float) -> np.ndarray:
    return np.concatenate([np.asarray(shape, np.float32).reshape(-1), [opening, width]]).astype(np.float32)


class _LipStream:
    """Lip rows on the 25 fps grid, minus the running mean of the mouth so far (the judge's lip_frames subtracts
    the clip's mean), and the judge's embedding of the last 5 grid frames."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray | None] = []
        self.sum, self.count = None, 0

    def add(self, row: np.ndarray | None) -> None:
        if row is not None:
            self.sum = row.astype(np.float64) if self.sum is None else self.sum + row
            self.count += 1
            row = ((row - self.sum / self.count) * 20.0).astype(np.float32)
        self.rows.append(row)

    def window(self) -> np.ndarray | None:
        from avcall.pipelines.nets.sync_features import WINDOW

        last = self.rows[-WINDOW:]
        if len(last) < WINDOW or any(r is None for r in last):
            return None
        return np.stack(last).T[None]  # (1, LIP_DIM, WINDOW)


class TargetTalker:
    """One stream's extractor. `push(hop, lips)`: `lips` is the face's latest lip row (lip_row) seen by the end
    of this hop, or None when there is no face; returns the hop, extracted or as it came."""

    def __init__(self, design: str = "separate", weights: str | Path | None = None, judge=None,
                 tuning: Tuning | None = None, use_lips: bool = True) -> None:
        from avcall.pipelines.runtime import create_session, require_weights
        from avcall.pipelines.nets.sync_judge import SyncJudge

        self.design = design
        self.session = create_session(weights or require_weights(SEPARATOR[design]), threads=1)
        self.judge = judge or SyncJudge()
        self.tuning = tuning or Tuning()
        self.use_lips = use_lips
        shape = self.session.get_inputs()[1].shape
        self._state_shape = (1, int(shape[1]), int(shape[2]))
        self.reset()

    def reset(self) -> None:
        from avcall.pipelines.nets.sync_features import N_MELS

        self.state = np.zeros(self._state_shape, np.float32)
        self.t = 0  # samples pushed
        self.grid = 0  # next 25 fps grid frame to take lips for
        self.judged = 0  # next grid frame to judge
        self.lips = _LipStream()
        self.lip_emb: dict[int, np.ndarray] = {}
        self.hist = np.zeros((2, 0), np.float32)  # the streams' recent samples
        self.hist_at = 0  # sample index of hist[:, 0]
        self.norms = [_Norm(N_MELS), _Norm(N_MELS)]
        self.evidence = 0.0
        self.selected: int | None = None
        self.level = np.zeros(2)
        self.env = np.zeros(5)  # running mean of e0, e1, e0^2, e1^2, e0*e1 (loudness in dB per hop)
        self.env_n = 0
        self.wet = 0.0  # 0 = the input as it came, 1 = the selected stream
        self.weights = np.array([0.5, 0.5])  # per-stream weights while extracting
        self.face = False

    # ------------------------------------------------------------------------------ one hop
    def push(self, hop: np.ndarray, lips: np.ndarray | None) -> np.ndarray:
        hop = np.asarray(hop, np.float32).reshape(-1)
        if len(hop) != HOP:
            raise ValueError(f"a hop is {HOP} samples, got {len(hop)}")
        if not self.use_lips and lips is not None:  # the lip stream zeroed, the face still there
            lips = np.zeros_like(lips)
        # lip grid frames whose time has come by the end of this hop (sample-and-hold of the latest row)
        while self.grid * VIDEO_FRAME <= self.t + HOP - 1:
            self.lips.add(lips)
            self.grid += 1
        self.face = lips is not None
        feeds = {"mix": hop[None], "state": self.state}
        if self.design == "lips":
            feeds["lips"] = np.repeat(self._lip_embedding(self.t // VIDEO_FRAME)[None, None], 2, axis=1)
        streams, self.state = self.session.run(None, feeds)
        streams = streams[0]
        self._keep(streams)
        self.t += HOP
        power = np.mean(streams ** 2, axis=1)
        self.level = self.tuning.level_leak * self.level + (1 - self.tuning.level_leak) * power
        e0, e1 = 10 * np.log10(power + 1e-10)
        k = max(1 - self.tuning.corr_leak, 1.0 / (self.env_n + 1))
        self.env += k * (np.array([e0, e1, e0 * e0, e1 * e1, e0 * e1]) - self.env)
        self.env_n += 1
        if self.design == "separate":
            self._judge()
        else:
            self.selected = 0 if self.face else None
        return self._mixdown(hop, streams)

    def _lip_embedding(self, g: int) -> np.ndarray:
        """The judge's lip embedding of grid frames g-4..g (zeros where a frame has no face)."""
        if g in self.lip_emb:
            return self.lip_emb[g]
        rows = self.lips.rows[:g + 1]
        saved, self.lips.rows = self.lips.rows, rows
        w = self.lips.window()
        self.lips.rows = saved
        e = np.zeros(64, np.float32) if w is None else self.judge.lips.run(None, {"lips": w})[0][0]
        self.lip_emb[g] = e
        for old in [k for k in self.lip_emb if k < g - 8]:
            del self.lip_emb[old]
        return e

    def _keep(self, streams: np.ndarray) -> None:
        self.hist = np.concatenate([self.hist, streams], axis=1)
        extra = self.hist.shape[1] - 2 * SAMPLE_RATE // 2
        if extra > 0:
            self.hist = self.hist[:, extra:]
            self.hist_at += extra

    def _judge(self) -> None:
        """Each grid frame g whose audio window is complete: lips of g-4..g against each stream's voice."""
        from avcall.pipelines.nets.sync_features import AUDIO_PER_VIDEO, N_FFT, WINDOW

        tu = self.tuning
        while (self.judged + 1) * VIDEO_FRAME + N_FFT // 2 <= self.t and self.judged < self.grid:
            g = self.judged
            self.judged += 1
            c = g - WINDOW // 2
            if c - WINDOW // 2 < 0:
                continue
            le = self._lip_embedding(g)
            if not le.any():
                self.evidence *= tu.leak
                continue
            first = (c - WINDOW // 2) * AUDIO_PER_VIDEO  # first mel frame
            dist = []
            for k in range(2):
                mel = self._mel(k, first, WINDOW * AUDIO_PER_VIDEO)
                if mel is None:
                    break
                ae = self.judge.audio.run(None, {"mel": mel.T[None]})[0][0]
                dist.append(float(np.linalg.norm(le - ae)))
            if len(dist) < 2:
                continue
            self.evidence = tu.leak * self.evidence + (dist[1] - dist[0])
            if self.evidence > tu.switch:
                self.selected = 0
            elif self.evidence < -tu.switch:
                self.selected = 1

    def _mel(self, k: int, first: int, frames: int) -> np.ndarray | None:
        from avcall.pipelines.nets.spectrum import HOP as MEL_HOP, LIPS_VOICE_MEL, N_FFT

        a = first * MEL_HOP - N_FFT // 2 - self.hist_at
        b = (first + frames - 1) * MEL_HOP + N_FFT // 2 - self.hist_at
        if a < 0 or b > self.hist.shape[1]:
            return None
        x = self.hist[k, a:b]
        idx = np.arange(N_FFT)[None, :] + MEL_HOP * np.arange(frames)[:, None]
        return self.norms[k](LIPS_VOICE_MEL(x[idx]))

    def split(self) -> float:
        """How alike the two streams' loudness moves (the correlation of their dB per hop over about a second):
        two talkers come and go apart; one voice split across both streams rises and falls in both."""
        m0, m1, s00, s11, s01 = self.env
        v0, v1 = s00 - m0 * m0, s11 - m1 * m1
        return float((s01 - m0 * m1) / np.sqrt(v0 * v1)) if v0 > 1e-6 and v1 > 1e-6 else 1.0

    def _mixdown(self, hop: np.ndarray, streams: np.ndarray) -> np.ndarray:
        tu = self.tuning
        strong, weak = max(self.level), min(self.level)
        two = strong > 0 and 10 * np.log10(weak / strong + 1e-12) > tu.single_db and self.split() < tu.split_corr
        extracting = self.face and self.selected is not None and two
        target_w = np.eye(2)[self.selected] if self.selected is not None else self.weights
        ramp = (np.arange(1, HOP + 1) / FADE).astype(np.float32)
        wet_to = 1.0 if extracting else 0.0
        wet = np.clip(self.wet + np.sign(wet_to - self.wet) * ramp, min(self.wet, wet_to), max(self.wet, wet_to))
        w = np.stack([np.clip(self.weights[i] + np.sign(target_w[i] - self.weights[i]) * ramp,
                              min(self.weights[i], target_w[i]), max(self.weights[i], target_w[i])) for i in range(2)])
        self.wet, self.weights = float(wet[-1]), w[:, -1].astype(np.float64)
        chosen = (w * streams).sum(0)
        return ((1 - wet) * hop + wet * chosen).astype(np.float32)

    # ------------------------------------------------------------------------------ a whole clip
    def extract_clip(self, audio: np.ndarray, track=None, audio_offset: float = 0.0) -> np.ndarray:
        """The same `push` in a loop (so the clip and the live path give the same samples); `track` a LipTrack
        whose frame i is at i / fps - audio_offset seconds of audio time. Resets before and after."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        n = len(audio)
        x = np.zeros(-(-n // HOP) * HOP, np.float32)
        x[:n] = audio
        rows = clip_lip_rows(track, audio_offset, len(x) // HOP)
        self.reset()
        out = np.concatenate([self.push(x[i * HOP:(i + 1) * HOP], rows[i]) for i in range(len(x) // HOP)])
        self.reset()
        return out[:n]


def clip_lip_rows(track, audio_offset: float, hops: int) -> list[np.ndarray | None]:
    """For each hop, the lip row of the latest video frame at or before the hop's end (None: no face)."""
    if track is None:
        return [None] * hops
    times = np.arange(len(track.lips)) / track.fps - audio_offset
    out = []
    for i in range(hops):
        end = (i + 1) * HOP / SAMPLE_RATE
        j = int(np.searchsorted(times, end + 1e-9, side="right")) - 1
        if j < 0 or not track.face_present[j]:
            out.append(None)
        else:
            out.append(lip_row(track.lips[j], float(track.opening[j]), float(track.width[j])))
    return out
