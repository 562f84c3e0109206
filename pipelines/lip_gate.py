"""The lip gate: whose voice is heard, decided every 10 ms from the speaker's lips and the voice together.

Every suppressor keeps speech, whoever speaks. The camera tells more: while the user's lips are still, the
voice heard is someone else's. `GateDecision` takes the tracked face's lip features (at the camera's rate)
and the raw voice (10 ms hops) and gives, per hop, a gain: 1 where the voice is the face's, a floor
(FLOOR_DB) where it is not, with ramps in dB between (no clicks).

How it decides:
- No usable face (none, turned away, tracked with low confidence, the camera off or stalled), or a face found
  less than WARM_S ago: open. The gate never mutes a user it cannot see.
- Otherwise a scorer gives per hop the chance that the voice is the face's. What ships is a small net
  (`NetScorer`, pipelines/nets/lip_gate_net.py, `avcall train lip-gate-net`): the lips and the voice themselves
  through a GRU trained on real faces with their voices, which learns when they go together. The first design,
  kept for comparison and where the net does not ship, is a logistic model (`GateScorer`, `avcall train
  lip-gate`) over hand-made features: the lips' motion over the last 120-400 ms against how much this face
  moves, how long they have been still, the mouth's opening, the voice's level and onsets, how the opening
  follows the voice's level, the sync judge's streamed evidence (`SyncEvidence`) and a voice profile the lips
  enrol (`VoiceProfile`).
- The voice comes in segments, each starting at an onset (voice after ONSET_QUIET_S of quiet, or a syllable's
  rise). At an onset the scorer decides whose segment it is: the lips move 100-300 ms before the sound of a
  phrase, so the face's own phrase opens the gate as its sound starts; deciding at the onset, not on the lips
  alone, keeps the end of the other person's turn out (the user's lips start moving before it ends). Within a
  segment the scorer's running mean has to cross the closing (opening) threshold to change it: word endings and
  short pauses pass. A quiet hop closes nothing; a sure one opens the gate ahead of the voice (nothing passes yet).

Its cost: the net's one GRU step and one spectrum a hop (`avcall bench gate`: 0.02 of a core; the logistic
design with the judge's two ONNX runs a video frame, three times that).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .frames import HOP_SAMPLES, SAMPLE_RATE, LipFeatures
from .nets.lip_gate_net import LevelFloor

FLOOR_DB = -30.0
ATTACK_S = 0.01  # closed to open
RELEASE_S = 0.04  # open to closed
ONSET_QUIET_S = 0.08  # quiet before voice that makes it a new segment
HANGOVER_S = 0.2  # the audio-only baseline: open this long after the last voiced hop
FACE_LOST_S = 0.3  # no usable lips for this long: open
WARM_S = 1.0  # a face (found again) is watched this long before the gate may close
MIN_CONFIDENCE = 0.5
VOICE_DB = 9.0  # above the running noise floor
MIN_LEVEL_DB = -60.0
RISE_DB = 6.0
RISE_S = 0.05
MOVING = 0.02  # lip motion per frame that counts as moving
# The scorer's chance at an onset that opens the gate; within a segment, its running mean over which it opens
# and under which it closes; the chance that opens it ahead of a voice, on a quiet hop (the lips lead the sound:
# nothing passes yet, and the phrase's first sound is not cut). Chosen for the user's words first (a gate that
# cuts fewer of them lets more of the other voice through): the net's on the `turns` of av_train's held-out
# speakers, the setting that held the other voice back most (-9.0 dB) among those that cut the least of the
# speakers' own speech (3.2%; lower thresholds cut no less, 2.8% at best, but let the other voice through:
# -5.4 dB); the logistic model's on its training clips.
P_NET = (0.05, 0.2, 0.02, 0.5)
P_LOGISTIC = (0.3, 0.5, 0.2, 1.1)
SEGMENT_ALPHA = 0.1
ENROL_WINDOW, ENROL_MIN, ENROL_RATE = 20, 20, 0.01  # hops: a voice's recent shape, before telling, the profiles' pace
SURE_USER, SURE_OTHER = 0.7, 0.2  # the scorer's probability that enrols a hop into the user's or the others' profile
WEIGHTS = Path(__file__).with_name("lip_gate.json")


@dataclass
class GateState:
    """How the gate stands, for telemetry: `open` and why. Open: "camera off", "no face", "face turned away",
    "lips tracked with low confidence", "face just found", "lips" (the face's voice); closed: "another voice" (its
    onset came with the lips still), "lips still" (they stopped while a voice went on)."""

    open: bool = True
    reason: str = "camera off"


FEATURES = ("motion_120ms", "motion_peak_200ms", "motion_400ms", "motion_over_talking", "opening_over_rest",
            "opening_spread", "voiced", "level_over_floor", "onset", "quiet_before", "lips_still_for", "judge_score",
            "judge_seconds", "opening_follows_voice", "voice_like_user")


class LipMotion:
    """Per video frame: how much the mouth moved since the last frame (opening and shape, inter-ocular units);
    the last few seconds of it."""

    def __init__(self) -> None:
        self.last: LipFeatures | None = None
        self.frames: deque[tuple[float, float, float]] = deque()  # (pts, motion, opening) of the last seconds

    def add(self, f: LipFeatures) -> float:
        motion = 0.0
        if self.last is not None:
            motion = abs(f.opening - self.last.opening) + 2.0 * float(np.mean(np.abs(f.shape - self.last.shape)))
        self.last = f
        self.frames.append((f.pts, motion, f.opening))
        while self.frames and f.pts - self.frames[0][0] > 3.0:
            self.frames.popleft()
        return motion

    def lost(self) -> None:
        self.last = None

    def features(self, t: float) -> list[float]:
        """The lip half of the gate's features at `t` (see FEATURES)."""
        if not self.frames:
            return [0.0] * 6
        pts, motion, opening = (np.array(c) for c in zip(*self.frames))

        def within(s):
            return motion[pts > t - s] if np.any(pts > t - s) else motion[-1:]

        peak = float(within(0.2).max())
        # how much this face moves when it talks: the top of its motion over the last seconds
        talking = float(np.percentile(motion, 90)) if len(motion) >= 10 else peak
        return [float(within(0.12).mean()), peak, float(within(0.4).mean()),
                float(np.log((peak + 1e-3) / (talking + 1e-3))), float(opening[-1] - opening.min()),
                float(opening[-10:].std())]

    def follows(self, levels: deque) -> float:
        """How the mouth's opening follows the voice's level over the last half second: the best correlation at
        a lag of 0-80 ms of the voice behind the lips (0 when there is too little to tell)."""
        if len(self.frames) < 12 or len(levels) < 50:
            return 0.0
        recent = list(self.frames)[-12:]
        pts = np.array([f[0] for f in recent])
        opening = np.array([f[2] for f in recent])
        times, level = np.array([x[0] for x in levels]), np.array([x[1] for x in levels])
        if opening.std() <= 1e-6:
            return 0.0
        at = np.stack([np.interp(pts + lag, times, level) for lag in (0.0, 0.04, 0.08)])
        a = opening - opening.mean()
        b = at - at.mean(axis=1, keepdims=True)
        spread = np.sqrt((a @ a) * np.sum(b * b, axis=1))
        r = np.where(spread > 1e-12, (b @ a) / np.maximum(spread, 1e-12), 0.0)
        return float(max(0.0, r.max()))


class VoiceProfile:
    """Whose voice this sounds like: the lips enrol the user. The spectral shape (40-band log-mel, its mean over
    the bands taken off: loudness does not count) of the hops the gate is sure are the face's goes into the
    user's profile, of those it is sure are another voice into the others'; a hop's voice is then told by
    which profile the last ENROL_WINDOW voiced hops are nearer to (0 until both have ENROL_MIN hops)."""

    def __init__(self) -> None:
        from .nets.spectrum import LIPS_VOICE_MEL, N_FFT

        self.mel, self.n_fft = LIPS_VOICE_MEL, N_FFT
        self.tail = np.zeros(N_FFT, np.float32)
        self.recent: deque[np.ndarray] = deque()  # the last ENROL_WINDOW voiced hops' shapes
        self.recent_sum = np.zeros(40)
        self.profiles = {True: np.zeros(40), False: np.zeros(40)}  # the user's (True), the others' (False)
        self.counts = {True: 0, False: 0}

    def hear(self, samples: np.ndarray, voiced: bool) -> np.ndarray | None:
        """The hop's spectral shape (None when not voiced)."""
        self.tail = np.concatenate([self.tail, samples])[-self.n_fft:]
        if not voiced:
            return None
        shape = self.mel(self.tail[None])[0].astype(np.float64)
        shape -= shape.mean()
        self.recent.append(shape)
        self.recent_sum += shape
        if len(self.recent) > ENROL_WINDOW:
            self.recent_sum -= self.recent.popleft()
        return shape

    def enrol(self, shape: np.ndarray, user: bool) -> None:
        self.counts[user] += 1
        rate = max(1.0 / self.counts[user], ENROL_RATE)
        self.profiles[user] += rate * (shape - self.profiles[user])

    def likeness(self) -> float:
        """How much nearer the recent voice is to the user's profile than to the others' (0: cannot tell)."""
        if min(self.counts.values()) < ENROL_MIN or not self.recent:
            return 0.0
        recent = self.recent_sum / len(self.recent)
        return float(np.linalg.norm(recent - self.profiles[False]) - np.linalg.norm(recent - self.profiles[True]))


class GateScorer:
    """Whether the voice of this hop is the face's: a logistic model over FEATURES (lip motion, the voice's
    activity, the judge), standardised; its weights are in lip_gate.json, trained on `turns` examples built from
    ../shared/data/av_train (see `avcall train lip-gate`)."""

    def __init__(self, path: Path | None = None, spec: dict | None = None) -> None:
        spec = spec or json.loads((path or WEIGHTS).read_text())
        self.n = len(spec["features"])  # a scorer of the first n FEATURES (its training's first stage)
        if tuple(spec["features"]) != FEATURES[:self.n]:
            raise ValueError(f"{path or WEIGHTS}: made for other features ({spec['features']})")
        self.mean, self.scale = np.array(spec["mean"]), np.array(spec["scale"])
        self.weights, self.bias = np.array(spec["weights"]), float(spec["bias"])
        self.spec = spec

    @staticmethod
    def transform(x: np.ndarray) -> np.ndarray:
        """Motions on a log scale (they spread over decades); openings in tenths."""
        x = np.array(x, np.float64)
        x[..., :3] = np.log(x[..., :3] + 1e-3)
        x[..., 4:6] = x[..., 4:6] * 10
        return x

    def __call__(self, x: list[float]) -> float:
        z = (self.transform(x[:self.n]) - self.mean) / self.scale
        return float(1 / (1 + np.exp(-(z @ self.weights + self.bias))))


class NetScorer:
    """The net's chance per hop that the voice is the face's (pipelines/nets/lip_gate_net.py): it sees the lips
    and the voice themselves, every hop, and keeps its own state; no sync judge, no hand-made features."""

    def __init__(self, net=None) -> None:
        from .nets.lip_gate_net import GateInputs, LipGateNet

        self.net = net or LipGateNet()
        self.inputs = GateInputs()
        self.state = self.net.new_state()

    def lips(self, f: LipFeatures | None) -> None:
        self.inputs.lips(f)

    def hop(self, samples: np.ndarray, over_floor_db: float) -> float:
        p, self.state = self.net.step(self.inputs.hop(samples, over_floor_db)[None], self.state)
        return float(p[0])


def default_scorer() -> "NetScorer | GateScorer":
    """The net where it ships (the second design; docs/lip_gate.md says why it ships), else the logistic model."""
    from .features import available

    return NetScorer() if available("lip_gate_net") else GateScorer()


class GateDecision:
    """Per hop: `push_lips(features, usable)` as frames come, `gain(samples, t)` for each 10 ms of raw voice
    (its time `t` in seconds) -> HOP_SAMPLES gains. `scorer`: the net (`NetScorer`, which needs no judge) or the
    logistic model (`GateScorer`, with the judge's evidence when `judge` is given); default `default_scorer()`."""

    def __init__(self, judge=None, scorer: "NetScorer | GateScorer | None" = None, *, floor_db: float = FLOOR_DB,
                 audio_only: bool = False) -> None:
        self.scorer = scorer or (None if audio_only else default_scorer())
        self.net = isinstance(self.scorer, NetScorer)
        self.judge = None if self.net else judge  # a SyncEvidence or None (the net needs none)
        # the baseline that hears speech, not whose: open while there is voice (and a hangover after it)
        self.audio_only = audio_only
        self.floor = 10 ** (floor_db / 20)
        self.motion = LipMotion()
        self.state = GateState()
        self.off = False  # switched off: the gains ramp up to 1 and stay there (the decision still runs)
        self.level_floor = LevelFloor()
        self.quiet_s = 1.0  # quiet before the current hop
        self.face_at = -1e9  # pts of the last usable lips
        self.frame_at = -1e9  # pts of the last video frame's lips, usable or not
        self.unusable: str | None = "no face"  # why the last frame's lips were not usable
        self.face_since: float | None = None  # pts of the first usable lips since the face was last lost
        self.moved_at = -1e9  # pts of the last lips that moved
        self.levels: deque[float] = deque(maxlen=round(RISE_S * SAMPLE_RATE / HOP_SAMPLES))
        self.voice_levels: deque[tuple[float, float]] = deque(maxlen=60)  # (t, dB over the floor) of the last hops
        self.voice_at = -1e9  # the last voiced hop (audio_only)
        self.voice = VoiceProfile()
        self._lips_at = None  # the lip frame the lips' part of the features is of
        self._lips_part: tuple[list[float], list[float]] = ([], [])
        self.segment_p = 0.5  # the scorer's running mean over the current voice segment
        self.p = 0.5  # the scorer's last probability that the voice is the face's
        self.features: list[float] = []
        self._gain = 1.0

    # --- inputs ---------------------------------------------------------------------------------------
    def push_lips(self, f: LipFeatures, usable: bool = True) -> None:
        """A video frame's lips; `usable` False for a face turned away (the stage judges the pose)."""
        self.frame_at = f.pts
        if not f.present:
            self.unusable = "no face"
        elif not usable:
            self.unusable = "face turned away"
        elif f.confidence < MIN_CONFIDENCE:
            self.unusable = "lips tracked with low confidence"
        else:
            self.unusable = None
        if self.net:
            self.scorer.lips(None if self.unusable else f)
        if self.unusable:
            self.motion.lost()
            return
        if self.motion.add(f) >= MOVING:
            self.moved_at = f.pts
        if self.face_since is None:
            self.face_since = f.pts
        self.face_at = f.pts
        if self.judge is not None:
            self.judge.push_lips(f)

    def gain(self, samples: np.ndarray, t: float) -> np.ndarray:
        voiced, onset, level = self._voiced(samples)
        if self.net:  # every hop, whatever the face: the net's state follows the call
            self.p = self.scorer.hop(samples, level)
        self.voice_levels.append((t, max(level, 0.0)))
        shape = None if self.net else self.voice.hear(samples, voiced)
        if self.judge is not None:
            self.judge.push_audio(samples, t, voiced)
        if self.audio_only:
            self.voice_at = t if voiced else self.voice_at
            self.state.open = t - self.voice_at <= HANGOVER_S
            self.state.reason = "voice" if self.state.open else "no voice"
        elif t - self.face_at > FACE_LOST_S:  # why: what the last frames said, or none came (the camera off)
            self.state.open = True
            self.state.reason = self.unusable if t - self.frame_at <= FACE_LOST_S else "camera off"
            self.face_since = None
        elif self.face_since is None or t - self.face_since < WARM_S:  # a face just found: its lips' motion is
            # not known yet (None: the face was taken for lost by a hop later than this one: a live call's hop
            # times follow the packets' arrival, re-anchored forward or back after a stall, audio.HopChunker)
            self.state.open, self.state.reason = True, "face just found"
        elif self.net:
            self._decide(voiced, onset, P_NET)
        else:
            if self._lips_at != self.face_at:  # the lips' part once per video frame: they change no faster
                self._lips_at = self.face_at
                score, seconds = self.judge.score(t) if self.judge is not None else (0.0, 0.0)
                self._lips_part = (self.motion.features(t), [score, seconds, self.motion.follows(self.voice_levels)])
            motion, judged = self._lips_part
            self.features = [*motion, float(voiced), min(level, 40.0) / 40.0, float(onset), min(self.quiet_s, 1.0),
                             min(t - self.moved_at, 1.0), *judged, self.voice.likeness()]
            self.p = self.scorer(self.features)
            if shape is not None and (self.p >= SURE_USER or self.p <= SURE_OTHER):
                self.voice.enrol(shape, self.p >= SURE_USER)
            self._decide(voiced, onset, P_LOGISTIC)
        self.quiet_s = 0.0 if voiced else self.quiet_s + HOP_SAMPLES / SAMPLE_RATE
        return self._ramp(1.0 if self.state.open or self.off else self.floor)

    def _ramp(self, target: float) -> np.ndarray:
        """One hop of gains towards `target`, in dB (equal loudness steps): no click at either end."""
        if self._gain == target:  # steady, as most hops are
            return np.full(HOP_SAMPLES, target, np.float32)
        step = HOP_SAMPLES / SAMPLE_RATE / (ATTACK_S if target > self._gain else RELEASE_S) * -FLOOR_DB
        g0 = 20 * np.log10(self._gain)
        g1 = float(np.clip(20 * np.log10(target), g0 - step, g0 + step))
        ramp = 10 ** (np.linspace(g0, g1, HOP_SAMPLES + 1)[1:] / 20)
        self._gain = float(ramp[-1])
        return ramp.astype(np.float32)

    # --- the decision ---------------------------------------------------------------------------------
    def _voiced(self, samples: np.ndarray) -> tuple[bool, bool, float]:
        """(voiced, onset, dB over the floor): the hop's level over the running noise floor, and whether a voice
        starts here: after ONSET_QUIET_S of quiet, or a syllable's rise of RISE_DB within RISE_S."""
        level, over = self.level_floor(samples)
        voiced = over > VOICE_DB and level > MIN_LEVEL_DB
        rise = level - min(self.levels, default=level)
        self.levels.append(level)
        onset = voiced and (self.quiet_s >= ONSET_QUIET_S or rise >= RISE_DB)
        return voiced, onset, over

    def _decide(self, voiced: bool, onset: bool, thresholds: tuple[float, ...]) -> None:
        """At an onset the scorer decides whose voice starts; within a segment its running mean (over about
        1 / SEGMENT_ALPHA hops) must fall under the closing threshold to close the gate, or rise over the opening
        one to open it; a quiet hop closes nothing, and opens the gate when the scorer is sure (`thresholds`:
        P_NET or P_LOGISTIC)."""
        s = self.state
        p_onset, p_open, p_close, p_ahead = thresholds
        if not voiced:
            if not s.open and self.p >= p_ahead:
                s.open, s.reason = True, "lips"
            return
        if onset:
            self.segment_p = self.p
            mine = self.p >= p_onset
            s.open, s.reason = mine, ("lips" if mine else "another voice")
            return
        self.segment_p += SEGMENT_ALPHA * (self.p - self.segment_p)
        if s.open and self.segment_p < p_close:
            s.open, s.reason = False, "lips still"
        elif not s.open and self.segment_p > p_open:
            s.open, s.reason = True, "lips"


JUDGE_SPAN_S = 1.0  # the judge's evidence: the last second of lips and voice
NEAR = 2  # frames of offset the voice may be off the lips and still be in sync (camera and microphone paths)


class SyncEvidence:
    """The sync judge, streamed: per video frame one embedding of the lips (its 5-frame window) and one of the
    voice over the same 0.2 s; the score over the last JUDGE_SPAN_S is how much closer the lips are to the voice
    in sync (within NEAR frames) than 3-10 frames off it, the speaking score of `SyncJudge`, kept causal."""

    def __init__(self, judge) -> None:
        from .nets.spectrum import LIPS_VOICE_MEL, N_FFT

        self.judge, self.mel, self.n_fft = judge, LIPS_VOICE_MEL, N_FFT
        self.audio = np.zeros(0, np.float32)
        self.audio_t0 = 0.0  # time of self.audio[0]
        self.mels: deque[tuple[float, np.ndarray]] = deque()  # (time of the frame's centre, log-mel)
        self.lips: deque[tuple[LipFeatures, np.ndarray | None]] = deque()  # and each one's vector, if present
        self.lips_sum, self.lips_present = np.zeros(82), 0
        self.pending: deque[tuple[float, np.ndarray]] = deque()  # (centre pts, lip embedding) awaiting the voice
        self.pairs: deque[tuple[float, np.ndarray, np.ndarray, bool]] = deque()  # (pts, lips, voice, voiced)
        self.voiced_at: deque[float] = deque()

    def push_lips(self, f: LipFeatures) -> None:
        from .nets.sync_features import WINDOW

        vector = np.concatenate([f.shape.ravel(), [f.opening, f.width]]).astype(np.float64) if f.present else None
        self.lips.append((f, vector))
        if vector is not None:
            self.lips_sum, self.lips_present = self.lips_sum + vector, self.lips_present + 1
        while len(self.lips) > 50:
            _, old = self.lips.popleft()
            if old is not None:
                self.lips_sum, self.lips_present = self.lips_sum - old, self.lips_present - 1
        if len(self.lips) < WINDOW:
            return
        window = list(self.lips)[-WINDOW:]
        if any(v is None for _, v in window):
            return
        mean = self.lips_sum / self.lips_present  # the mouth's own mean over the last 2 s (the judge's centring)
        feats = np.stack([v - mean for _, v in window]) * 20.0
        embedding = self.judge.embed(feats.T[None].astype(np.float32), np.zeros((0, 40, 20), np.float32))[0][0]
        self.pending.append((window[WINDOW // 2][0].pts, embedding))
        self._pair()

    def push_audio(self, samples: np.ndarray, t: float, voiced: bool) -> None:
        if voiced:
            self.voiced_at.append(t)
        while self.voiced_at and t - self.voiced_at[0] > JUDGE_SPAN_S:
            self.voiced_at.popleft()
        if not len(self.audio):
            self.audio_t0 = t
        self.audio = np.concatenate([self.audio, samples])
        half = self.n_fft // 2
        # log-mel frames centred every 10 ms, each once the samples after its centre are in
        done = round((self.mels[-1][0] - self.audio_t0) * SAMPLE_RATE) + HOP_SAMPLES if self.mels else half
        while done + half <= len(self.audio):
            frame = self.audio[done - half:done + half]
            self.mels.append((self.audio_t0 + done / SAMPLE_RATE, self.mel(frame[None])[0]))
            done += HOP_SAMPLES
        keep = done - half  # the samples the next frame needs on
        if keep > 0:
            self.audio, self.audio_t0 = self.audio[keep:], self.audio_t0 + keep / SAMPLE_RATE
        while self.mels and self.mels[-1][0] - self.mels[0][0] > 2.0:
            self.mels.popleft()
        self._pair()

    def _pair(self) -> None:
        """The voice's embedding for each lip window whose 0.2 s of voice is in (standardised over the last 2 s)."""
        if not self.mels or not self.pending or self.pending[0][0] + 0.12 > self.mels[-1][0] + 1e-6:
            return
        times, mel = np.array([m[0] for m in self.mels]), None
        while self.pending and self.pending[0][0] + 0.12 <= times[-1] + 1e-6:
            pts, lips = self.pending.popleft()
            i0 = int(np.searchsorted(times, pts - 0.08 - 0.005))
            if i0 + 20 > len(times):
                continue
            mel = self._stacked() if mel is None else mel
            window = ((mel[i0:i0 + 20] - mel.mean(0)) / (mel.std(0) + 1e-3)).T[None].astype(np.float32)
            voice = self.judge.embed(np.zeros((0, 82, 5), np.float32), window)[1][0]
            voiced = any(abs(v - pts) <= 0.1 for v in self.voiced_at)
            self.pairs.append((pts, lips, voice, voiced))
        while self.pairs and self.pairs[-1][0] - self.pairs[0][0] > JUDGE_SPAN_S + 0.5:
            self.pairs.popleft()

    def _stacked(self) -> np.ndarray:
        return np.stack([m[1] for m in self.mels])

    def score(self, t: float) -> tuple[float, float]:
        """(score, seconds of voiced frames it rests on) over the last JUDGE_SPAN_S before `t`."""
        if not self.pairs:
            return 0.0, 0.0
        pts = np.array([p[0] for p in self.pairs])
        lips = np.stack([p[1] for p in self.pairs])
        voice = np.stack([p[2] for p in self.pairs])
        voiced = np.array([p[3] for p in self.pairs])
        distance = np.linalg.norm(lips[:, None, :] - voice[None, :, :], axis=2)  # lips i against voice j
        k = np.arange(len(pts))
        apart = np.abs(k[None, :] - k[:, None])
        near = np.where(apart <= NEAR, distance, np.inf).min(axis=1)
        far_mask = (apart >= 3) & (apart <= 10)
        use = voiced & (t - pts <= JUDGE_SPAN_S) & (far_mask.sum(axis=1) >= 4)
        if not use.any():
            return 0.0, 0.0
        # the median of each row's far distances: sorted, the others (inf) last
        ordered = np.sort(np.where(far_mask, distance, np.inf)[use], axis=1)
        count = far_mask.sum(axis=1)[use]
        rows = np.arange(len(ordered))
        far = (ordered[rows, (count - 1) // 2] + ordered[rows, count // 2]) / 2
        return float(np.mean(far - near[use])), int(use.sum()) / 25.0


def caption_gains(gains: np.ndarray) -> np.ndarray:
    """The gate as the recogniser hears through it: its floor twice as deep (-60 dB), the ramps kept. Whisper
    normalises its input's level, so a voice held back to -30 dB, faint to a listener, is still words to it
    (on `turns` the squared gate took the other voice's words from 80 to 48 a minute, the user's WER unchanged)."""
    return gains * gains


def gate_clip(audio: np.ndarray, lips: list[LipFeatures], *, delay: int = 0, judge=None,
              scorer: GateScorer | None = None, audio_only: bool = False) -> np.ndarray:
    """The gate's gains over a whole clip, decided hop by hop as the live stage decides them (each hop sees the
    lips up to its time). `delay`: the suppressor's delay in samples: the gains are for its output, lined up
    with the input (each decision hears the raw voice `delay` ahead of the output it gates, as live). `judge` (a
    SyncJudge) and `scorer` as GateDecision's: the judge serves the logistic scorer only."""
    gate = GateDecision(SyncEvidence(judge) if judge is not None else None, scorer, audio_only=audio_only)
    audio = np.asarray(audio, np.float32)
    padded = np.concatenate([audio, np.zeros(-len(audio) % HOP_SAMPLES + delay, np.float32)])
    gains, k = [], 0
    for i in range(0, len(padded) - HOP_SAMPLES + 1, HOP_SAMPLES):
        t = i / SAMPLE_RATE
        while k < len(lips) and lips[k].pts <= t:
            gate.push_lips(lips[k])
            k += 1
        gains.append(gate.gain(padded[i:i + HOP_SAMPLES], t))
    out = np.concatenate(gains)
    return out[delay:delay + len(audio)] if delay else out[:len(audio)]
